"""The dispatcher's configuration: defaults, parsing, and one clear line
naming the variable (never a secret's value) with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from switchboard.config import SettingsError
from switchboard_webhooks.settings import Settings

SECRET = "webhook-test-secret-0123456789abcdef"
BASE = {"WEBHOOK_URL": "http://app.example/hooks", "WEBHOOK_SECRET": SECRET, "EVENTS_MAXLEN": "10000"}


def load(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def error_of(**env: str | None) -> str:
    merged = {k: v for k, v in {**BASE, **env}.items() if v is not None}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(merged)
    return str(raised.value)


def test_defaults() -> None:
    s = load()
    assert (s.host, s.port) == ("0.0.0.0", 8000)
    assert s.redis_urls == ("redis://localhost:6379/0",) and s.redis_cluster is None and s.redis_prefix == "sb"
    assert s.events_maxlen == 10000
    assert (s.webhook_url, s.webhook_secret) == ("http://app.example/hooks", SECRET)
    assert (s.max_attempts, s.batch_max, s.concurrency) == (10, 100, 4)
    assert (s.timeout_s, s.backoff_base_s, s.backoff_max_s, s.claim_idle_s) == (10, 0.5, 30, 60)
    assert s.discovery_interval_s == 5 and s.log_level == "info"


def test_values_are_parsed() -> None:
    s = load(
        REDIS_URL="redis://a:7000, redis://b:7001/0 ,",
        REDIS_CLUSTER="auto",
        WEBHOOK_URL=" https://app.example:8443/x?y=1 ",
        WEBHOOK_MAX_ATTEMPTS="3",
        WEBHOOK_BATCH_MAX="1",
        WEBHOOK_TIMEOUT="0.5",
        WEBHOOK_BACKOFF_BASE="0.01",
        WEBHOOK_BACKOFF_MAX="0.1",
        WEBHOOK_CLAIM_IDLE="1",
    )
    assert s.redis_urls == ("redis://a:7000", "redis://b:7001/0") and s.redis_cluster is None
    assert s.webhook_url == "https://app.example:8443/x?y=1"
    assert (s.max_attempts, s.batch_max, s.timeout_s, s.claim_idle_s) == (3, 1, 0.5, 1)
    assert load(REDIS_CLUSTER="true").redis_cluster is True and load(REDIS_CLUSTER="no").redis_cluster is False


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("PORT", "70000", "PORT='70000' is invalid"),
        ("REDIS_URL", "http://x", "REDIS_URL='http://x' is invalid"),
        ("REDIS_URL", " , ", "REDIS_URL=' , ' is invalid"),
        ("REDIS_URL", "redis://h:port", "REDIS_URL='redis://h:port' is invalid"),
        ("REDIS_CLUSTER", "maybe", "REDIS_CLUSTER='maybe' is invalid: expected auto, true or false"),
        ("EVENTS_MAXLEN", "-1", "EVENTS_MAXLEN='-1' is invalid"),
        ("EVENTS_MAXLEN", "0", "EVENTS_MAXLEN must be above 0"),
        ("WEBHOOK_URL", "ftp://x", "WEBHOOK_URL='ftp://x' is invalid: expected an http:// or https:// URL"),
        ("WEBHOOK_URL", "http://", "WEBHOOK_URL='http://' is invalid"),
        ("WEBHOOK_MAX_ATTEMPTS", "0", "WEBHOOK_MAX_ATTEMPTS='0' is invalid: must be at least 1"),
        ("WEBHOOK_BATCH_MAX", "101", "WEBHOOK_BATCH_MAX='101' is invalid: must be between 1 and 100"),
        ("WEBHOOK_CONCURRENCY", "0", "WEBHOOK_CONCURRENCY='0' is invalid"),
        ("WEBHOOK_TIMEOUT", "nan", "WEBHOOK_TIMEOUT='nan' is invalid: must be a positive number"),
        ("WEBHOOK_BACKOFF_BASE", "0", "WEBHOOK_BACKOFF_BASE='0' is invalid"),
        ("WEBHOOK_BACKOFF_BASE", "40", "WEBHOOK_BACKOFF_BASE must not exceed WEBHOOK_BACKOFF_MAX"),
        ("WEBHOOK_CLAIM_IDLE", "40", "WEBHOOK_CLAIM_IDLE must exceed WEBHOOK_TIMEOUT + WEBHOOK_BACKOFF_MAX"),
        ("WEBHOOK_DISCOVERY_INTERVAL", "inf", "WEBHOOK_DISCOVERY_INTERVAL='inf' is invalid"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='loud' is invalid"),
    ],
)
def test_bad_values_name_their_variable(env: str, value: str, expected: str) -> None:
    assert expected in error_of(**{env: value})


@pytest.mark.parametrize("env", ["WEBHOOK_URL", "WEBHOOK_SECRET"])
def test_required(env: str) -> None:
    assert error_of(**{env: None}) == f"{env} is required but not set"
    assert error_of(**{env: "  "}) == f"{env} is required but not set"


def test_short_secret_is_refused_without_showing_it() -> None:
    message = error_of(WEBHOOK_SECRET="short-secret")
    assert message == "WEBHOOK_SECRET=(hidden) is invalid: must be at least 32 bytes"
    assert "short-secret" not in message


def test_events_maxlen_is_required() -> None:
    assert "EVENTS_MAXLEN must be above 0" in error_of(EVENTS_MAXLEN=None)


def test_main_exits_2_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "EVENTS_", "REDIS_"))}
    env.update(BASE, WEBHOOK_MAX_ATTEMPTS="zero")
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard_webhooks"], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "switchboard-webhooks: configuration error: WEBHOOK_MAX_ATTEMPTS='zero' is invalid: "
        "invalid literal for int() with base 10: 'zero'"
    ]
