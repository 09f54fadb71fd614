"""Configuration from environment variables, read once and validated.

Each variable is named once, here, with its unit and default. A bad value
raises ``SettingsError`` naming the variable; ``__main__`` prints that one
line and exits non-zero.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

# The casts every service shares (the webhook dispatcher reads its settings
# with the same ones), under the names this module has always used.
from switchboard.config import SettingsError as SettingsError
from switchboard.config import boolean as _bool
from switchboard.config import http_url as _http_url
from switchboard.config import min_bytes as _min_bytes
from switchboard.config import non_negative_int as _non_negative_int
from switchboard.config import port as _port
from switchboard.config import positive_float as _positive_float
from switchboard.config import positive_int as _positive_int
from switchboard_gateway.origins import normalize_origin


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be zero or a positive number")
    return value


def _redis_url(raw: str) -> str:
    """One URL, or several comma-separated seed nodes of a Redis Cluster."""
    urls = [url.strip() for url in raw.split(",")]
    if len(urls) == 1:
        scheme = urlparse(urls[0]).scheme
        if scheme not in ("redis", "rediss", "unix", "memory"):
            raise ValueError("expected redis://host:port/db, rediss://, unix:// or memory://")
        return urls[0]
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
            raise ValueError(
                "several URLs are Redis Cluster seeds: each must be redis://host:port or rediss://host:port"
            )
    return ",".join(urls)


def _choice(*allowed: str) -> Callable[[str], str]:
    def cast(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError("expected " + ", ".join(allowed[:-1]) + " or " + allowed[-1])
        return value

    return cast


def _origins(raw: str) -> tuple[str, ...] | None:
    origins = []
    for entry in (o.strip() for o in raw.split(",")):
        if not entry:
            continue
        origin = normalize_origin(entry)
        if origin is None:
            raise ValueError(f"{entry!r} is not an origin (expected scheme://host[:port], http or https)")
        origins.append(origin)
    return tuple(dict.fromkeys(origins)) or None


def _secret(raw: str) -> str:
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes (HS256 keys shorter than the hash are weak)")
    return raw


def _node_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 64 or not value.isprintable() or " " in value:
        raise ValueError("expected 1-64 printable characters without spaces")
    return value


def default_node_id() -> str:
    """Unique per worker process, also with several on one host: the
    hostname, the process id and a short random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def _log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("critical", "error", "warning", "info", "debug"):
        raise ValueError("expected critical, error, warning, info or debug")
    return value


_SECRET_ENVS = ("JWT_SECRET", "API_KEY", "WEBHOOK_SECRET")


# --- parsers of the hardening settings (docs/security.md) -----------------------------

# Secrets published in this repository (docker-compose.yml, deploy/compose.webhooks.yml,
# deploy/k8s/secret.example.yaml, scripts/dev): refused unless DEMO_MODE=true.
KNOWN_DEMO_SECRETS = frozenset(
    {
        "change-me-demo-secret-0123456789abcdef",
        "change-me-demo-api-key",
        "change-me-demo-webhook-secret-0123456789abcdef",  # deploy/compose.webhooks.yml
        "dev-only-secret-change-me-0123456789",
    }
)

_GLOB = re.compile(r"^[A-Za-z0-9_.:+@*?-]{1,130}\Z")


def _globs(raw: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not patterns:
        raise ValueError("expected at least one room glob, e.g. lobby,team-*")
    for pattern in patterns:
        if not _GLOB.match(pattern):
            raise ValueError(f"{pattern!r} is not a room glob (room-name characters, * and ?)")
    return patterns


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def _peers(raw: str) -> tuple[str, ...]:
    """`*`, or addresses and networks (CIDR), comma-separated."""
    peers = tuple(p.strip() for p in raw.split(",") if p.strip())
    if peers == ("*",):
        return peers
    for peer in peers:
        ipaddress.ip_network(peer, strict=False)  # ValueError names it
    return peers


def _header_bytes(raw: str) -> int:
    value = int(raw)
    if not 1024 <= value <= 1024 * 1024:
        raise ValueError("must be between 1024 and 1048576")
    return value


def _hook_url(raw: str) -> str:
    url = _http_url(raw)
    try:
        urlparse(url).port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("bad port in the URL") from None
    if any(ch.isspace() for ch in url):
        raise ValueError("a URL cannot contain spaces")
    return url


def _hook_timeout(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= HOOK_TIMEOUT_MAX_S:
        raise ValueError(f"must be a number of seconds above 0 and at most {HOOK_TIMEOUT_MAX_S:g}")
    return value


# Every publish waits for the hook: a longer wait would hold a connection's
# frames (they are served in order) for too long.
HOOK_TIMEOUT_MAX_S = 30.0


def _setting(
    env: str,
    cast: Callable[[str], Any],
    default: Any = None,
    required: bool = False,
    default_factory: Callable[[], Any] | None = None,
    blank_is_unset: bool = False,
) -> Any:
    metadata = {"env": env, "cast": cast, "required": required, "blank_is_unset": blank_is_unset}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    host: str = _setting("HOST", str, "0.0.0.0")
    port: int = _setting("PORT", _port, 8000)
    node_id: str = _setting("NODE_ID", _node_id, default_factory=default_node_id, blank_is_unset=True)
    redis_url: str = _setting("REDIS_URL", _redis_url, "redis://localhost:6379/0")
    redis_prefix: str = _setting("REDIS_PREFIX", str, "sb")
    redis_cluster: str = _setting("REDIS_CLUSTER", _choice("auto", "true", "false"), "auto")
    publish_durability: str = _setting("PUBLISH_DURABILITY", _choice("primary", "replicas"), "primary")
    durability_timeout_s: float = _setting("DURABILITY_TIMEOUT", _positive_float, 1.0)
    jwt_secret: str = _setting("JWT_SECRET", _secret, required=True)
    api_key: str | None = _setting("API_KEY", str, None)
    allow_guests: bool = _setting("ALLOW_GUESTS", _bool, False)
    guest_token_ttl_s: float = _setting("GUEST_TOKEN_TTL", _positive_float, 3600.0)
    allowed_origins: tuple[str, ...] | None = _setting("ALLOWED_ORIGINS", _origins, None)
    history_size: int = _setting("HISTORY_SIZE", _positive_int, 1000)
    history_ttl_s: int = _setting("HISTORY_TTL", _positive_int, 86400)
    presence_ttl_s: float = _setting("PRESENCE_TTL", _positive_float, 30.0)
    presence_list_max: int = _setting("PRESENCE_LIST_MAX", _positive_int, 100)
    presence_events_max: int = _setting("PRESENCE_EVENTS_MAX", _non_negative_int, 200)
    # Events stream (docs/protocol.md "Events stream"): entries kept per stream; 0 = off.
    events_maxlen: int = _setting("EVENTS_MAXLEN", _non_negative_int, 0)
    idempotency_window_s: int = _setting("IDEMPOTENCY_WINDOW", _positive_int, 120)
    publish_rate: float = _setting("PUBLISH_RATE", _positive_float, 10.0)
    publish_burst: int = _setting("PUBLISH_BURST", _positive_int, 20)
    max_frame_bytes: int = _setting("MAX_FRAME_BYTES", _positive_int, 16384)
    max_text_chars: int = _setting("MAX_TEXT_CHARS", _positive_int, 2000)
    max_rooms_per_connection: int = _setting("MAX_ROOMS_PER_CONNECTION", _positive_int, 50)
    send_queue_max: int = _setting("SEND_QUEUE_MAX", _positive_int, 1000)
    send_queue_max_bytes: int = _setting("SEND_QUEUE_MAX_BYTES", _positive_int, 4 * 1024 * 1024)
    abuse_errors: int = _setting("ABUSE_ERRORS", _positive_int, 50)
    drain_notice_s: float = _setting("DRAIN_NOTICE", _non_negative_float, 2.0)
    drain_timeout_s: float = _setting("DRAIN_TIMEOUT", _positive_float, 10.0)
    position_check_s: float = _setting("POSITION_CHECK_INTERVAL", _positive_float, 5.0)
    ws_ping_interval_s: float = _setting("WS_PING_INTERVAL", _non_negative_float, 20.0)
    ws_ping_timeout_s: float = _setting("WS_PING_TIMEOUT", _positive_float, 20.0)
    ws_fast_path: bool = _setting("WS_FAST_PATH", _bool, True)
    log_level: str = _setting("LOG_LEVEL", _log_level, "info")
    # --- hardening: limits and policies, see docs/security.md -------------------------
    demo_mode: bool = _setting("DEMO_MODE", _bool, False)  # allows the published demo secrets
    max_token_lifetime_s: float = _setting("MAX_TOKEN_LIFETIME", _non_negative_float, 86400.0)  # 0: exp optional
    guest_rooms: tuple[str, ...] = _setting("GUEST_ROOMS", _globs, ("lobby", "general", "random"))
    guest_reserved_names: tuple[str, ...] = _setting("GUEST_RESERVED_NAMES", _names, ())
    guest_mints_per_minute: int = _setting("GUEST_MINTS_PER_MINUTE", _positive_int, 10)  # per client address
    max_connections: int = _setting("MAX_CONNECTIONS", _positive_int, 10000)  # sockets per gateway
    max_connections_per_ip: int = _setting("MAX_CONNECTIONS_PER_IP", _positive_int, 100)
    max_connections_per_user: int = _setting("MAX_CONNECTIONS_PER_USER", _non_negative_int, 20)  # 0: no limit
    forwarded_allow_ips: tuple[str, ...] = _setting("FORWARDED_ALLOW_IPS", _peers, ("127.0.0.1", "::1"))
    http_request_timeout_s: float = _setting("HTTP_REQUEST_TIMEOUT", _positive_float, 10.0)
    max_header_bytes: int = _setting("MAX_HEADER_BYTES", _header_bytes, 16384)
    frame_rate: float = _setting("FRAME_RATE", _positive_float, 50.0)  # every client frame, per connection
    frame_burst: int = _setting("FRAME_BURST", _positive_int, 100)
    typing_rate: float = _setting("TYPING_RATE", _positive_float, 1.0)  # per user, cluster-wide
    typing_burst: int = _setting("TYPING_BURST", _positive_int, 5)
    # --- the application backend: publish hook (docs/protocol.md "Publish hook") ----------
    publish_hook_url: str | None = _setting("PUBLISH_HOOK_URL", _hook_url, None, blank_is_unset=True)
    hook_timeout_s: float = _setting("HOOK_TIMEOUT", _hook_timeout, 2.0)
    # signs hook requests like the webhook dispatcher signs its deliveries
    webhook_secret: str | None = _setting("WEBHOOK_SECRET", _min_bytes(32), None, blank_is_unset=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from `environ` (default: os.environ); keyword
        overrides win (tests use them)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in overrides:
                continue
            env, cast = f.metadata["env"], f.metadata["cast"]
            raw = environ.get(env)
            if raw is None or (raw.strip() == "" and (f.metadata["required"] or f.metadata["blank_is_unset"])):
                if f.metadata["required"]:
                    raise SettingsError(f"{env} is required but not set")
                continue
            try:
                values[f.name] = cast(raw)
            except ValueError as exc:
                shown = "(hidden)" if env in _SECRET_ENVS else repr(raw)
                raise SettingsError(f"{env}={shown} is invalid: {exc}") from None
        settings = cls(**values, **overrides)
        if settings.drain_notice_s >= settings.drain_timeout_s:
            raise SettingsError("DRAIN_NOTICE must be shorter than DRAIN_TIMEOUT")
        if "," in settings.redis_url and settings.redis_cluster == "false":
            raise SettingsError("REDIS_URL lists several nodes, which needs a Redis Cluster, but REDIS_CLUSTER=false")
        if settings.memory_broker and settings.redis_cluster == "true":
            raise SettingsError("REDIS_CLUSTER=true needs a redis:// REDIS_URL, not memory://")
        if settings.memory_broker and settings.events_maxlen > 0:
            raise SettingsError("EVENTS_MAXLEN needs a redis:// REDIS_URL: the memory broker keeps no events stream")
        if 0 < settings.max_token_lifetime_s < settings.guest_token_ttl_s:
            raise SettingsError("GUEST_TOKEN_TTL must not exceed MAX_TOKEN_LIFETIME (guest tokens would be refused)")
        if settings.publish_hook_url is not None and settings.webhook_secret is None:
            raise SettingsError("PUBLISH_HOOK_URL needs WEBHOOK_SECRET (at least 32 bytes): hook requests are signed")
        if not settings.demo_mode:
            for env, value in (
                ("JWT_SECRET", settings.jwt_secret),
                ("API_KEY", settings.api_key),
                ("WEBHOOK_SECRET", settings.webhook_secret),
            ):
                if value in KNOWN_DEMO_SECRETS:
                    raise SettingsError(
                        f"{env} is the published demo value: set your own secret (or DEMO_MODE=true for a demo)"
                    )
        return settings

    @property
    def node(self) -> str:
        """This worker's name in ``welcome.node`` and in logs."""
        return self.node_id

    # PRESENCE_TTL is the contract's bound: a dead gateway's members are gone
    # within it. Entries therefore live half of it after each refresh, and
    # every gateway refreshes (and sweeps) every quarter: one late refresh is
    # tolerated, and a dead gateway's entries expire and are swept within 3/4
    # of PRESENCE_TTL (see presence.py).

    @property
    def presence_entry_lifetime_s(self) -> float:
        """How long a presence entry lives after its last refresh."""
        return self.presence_ttl_s / 2

    @property
    def presence_refresh_interval_s(self) -> float:
        """How often a gateway refreshes its entries and sweeps expired ones."""
        return max(0.2, self.presence_ttl_s / 4)

    @property
    def memory_broker(self) -> bool:
        return self.redis_url.startswith("memory:")

    def env_names(self) -> list[str]:
        return [f.metadata["env"] for f in fields(self)]
