"""AES-256-GCM encryption of clinical text before it reaches the database.

Stored format: ``version (1 byte) || key id (1 byte) || nonce (12 bytes) || ciphertext+tag``.
The associated data binds a ciphertext to its row (e.g. the record id), so a
ciphertext copied into another row does not decrypt.  Keys come from
configuration (``TELEMED_DATA_KEYS``: ``id:base64key`` pairs, the first one
encrypts); older keys keep decrypting after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_FORMAT = 1
_NONCE = 12


class DecryptionError(Exception):
    """The ciphertext is damaged, bound to another row, or its key is unknown."""


class WeakKeyError(ValueError):
    """A data key that cannot be random (e.g. a template's value)."""


class FieldCipher:
    def __init__(self, keys: dict[int, bytes], current: int) -> None:
        for key_id, key in keys.items():
            if not 0 <= key_id <= 255 or len(key) != 32:
                raise ValueError("data keys must be 32 bytes (AES-256) with ids 0..255")
            if len(set(key)) < 16:  # 32 random bytes have about 30 distinct values
                raise WeakKeyError(f"data key {key_id} is not random (a template value?)")
        if current not in keys:
            raise ValueError("the current data key is not among the keys")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._raw = dict(keys)
        self._current = current

    @classmethod
    def from_config(cls, spec: str) -> FieldCipher:
        """Parse ``"1:BASE64,0:BASE64"``; the first key encrypts."""
        keys: dict[int, bytes] = {}
        order: list[int] = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            key_id, _, encoded = part.partition(":")
            try:
                keys[int(key_id)] = base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error) as exc:
                raise ValueError("TELEMED_DATA_KEYS must be id:base64 pairs") from exc
            order.append(int(key_id))
        if not order:
            raise ValueError("TELEMED_DATA_KEYS is empty")
        return cls(keys, order[0])

    @staticmethod
    def generate_spec(key_id: int = 1) -> str:
        return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"

    @property
    def current_key_id(self) -> int:
        return self._current

    def derived_key(self, purpose: str, key_id: int | None = None) -> bytes:
        """A 32-byte key for ``purpose`` (HKDF-SHA256) from data key ``key_id`` (the
        current one by default), so other uses never see the data keys themselves;
        KeyError for a retired key id."""
        base = self._raw[self._current if key_id is None else key_id]
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            base
        )

    def encrypt(self, plaintext: str, associated: str) -> bytes:
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self._current].encrypt(nonce, plaintext.encode(), associated.encode())
        return bytes([_FORMAT, self._current]) + nonce + sealed

    def rewrapped(self, blob: bytes, associated: str) -> bytes | None:
        """``blob`` encrypted again with the current key, or None when it already is
        (after a rotation, so that the old key can be retired)."""
        if len(blob) >= 2 and blob[1] == self._current:
            return None
        return self.encrypt(self.decrypt(blob, associated), associated)

    def decrypt(self, blob: bytes, associated: str) -> str:
        if len(blob) < 2 + _NONCE + 16 or blob[0] != _FORMAT:
            raise DecryptionError("not an encrypted field")
        cipher = self._keys.get(blob[1])
        if cipher is None:
            raise DecryptionError("unknown data key")
        try:
            return cipher.decrypt(
                blob[2 : 2 + _NONCE], blob[2 + _NONCE :], associated.encode()
            ).decode()
        except InvalidTag as exc:
            raise DecryptionError("ciphertext does not authenticate") from exc
