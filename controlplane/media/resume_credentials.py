"""Resume credentials: ``<epoch>.<random>``, given to a participant in its join
(or resume) ack.  Only a SHA-256 of it is stored; a resume must present the
credential of the current epoch, together with a room token of the same
participant, so an old or stolen credential alone is useless."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_credential(epoch: int) -> tuple[str, str]:
    """A fresh credential for ``epoch`` and the hash to store."""
    credential = f"{epoch}.{secrets.token_urlsafe(24)}"
    return credential, credential_hash(credential)


def credential_hash(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


def matches(credential: str, epoch: int, stored_hash: str) -> bool:
    given_epoch, _, _ = credential.partition(".")
    if not stored_hash or given_epoch != str(epoch):
        return False
    return hmac.compare_digest(credential_hash(credential), stored_hash)
