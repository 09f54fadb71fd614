"""Configuration: defaults, and every bad value names its variable (never a
secret's value); the process exits 2 with one clear line."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from switchboard_gateway.settings import Settings, SettingsError

SECRET = "settings-test-secret-0123456789abcdef"
BASE = {"JWT_SECRET": SECRET}


def load(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def error_of(**env: str) -> str:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**BASE, **env})
    return str(raised.value)


def test_defaults() -> None:
    s = load()
    assert s.jwt_secret == SECRET
    assert (s.host, s.port) == ("0.0.0.0", 8000)
    assert s.redis_url == "redis://localhost:6379/0" and s.redis_prefix == "sb"
    assert s.api_key is None
    assert s.allow_guests is False and s.guest_token_ttl_s == 3600
    assert s.allowed_origins is None
    assert (s.history_size, s.history_ttl_s) == (1000, 86400)
    assert s.presence_ttl_s == 30 and s.idempotency_window_s == 120
    assert (s.presence_list_max, s.presence_events_max) == (100, 200)
    assert (s.publish_rate, s.publish_burst) == (10, 20)
    assert (s.max_frame_bytes, s.max_text_chars, s.max_rooms_per_connection) == (16384, 2000, 50)
    assert (s.send_queue_max, s.send_queue_max_bytes) == (1000, 4 * 1024 * 1024)
    assert s.abuse_errors == 50
    assert (s.drain_notice_s, s.drain_timeout_s) == (2, 10)
    assert (s.ws_ping_interval_s, s.ws_ping_timeout_s, s.ws_fast_path) == (20, 20, True)
    assert not s.memory_broker
    assert s.presence_entry_lifetime_s == 15 and s.presence_refresh_interval_s == 7.5
    assert (s.redis_cluster, s.publish_durability, s.durability_timeout_s) == ("auto", "primary", 1.0)


def test_values_are_parsed() -> None:
    s = load(
        PORT="9001",
        NODE_ID="gw-7",
        REDIS_URL="memory://",
        ALLOW_GUESTS=" Yes ",
        ALLOWED_ORIGINS="https://a.example, https://b.example/ ,",
        PRESENCE_TTL="0.5",
        PRESENCE_LIST_MAX="5",
        PRESENCE_EVENTS_MAX="0",
        DRAIN_NOTICE="0",
        DRAIN_TIMEOUT="1",
        API_KEY="k",
        WS_PING_TIMEOUT="2.5",
        WS_FAST_PATH="false",
    )
    assert s.ws_ping_timeout_s == 2.5 and s.ws_fast_path is False
    assert s.port == 9001 and s.node == "gw-7" and s.memory_broker
    assert s.allow_guests is True
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.presence_ttl_s == 0.5 and s.drain_notice_s == 0 and s.api_key == "k"
    assert (s.presence_list_max, s.presence_events_max) == (5, 0)  # 0: counts only, never names
    assert load(ALLOWED_ORIGINS=" , ").allowed_origins is None
    for url in ("redis://h:1/0", "rediss://h", "unix:///tmp/r.sock"):
        assert load(REDIS_URL=url).redis_url == url


def test_default_node_id_is_unique_per_worker() -> None:
    first, second = load(), load(NODE_ID="  ")  # blank is unset
    host = socket.gethostname()
    assert first.node.startswith(f"{host}-{os.getpid()}-") and second.node.startswith(f"{host}-{os.getpid()}-")
    assert first.node != second.node  # a random part: two workers with one pid (containers) differ too
    assert load(NODE_ID=" gw-7 ").node == "gw-7"


@pytest.mark.parametrize("value", ["gw 7", "x" * 65, "gw\t7"])
def test_bad_node_id(value: str) -> None:
    assert error_of(NODE_ID=value).startswith("NODE_ID=")


def test_presence_timing_derives_from_presence_ttl() -> None:
    s = load(PRESENCE_TTL="0.4")
    assert s.presence_entry_lifetime_s == 0.2
    assert s.presence_refresh_interval_s == 0.2  # never below 0.2 s


def test_overrides_win() -> None:
    assert Settings.from_env({**BASE, "PORT": "abc"}, port=1).port == 1
    assert Settings.from_env({}, jwt_secret=SECRET).jwt_secret == SECRET


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PRESENCE_TTL", "-1"),
        ("PRESENCE_TTL", "0"),
        ("PRESENCE_TTL", "nan"),
        ("PRESENCE_TTL", "inf"),
        ("PRESENCE_LIST_MAX", "0"),
        ("PRESENCE_LIST_MAX", "-5"),
        ("PRESENCE_LIST_MAX", "many"),
        ("PRESENCE_EVENTS_MAX", "-1"),
        ("PRESENCE_EVENTS_MAX", "2.5"),
        ("ALLOW_GUESTS", "maybe"),
        ("REDIS_URL", "http://x"),
        ("REDIS_URL", "localhost:6379"),
        ("HISTORY_SIZE", "0"),
        ("HISTORY_SIZE", "1.5"),
        ("PUBLISH_RATE", "fast"),
        ("MAX_FRAME_BYTES", ""),
        ("SEND_QUEUE_MAX", "-3"),
        ("DRAIN_NOTICE", "-1"),
        ("DRAIN_TIMEOUT", "0"),
        ("LOG_LEVEL", "loud"),
        ("GUEST_TOKEN_TTL", "x"),
        ("WS_PING_TIMEOUT", "0"),
        ("WS_PING_TIMEOUT", "soon"),
        ("WS_FAST_PATH", "sometimes"),
        ("REDIS_URL", "redis://a:1,http://b:2"),
        ("REDIS_URL", "redis://a:1,unix:///tmp/r.sock"),
        ("REDIS_URL", "redis://a:1,memory://"),
        ("REDIS_URL", "redis://a:1,,redis://b:2"),
        ("REDIS_CLUSTER", "maybe"),
        ("REDIS_CLUSTER", "yes"),
        ("PUBLISH_DURABILITY", "all"),
        ("DURABILITY_TIMEOUT", "0"),
        ("DURABILITY_TIMEOUT", "-1"),
    ],
)
def test_bad_value_names_its_variable(env: str, value: str) -> None:
    message = error_of(**{env: value})
    assert message.startswith(f"{env}=")
    assert "\n" not in message


def test_short_secret_is_refused_without_showing_it() -> None:
    short = "hunter2-short"
    message = error_of(JWT_SECRET=short)
    assert "JWT_SECRET" in message and "32" in message
    assert short not in message


def test_secret_values_never_appear() -> None:
    # API_KEY accepts any string; JWT_SECRET's value is hidden whatever is wrong with it.
    weird = "x" * 10 + "\u2603"
    assert weird not in error_of(JWT_SECRET=weird)


@pytest.mark.parametrize("env", [{}, {"JWT_SECRET": ""}, {"JWT_SECRET": "   "}])
def test_jwt_secret_missing(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_env(env)


@pytest.mark.parametrize(("notice", "timeout"), [("10", "10"), ("11", "10"), ("5", "2")])
def test_drain_notice_must_be_shorter_than_timeout(notice: str, timeout: str) -> None:
    message = error_of(DRAIN_NOTICE=notice, DRAIN_TIMEOUT=timeout)
    assert "DRAIN_NOTICE" in message and "DRAIN_TIMEOUT" in message


def test_every_field_has_one_env_name() -> None:
    names = load().env_names()
    assert len(names) == len(set(names))
    assert {"REDIS_URL", "JWT_SECRET", "API_KEY", "ALLOW_GUESTS", "PRESENCE_TTL", "DRAIN_TIMEOUT"} <= set(names)


def run_main(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in load().env_names()}
    return subprocess.run(
        [sys.executable, "-m", "switchboard_gateway"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JWT_SECRET": SECRET, "PORT": "abc"}, "PORT"),
        ({"JWT_SECRET": SECRET, "PUBLISH_DURABILITY": "all"}, "PUBLISH_DURABILITY"),
        ({"JWT_SECRET": "too-short-secret"}, "JWT_SECRET"),
        ({}, "JWT_SECRET"),
    ],
)
def test_process_exits_2_with_one_line(env: dict[str, str], variable: str) -> None:
    started = time.monotonic()
    done = run_main(env)
    assert time.monotonic() - started < 10
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr
    assert "too-short-secret" not in done.stderr + done.stdout


# --- the hardening settings (docs/security.md) ------------------------------------------------


def test_hardening_defaults() -> None:
    s = load()
    assert s.demo_mode is False and s.max_token_lifetime_s == 86400
    assert s.guest_rooms == ("lobby", "general", "random") and s.guest_reserved_names == ()
    assert s.guest_mints_per_minute == 10
    assert (s.max_connections, s.max_connections_per_ip, s.max_connections_per_user) == (10000, 100, 20)
    assert s.forwarded_allow_ips == ("127.0.0.1", "::1")
    assert (s.http_request_timeout_s, s.max_header_bytes) == (10, 16384)
    assert (s.frame_rate, s.frame_burst, s.typing_rate, s.typing_burst) == (50, 100, 1, 5)


def test_hardening_values_are_parsed() -> None:
    s = load(
        GUEST_ROOMS=" lobby , team-* ,",
        GUEST_RESERVED_NAMES="Ada Lovelace, ops",
        FORWARDED_ALLOW_IPS="10.0.0.0/8, 192.168.1.7",
        MAX_CONNECTIONS_PER_USER="0",
        MAX_TOKEN_LIFETIME="0",
    )
    assert s.guest_rooms == ("lobby", "team-*") and s.guest_reserved_names == ("Ada Lovelace", "ops")
    assert s.forwarded_allow_ips == ("10.0.0.0/8", "192.168.1.7")
    assert s.max_connections_per_user == 0 and s.max_token_lifetime_s == 0
    assert load(FORWARDED_ALLOW_IPS="*").forwarded_allow_ips == ("*",)
    assert load(FORWARDED_ALLOW_IPS="").forwarded_allow_ips == ()
    assert load(GUEST_ROOMS="*").guest_rooms == ("*",)


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("GUEST_ROOMS", ""),
        ("GUEST_ROOMS", "lobby,a b"),
        ("GUEST_ROOMS", "x{y}"),
        ("FORWARDED_ALLOW_IPS", "proxy.example"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/33"),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONNECTIONS_PER_IP", "-1"),
        ("MAX_CONNECTIONS_PER_USER", "-1"),
        ("MAX_HEADER_BYTES", "100"),
        ("HTTP_REQUEST_TIMEOUT", "0"),
        ("MAX_TOKEN_LIFETIME", "-5"),
        ("FRAME_RATE", "0"),
        ("TYPING_BURST", "0"),
        ("GUEST_MINTS_PER_MINUTE", "0"),
        ("DEMO_MODE", "perhaps"),
        ("ALLOWED_ORIGINS", "chat.example"),
        ("ALLOWED_ORIGINS", "https://chat.example/app"),
        ("ALLOWED_ORIGINS", "ftp://chat.example"),
        ("ALLOWED_ORIGINS", "null"),
    ],
)
def test_bad_hardening_value_names_its_variable(env: str, value: str) -> None:
    message = error_of(**{env: value})
    assert message.startswith(f"{env}=") and "\n" not in message


def test_allowed_origins_are_normalised() -> None:
    s = load(ALLOWED_ORIGINS="HTTPS://Chat.Example:443/, http://LOCALHOST:80, https://chat.example, http://h:8080/")
    assert s.allowed_origins == ("https://chat.example", "http://localhost", "http://h:8080")
    assert load(ALLOWED_ORIGINS="https://[::1]:8443").allowed_origins == ("https://[::1]:8443",)


@pytest.mark.parametrize(
    "env",
    [
        {"JWT_SECRET": "change-me-demo-secret-0123456789abcdef"},
        {"API_KEY": "change-me-demo-api-key"},
        {"JWT_SECRET": "dev-only-secret-change-me-0123456789"},
    ],
)
def test_published_demo_secrets_are_refused_unless_demo_mode(env: dict[str, str]) -> None:
    (name, value), = env.items()
    message = error_of(**env)
    assert name in message and "DEMO_MODE" in message and value not in message
    assert load(DEMO_MODE="true", **env).demo_mode is True


def test_every_published_demo_secret_is_known() -> None:
    """The secrets written in the repository's demo files are the ones refused."""
    from switchboard_gateway.settings import KNOWN_DEMO_SECRETS

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    published = set()
    for path, pattern in (
        ("docker-compose.yml", r"(?:JWT_SECRET|API_KEY):-([^}]+)\}"),
        ("deploy/k8s/secret.example.yaml", r"(?:JWT_SECRET|API_KEY): (\S+)"),
        ("scripts/dev", r"JWT_SECRET:-([^}]+)\}"),
    ):
        with open(os.path.join(root, path)) as f:
            found = re.findall(pattern, f.read())
        assert found, path
        published.update(found)
    assert published <= KNOWN_DEMO_SECRETS


def test_guest_tokens_must_fit_the_max_lifetime() -> None:
    message = error_of(GUEST_TOKEN_TTL="7200", MAX_TOKEN_LIFETIME="3600")
    assert "GUEST_TOKEN_TTL" in message and "MAX_TOKEN_LIFETIME" in message
    assert load(GUEST_TOKEN_TTL="7200", MAX_TOKEN_LIFETIME="0").guest_token_ttl_s == 7200


def test_the_process_refuses_the_demo_secret_with_one_line() -> None:
    done = run_main({"JWT_SECRET": "change-me-demo-secret-0123456789abcdef", "REDIS_URL": "memory://"})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "JWT_SECRET" in line and "DEMO_MODE" in line and "change-me" not in line
