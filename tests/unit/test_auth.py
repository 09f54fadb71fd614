"""Token verification, the `rooms` claim and the API key compare (pure
functions, explicit clock). Guest tokens: test_guests.py."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from switchboard_gateway.auth import AuthError, Principal, bearer_matches, verify_token

SECRET = "unit-test-secret-0123456789abcdef-xyz"
NOW = 1_800_000_000.0


def sign(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def refused(token: str | None, fragment: str) -> None:
    with pytest.raises(AuthError) as raised:
        verify_token(token, SECRET, now=NOW)
    assert fragment in str(raised.value)


def test_valid_token() -> None:
    principal = verify_token(sign({"sub": "alice", "name": "Alice", "exp": NOW + 60}), SECRET, now=NOW)
    assert principal == Principal("alice", "Alice", None, NOW + 60)
    assert principal.may_join("any-room")


def test_token_without_exp_never_expires() -> None:
    principal = verify_token(sign({"sub": "alice"}), SECRET, now=NOW)
    assert principal.expires_at is None


def test_real_clock_is_the_default() -> None:
    verify_token(sign({"sub": "alice", "exp": int(time.time()) + 60}), SECRET)
    with pytest.raises(AuthError, match="expired"):
        verify_token(sign({"sub": "alice", "exp": int(time.time()) - 1}), SECRET)


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token: str | None) -> None:
    refused(token, "missing")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "é"])
def test_garbage(token: str) -> None:
    refused(token, "invalid")


def test_wrong_secret() -> None:
    refused(sign({"sub": "alice"}, secret="another-secret-0123456789abcdef-xyz"), "invalid")


def test_alg_none_is_refused() -> None:
    refused(jwt.encode({"sub": "alice"}, None, algorithm="none"), "invalid")


def test_tampered_payload_is_refused() -> None:
    head, _, sig = sign({"sub": "alice"}).split(".")
    other = sign({"sub": "mallory"}).split(".")[1]
    refused(f"{head}.{other}.{sig}", "invalid")


@pytest.mark.parametrize("exp", [NOW, NOW - 1, 0])
def test_expired(exp: float) -> None:
    refused(sign({"sub": "alice", "exp": exp}), "expired")


def test_not_yet_expired_float_exp() -> None:
    assert verify_token(sign({"sub": "alice", "exp": NOW + 0.5}), SECRET, now=NOW).expires_at == NOW + 0.5


@pytest.mark.parametrize("exp", ["soon", "1900000000", True, None, [1], {"t": 1}])
def test_exp_not_a_number(exp: Any) -> None:
    if exp is None:  # an explicit null is as good as absent
        assert verify_token(sign({"sub": "alice", "exp": exp}), SECRET, now=NOW).expires_at is None
        return
    refused(sign({"sub": "alice", "exp": exp}), "invalid")


def test_sub_missing() -> None:
    refused(sign({"name": "x"}), "invalid")


@pytest.mark.parametrize("sub", ["", 5, None, ["a"], {"id": "a"}, True])
def test_sub_empty_or_not_a_string(sub: Any) -> None:
    refused(sign({"sub": sub}), "invalid")


@pytest.mark.parametrize("name", [None, "", 5, ["x"]])
def test_name_defaults_to_sub(name: Any) -> None:
    claims: dict[str, Any] = {"sub": "bob"}
    if name is not None:
        claims["name"] = name
    assert verify_token(sign(claims), SECRET, now=NOW).name == "bob"


def test_long_name_is_cut() -> None:
    assert verify_token(sign({"sub": "bob", "name": "n" * 500}), SECRET, now=NOW).name == "n" * 64


def test_rooms_claim() -> None:
    principal = verify_token(sign({"sub": "carol", "rooms": ["team-*", "lobby"]}), SECRET, now=NOW)
    assert principal.rooms == ("team-*", "lobby")
    assert principal.may_join("team-1") and principal.may_join("lobby")
    assert not principal.may_join("other")
    empty = verify_token(sign({"sub": "carol", "rooms": []}), SECRET, now=NOW)
    assert empty.rooms == () and not empty.may_join("lobby")


@pytest.mark.parametrize("rooms", ["lobby", [1], ["a", None], {"a": 1}, 5])
def test_bad_rooms_claim(rooms: Any) -> None:
    refused(sign({"sub": "carol", "rooms": rooms}), "rooms")


# --- MAX_TOKEN_LIFETIME: exp required and not too far away -------------------------------


DAY = 86400.0


def test_exp_is_required_with_a_max_lifetime() -> None:
    with pytest.raises(AuthError, match="exp"):
        verify_token(sign({"sub": "alice"}), SECRET, now=NOW, max_lifetime_s=DAY)
    with pytest.raises(AuthError, match="exp"):
        verify_token(sign({"sub": "alice", "exp": None}), SECRET, now=NOW, max_lifetime_s=DAY)
    ok = verify_token(sign({"sub": "alice", "exp": NOW + DAY}), SECRET, now=NOW, max_lifetime_s=DAY)
    assert ok.expires_at == NOW + DAY


@pytest.mark.parametrize("exp", [NOW + DAY + 1, NOW + 10 * 365 * DAY, 2**62])
def test_exp_too_far_away_is_refused(exp: float) -> None:
    with pytest.raises(AuthError, match="MAX_TOKEN_LIFETIME"):
        verify_token(sign({"sub": "alice", "exp": exp}), SECRET, now=NOW, max_lifetime_s=DAY)


def test_expired_is_still_expired_with_a_max_lifetime() -> None:
    with pytest.raises(AuthError, match="expired"):
        verify_token(sign({"sub": "alice", "exp": NOW - 1}), SECRET, now=NOW, max_lifetime_s=DAY)


def test_rooms_claim_is_bounded() -> None:
    assert verify_token(sign({"sub": "c", "rooms": ["r"] * 256}), SECRET, now=NOW).rooms == ("r",) * 256
    refused(sign({"sub": "c", "rooms": ["r"] * 257}), "rooms")
    refused(sign({"sub": "c", "rooms": ["r" * 257]}), "rooms")


def test_a_backtracking_glob_in_the_claim_is_fast() -> None:
    principal = verify_token(sign({"sub": "c", "rooms": ["*a*a*a*a*a*a*a*a*b"] * 50}), SECRET, now=NOW)
    started = time.perf_counter()
    assert not principal.may_join("a" * 64)
    assert time.perf_counter() - started < 0.05


# --- the API key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer k3y", True),
        ("bearer k3y", True),
        ("Bearer  k3y ", True),
        ("Bearer k3y!", False),
        ("Bearer K3Y", False),
        ("Basic k3y", False),
        ("k3y", False),
        ("Bearer ", False),
        ("", False),
        (None, False),
        ("Bearer k\xe9y", False),  # non-ASCII (latin-1) bytes: no TypeError
        ("Bearer \u2603", False),
    ],
)
def test_bearer_matches(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, "k3y") is ok


def test_no_key_configured_matches_nothing() -> None:
    assert not bearer_matches("Bearer ", "") and not bearer_matches("Bearer x", None)
