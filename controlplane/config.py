"""Control-plane settings, read from environment variables."""

from __future__ import annotations

import math
import os
import secrets
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from controlplane.clinical.field_crypto import FieldCipher, WeakKeyError
from controlplane.clinical.recording_retention import parse_retention
from controlplane.clinical.retention_policy import parse_data_retention
from controlplane.clinical.session_types import SESSION_TYPES
from controlplane.edge.rate_limits import RateLimitConfig, trusted_networks

_WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"


class ConfigError(ValueError):
    """A setting is missing or malformed."""


# Words of template and documentation values: a secret containing one was copied,
# not generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "placeholder", "example", "xxxx")
GENERATE_HINT = "generate one with `openssl rand -base64 48`"


def estimated_bits(value: str) -> float:
    """Shannon entropy of the value's own characters times its length: a random
    base64 secret of 32 characters scores about 150, a repeated or worded one far
    less."""
    counts = Counter(value)
    size = len(value)
    return -size * sum(c / size * math.log2(c / size) for c in counts.values()) if size else 0.0


def check_secret(name: str, value: str, min_chars: int, min_bits: int) -> None:
    if len(value) < min_chars:
        raise ConfigError(f"{name} must be set (at least {min_chars} characters): {GENERATE_HINT}")
    if any(marker in value.lower() for marker in PLACEHOLDER_MARKERS):
        raise ConfigError(f"{name} is a placeholder from a template: {GENERATE_HINT}")
    bits = estimated_bits(value)
    if bits < min_bits:
        raise ConfigError(
            f"{name} is too predictable (about {bits:.0f} bits, {min_bits} needed): {GENERATE_HINT}"
        )


def check_data_keys(spec: str) -> None:
    """``id:base64`` pairs of 32 random bytes each, as the field cipher reads them."""
    if not spec.strip():
        raise ConfigError("TELEMED_DATA_KEYS must be set (AES-256 keys for clinical text)")
    try:
        FieldCipher.from_config(spec)
    except WeakKeyError as exc:
        raise ConfigError(f"TELEMED_DATA_KEYS: {exc}") from None
    except ValueError:
        raise ConfigError(
            "TELEMED_DATA_KEYS must be id:base64 pairs of 32-byte keys: "
            'generate one with `echo "1:$(openssl rand -base64 32)"`'
        ) from None


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _waiting_types(items: tuple[str, ...]) -> frozenset[str]:
    if items in ((), ("none",)):
        return frozenset()
    if items == ("default",):
        return frozenset(SESSION_TYPES) - {"emergency"}
    unknown = sorted(set(items) - set(SESSION_TYPES))
    if unknown:
        raise ConfigError(
            f"TELEMED_WAITING_ROOM_TYPES: unknown session types {unknown} "
            f"(known: {', '.join(SESSION_TYPES)}; or default, none)"
        )
    return frozenset(items)


def _split(value: str) -> tuple[str, ...]:
    """The non-empty items of a comma-separated setting."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _items(env: dict[str, str], name: str, default: str = "") -> tuple[str, ...]:
    return _split(env.get(name, default))


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = ""
    # Connection pools: a request waits for a free connection, up to the Redis
    # pool's timeout (then SERVICE_UNAVAILABLE), instead of failing at once.
    redis_max_connections: int = 256
    redis_pool_timeout: float = 2.0
    database_pool_size: int = 20
    database_pool_timeout: float = 2.0
    # Owner role for migrations; when unset, migrations are not run by the app.
    database_admin_url: str = ""
    # AES-256-GCM keys for clinical text: "id:base64key[,id:base64key...]", first encrypts.
    data_keys: str = ""
    jwt_api_audience: str = "telemed-api"
    # Session lifecycle: seconds without any participant before an active session ends,
    # how often the rules are checked, and per-type maximum overrides ("emergency=7200,...").
    inactivity_timeout: float = 600.0
    lifecycle_interval: float = 15.0
    max_durations: str = ""
    # Call-quality sampling interval (seconds) and an optional alert webhook.
    stats_interval: float = 2.0
    stats_stable_every: int = 3
    alert_webhook_url: str = ""
    # Shared secret for the SFU nodes' RPC API.
    sfu_secret: str = ""
    sfu_rpc_timeout: float = 10.0
    # CA that signs the SFU nodes' RPC certificates (wss://); empty: the system's.
    sfu_ca_file: str = ""
    # JWT settings for room tokens.
    jwt_secret: str = ""
    jwt_issuer: str = "telemed"
    jwt_audience: str = "telemed-room"
    room_token_ttl: int = 4 * 3600
    log_format: str = "console"  # "json" in production
    log_level: str = "info"
    # The event loop of `telemed serve`: "uvloop" (libuv) or "asyncio" (the standard one).
    event_loop: str = "uvloop"
    # Objects allocated before a young GC collection (controlplane/runtime.py); 0:
    # the garbage collector left as CPython sets it (no freeze, threshold 700).
    gc_young_threshold: int = 20_000
    # Identifies this control-plane process in Redis room state.
    instance_id: str = field(default_factory=lambda: f"cp-{secrets.token_hex(4)}")
    # Seconds a participant whose connection dropped keeps its media and may resume.
    resume_window: float = 30.0
    # Max peers in one consultation room (emergency: up to 8 clinicians + patient).
    max_peers_per_room: int = 12
    cors_origins: tuple[str, ...] = ()
    # An external identity provider for API tokens (RS256/ES256 against its JWKS).
    oidc_jwks_url: str = ""
    oidc_issuer: str = ""
    oidc_audience: str = ""  # empty: TELEMED_JWT_API_AUDIENCE
    # How long recordings are kept per session type (clinical/recording_retention.py)
    # and how often the shredding job runs (seconds).
    recording_retention: str = ""
    # Other data classes' periods (clinical/retention_policy.py), e.g. "alert=365d".
    data_retention: str = ""
    # Session types whose patient waits to be admitted ("default": all but
    # emergency; "none": none); companions and interpreters always wait.
    waiting_room_types: tuple[str, ...] = ("default",)
    # Clinics whose emergencies record automatically (with recording consent); "*": all.
    auto_record_clinics: tuple[str, ...] = ()
    retention_interval: float = 3600.0
    # The audit chain: verified since the newest signed checkpoint every
    # audit_verify_interval seconds, and whole every audit_full_verify_interval.
    audit_verify_interval: float = 300.0
    audit_full_verify_interval: float = 86400.0
    # Edge rate limits, and the proxies whose X-Forwarded-For names the client.
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # The built browser client (web/dist).
    web_dir: Path = _WEB_DIR
    # TURN relay (coturn with use-auth-secret): host names or addresses clients use,
    # the shared secret of the REST credentials, ports (turns: only when tls port > 0)
    # and the credentials' lifetime (0: the room token's).
    turn_hosts: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_port: int = 3478
    turn_tls_port: int = 0
    turn_credential_ttl: int = 0
    turn_check_interval: float = 15.0  # seconds between TURN health checks
    # HTTPS: serve TLS with this certificate chain and key (PEM files).
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        host = env.get("TELEMED_HOST", "127.0.0.1")
        port = _int(env, "TELEMED_PORT", 8080)
        scheme = "https" if env.get("TELEMED_TLS_CERT") else "http"
        settings = cls(
            host=host,
            port=port,
            public_url=env.get("TELEMED_PUBLIC_URL", f"{scheme}://{host}:{port}"),
            redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            database_url=env.get("DATABASE_URL", ""),
            redis_max_connections=_int(env, "TELEMED_REDIS_MAX_CONNECTIONS", 256),
            redis_pool_timeout=_float(env, "TELEMED_REDIS_POOL_TIMEOUT", 2.0),
            database_pool_size=_int(env, "TELEMED_DATABASE_POOL_SIZE", 20),
            database_pool_timeout=_float(env, "TELEMED_DATABASE_POOL_TIMEOUT", 2.0),
            database_admin_url=env.get("DATABASE_ADMIN_URL", ""),
            data_keys=env.get("TELEMED_DATA_KEYS", ""),
            jwt_api_audience=env.get("TELEMED_JWT_API_AUDIENCE", "telemed-api"),
            inactivity_timeout=_float(env, "TELEMED_INACTIVITY_TIMEOUT", 600.0),
            lifecycle_interval=_float(env, "TELEMED_LIFECYCLE_INTERVAL", 15.0),
            max_durations=env.get("TELEMED_MAX_DURATIONS", ""),
            stats_interval=_float(env, "TELEMED_STATS_INTERVAL", 2.0),
            stats_stable_every=_int(env, "TELEMED_STATS_STABLE_EVERY", 3),
            alert_webhook_url=env.get("TELEMED_ALERT_WEBHOOK_URL", ""),
            sfu_secret=env.get("SFU_SECRET", ""),
            sfu_rpc_timeout=_float(env, "SFU_RPC_TIMEOUT", 10.0),
            sfu_ca_file=env.get("SFU_CA_FILE", ""),
            jwt_secret=env.get("TELEMED_JWT_SECRET", ""),
            jwt_issuer=env.get("TELEMED_JWT_ISSUER", "telemed"),
            jwt_audience=env.get("TELEMED_JWT_AUDIENCE", "telemed-room"),
            room_token_ttl=_int(env, "TELEMED_ROOM_TOKEN_TTL", 4 * 3600),
            log_format=env.get("TELEMED_LOG_FORMAT", "console"),
            log_level=env.get("TELEMED_LOG_LEVEL", "info"),
            event_loop=env.get("TELEMED_EVENT_LOOP", "uvloop"),
            gc_young_threshold=_int(env, "TELEMED_GC_YOUNG_THRESHOLD", 20_000),
            instance_id=env.get("TELEMED_INSTANCE_ID") or f"cp-{secrets.token_hex(4)}",
            max_peers_per_room=_int(env, "TELEMED_MAX_PEERS_PER_ROOM", 12),
            resume_window=_float(env, "TELEMED_RESUME_WINDOW", 30.0),
            web_dir=Path(env.get("TELEMED_WEB_DIR") or _WEB_DIR),
            turn_hosts=_items(env, "TELEMED_TURN_HOSTS"),
            turn_secret=env.get("TELEMED_TURN_SECRET", ""),
            turn_port=_int(env, "TELEMED_TURN_PORT", 3478),
            turn_tls_port=_int(env, "TELEMED_TURN_TLS_PORT", 0),
            turn_credential_ttl=_int(env, "TELEMED_TURN_CREDENTIAL_TTL", 0),
            turn_check_interval=_float(env, "TELEMED_TURN_CHECK_INTERVAL", 15.0),
            tls_cert=env.get("TELEMED_TLS_CERT", ""),
            tls_key=env.get("TELEMED_TLS_KEY", ""),
            cors_origins=_items(env, "TELEMED_CORS_ORIGINS"),
            recording_retention=env.get("TELEMED_RECORDING_RETENTION", ""),
            data_retention=env.get("TELEMED_RETENTION", ""),
            auto_record_clinics=_items(env, "TELEMED_AUTO_RECORD_CLINICS"),
            waiting_room_types=_items(env, "TELEMED_WAITING_ROOM_TYPES", "default"),
            retention_interval=_float(env, "TELEMED_RETENTION_INTERVAL", 3600.0),
            audit_verify_interval=_float(env, "TELEMED_AUDIT_VERIFY_INTERVAL", 300.0),
            audit_full_verify_interval=_float(env, "TELEMED_AUDIT_FULL_VERIFY_INTERVAL", 86400.0),
            oidc_jwks_url=env.get("TELEMED_OIDC_JWKS_URL", ""),
            oidc_issuer=env.get("TELEMED_OIDC_ISSUER", ""),
            oidc_audience=env.get("TELEMED_OIDC_AUDIENCE", ""),
            rate_limits=RateLimitConfig(
                **{
                    f.name: env[f"TELEMED_RATE_{f.name.upper()}"]
                    for f in fields(RateLimitConfig)
                    if env.get(f"TELEMED_RATE_{f.name.upper()}")
                }
            ),
            trusted_proxies=_items(env, "TELEMED_TRUSTED_PROXIES", "127.0.0.0/8,::1"),
        )
        settings.validate()
        return settings

    def allowed_origins(self) -> tuple[str, ...]:
        """Browser origins allowed on Socket.IO: the public URL's, and TELEMED_CORS_ORIGINS."""
        public = urlsplit(self.public_url)
        return (f"{public.scheme}://{public.netloc}", *self.cors_origins)

    def patients_waiting(self) -> frozenset[str]:
        """The session types whose patient waits in the waiting room."""
        return _waiting_types(self.waiting_room_types)

    def max_duration_overrides(self) -> dict[str, int]:
        overrides: dict[str, int] = {}
        for part in _split(self.max_durations):
            name, _, seconds = part.partition("=")
            try:
                overrides[name.strip()] = int(seconds)
            except ValueError as exc:
                raise ConfigError("TELEMED_MAX_DURATIONS must be type=seconds pairs") from exc
        return overrides

    def validate(self) -> None:
        check_secret("TELEMED_JWT_SECRET", self.jwt_secret, 32, 120)
        check_secret("SFU_SECRET", self.sfu_secret, 16, 96)
        if not self.database_url:
            raise ConfigError("DATABASE_URL must be set (PostgreSQL)")
        for name, url in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url)):
            if any(marker in url.lower() for marker in PLACEHOLDER_MARKERS[:3]):
                raise ConfigError(f"{name} holds a placeholder password from a template")
        check_data_keys(self.data_keys)
        if self.event_loop not in ("uvloop", "asyncio"):
            raise ConfigError("TELEMED_EVENT_LOOP must be 'uvloop' or 'asyncio'")
        if self.gc_young_threshold < 0:
            raise ConfigError("TELEMED_GC_YOUNG_THRESHOLD must be 0 (untouched) or positive")
        if self.log_format not in ("console", "json"):
            raise ConfigError("TELEMED_LOG_FORMAT must be 'console' or 'json'")
        if not 1 <= self.resume_window <= 600:
            raise ConfigError("TELEMED_RESUME_WINDOW must be between 1 and 600 seconds")
        if self.sfu_rpc_timeout <= 0:
            raise ConfigError("SFU_RPC_TIMEOUT must be positive")
        if self.turn_hosts:
            check_secret("TELEMED_TURN_SECRET", self.turn_secret, 16, 96)
        for name, value in (("PORT", self.turn_port), ("TLS_PORT", self.turn_tls_port)):
            if not 0 <= value <= 65535 or (name == "PORT" and value == 0):
                raise ConfigError(f"TELEMED_TURN_{name} must be a port number")
        if self.turn_check_interval < 0.5:
            raise ConfigError("TELEMED_TURN_CHECK_INTERVAL must be at least 0.5 seconds")
        if self.turn_credential_ttl < 0:
            raise ConfigError("TELEMED_TURN_CREDENTIAL_TTL must not be negative")
        try:
            parse_retention(self.recording_retention)
        except ValueError as exc:
            raise ConfigError(f"TELEMED_RECORDING_RETENTION: {exc}") from None
        try:
            parse_data_retention(self.data_retention)
        except ValueError as exc:
            raise ConfigError(f"TELEMED_RETENTION: {exc}") from None
        self.patients_waiting()
        if self.retention_interval < 1:
            raise ConfigError("TELEMED_RETENTION_INTERVAL must be at least 1 second")
        if not 1 <= self.audit_verify_interval <= self.audit_full_verify_interval:
            raise ConfigError(
                "TELEMED_AUDIT_VERIFY_INTERVAL must be at least 1 second and at most "
                "TELEMED_AUDIT_FULL_VERIFY_INTERVAL"
            )
        if self.oidc_jwks_url:
            jwks = urlsplit(self.oidc_jwks_url)
            local = jwks.hostname in ("127.0.0.1", "::1", "localhost")
            if jwks.scheme != "https" and not (jwks.scheme == "http" and local):
                raise ConfigError("TELEMED_OIDC_JWKS_URL must be https:// (http only on loopback)")
            if not self.oidc_issuer:
                raise ConfigError("TELEMED_OIDC_ISSUER must be set with TELEMED_OIDC_JWKS_URL")
        try:
            self.rate_limits.validate()
            trusted_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"TELEMED_RATE_* / TELEMED_TRUSTED_PROXIES: {exc}") from None
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TELEMED_TLS_CERT and TELEMED_TLS_KEY go together")
        for path in (self.tls_cert, self.tls_key, self.sfu_ca_file):
            if path and not Path(path).is_file():
                raise ConfigError(f"{path} (a TLS certificate, key or CA) is not a readable file")
