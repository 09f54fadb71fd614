"""Reading a service's settings from environment variables.

A settings class is a frozen dataclass whose fields are declared with
``setting(ENV, cast, default)``; ``load(cls, environ)`` casts each variable
and raises ``SettingsError`` naming the variable (never a secret's value).
A service's ``__main__`` prints that one line and exits 2.

The casts are shared so every service accepts the same spellings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse


class SettingsError(ValueError):
    """A configuration value is missing or invalid."""


def setting(env: str, cast: Callable[[str], Any], default: Any = None, required: bool = False) -> Any:
    return dataclasses.field(default=default, metadata={"env": env, "cast": cast, "required": required})


T = TypeVar("T")


def load(cls: type[T], environ: Mapping[str, str] | None, secrets: Collection[str] = (), **overrides: Any) -> T:
    """An instance of `cls` from `environ` (default: os.environ); keyword
    overrides win. Values of the variables in `secrets` never appear in errors."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            continue
        env, cast, required = f.metadata["env"], f.metadata["cast"], f.metadata["required"]
        raw = environ.get(env)
        if raw is None or (required and raw.strip() == ""):
            if required:
                raise SettingsError(f"{env} is required but not set")
            continue
        try:
            values[f.name] = cast(raw)
        except ValueError as exc:
            shown = "(hidden)" if env in secrets else repr(raw)
            raise SettingsError(f"{env}={shown} is invalid: {exc}") from None
    return cls(**values, **overrides)


def env_names(cls: type[Any]) -> list[str]:
    return [f.metadata["env"] for f in dataclasses.fields(cls)]


# --- casts: each raises ValueError with what was expected --------------------


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def int_between(low: int, high: int) -> Callable[[str], int]:
    def cast(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return cast


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):  # also refuses nan
        raise ValueError("must be a positive number")
    return value


def port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return value


def log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("critical", "error", "warning", "info", "debug"):
        raise ValueError("expected critical, error, warning, info or debug")
    return value


def redis_urls(raw: str) -> tuple[str, ...]:
    """One Redis URL, or several cluster seed URLs separated by commas."""
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    if not urls:
        raise ValueError("expected redis://host:port/db (or several, comma-separated, for a cluster)")
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{url!r}: expected redis://host:port/db, rediss:// or unix://")
        try:
            _ = parsed.port  # raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"{url!r}: bad port") from None
    return urls


def tri_state(raw: str) -> bool | None:
    """auto (None), true or false."""
    if raw.strip().lower() == "auto":
        return None
    try:
        return boolean(raw)
    except ValueError:
        raise ValueError("expected auto, true or false") from None


def http_url(raw: str) -> str:
    parsed = urlparse(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return raw.strip()


def min_bytes(length: int) -> Callable[[str], str]:
    def cast(raw: str) -> str:
        if len(raw.encode()) < length:
            raise ValueError(f"must be at least {length} bytes")
        return raw

    return cast
