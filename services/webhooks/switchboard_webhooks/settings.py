"""The dispatcher's configuration, from environment variables (README,
"Configuration"). A bad value raises ``SettingsError`` naming the variable;
``__main__`` prints that one line and exits 2."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchboard import config
from switchboard.config import SettingsError, setting

_SECRETS = ("WEBHOOK_SECRET",)


@dataclass(frozen=True)
class Settings:
    host: str = setting("HOST", str, "0.0.0.0")
    port: int = setting("PORT", config.port, 8000)
    redis_urls: tuple[str, ...] = setting("REDIS_URL", config.redis_urls, ("redis://localhost:6379/0",))
    redis_cluster: bool | None = setting("REDIS_CLUSTER", config.tri_state, None)  # None: auto-detect
    redis_prefix: str = setting("REDIS_PREFIX", str, "sb")
    events_maxlen: int = setting("EVENTS_MAXLEN", config.non_negative_int, 0)
    webhook_url: str = setting("WEBHOOK_URL", config.http_url, required=True)
    webhook_secret: str = setting("WEBHOOK_SECRET", config.min_bytes(32), required=True)
    max_attempts: int = setting("WEBHOOK_MAX_ATTEMPTS", config.positive_int, 10)
    batch_max: int = setting("WEBHOOK_BATCH_MAX", config.int_between(1, 100), 100)
    concurrency: int = setting("WEBHOOK_CONCURRENCY", config.int_between(1, 64), 4)
    timeout_s: float = setting("WEBHOOK_TIMEOUT", config.positive_float, 10.0)
    backoff_base_s: float = setting("WEBHOOK_BACKOFF_BASE", config.positive_float, 0.5)
    backoff_max_s: float = setting("WEBHOOK_BACKOFF_MAX", config.positive_float, 30.0)
    claim_idle_s: float = setting("WEBHOOK_CLAIM_IDLE", config.positive_float, 60.0)
    discovery_interval_s: float = setting("WEBHOOK_DISCOVERY_INTERVAL", config.positive_float, 5.0)
    log_level: str = setting("LOG_LEVEL", config.log_level, "info")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        settings = config.load(cls, environ, _SECRETS, **overrides)
        if settings.events_maxlen == 0:
            raise SettingsError(
                "EVENTS_MAXLEN must be above 0 here and on the gateways: at 0 the gateways write no events"
            )
        if settings.backoff_base_s > settings.backoff_max_s:
            raise SettingsError("WEBHOOK_BACKOFF_BASE must not exceed WEBHOOK_BACKOFF_MAX")
        # A batch being retried is touched before each attempt; it must never
        # look abandoned in between, or another dispatcher would take it over.
        if settings.claim_idle_s <= settings.timeout_s + settings.backoff_max_s:
            raise SettingsError("WEBHOOK_CLAIM_IDLE must exceed WEBHOOK_TIMEOUT + WEBHOOK_BACKOFF_MAX")
        return settings

    def env_names(self) -> list[str]:
        return config.env_names(type(self))
