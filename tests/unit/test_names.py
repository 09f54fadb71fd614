"""Room names and the `rooms` claim's globs (`*` and `?` only; `[` literal)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.protocol.names import glob_match, is_valid_room, room_allowed


@pytest.mark.parametrize("room", ["a", "Z", "7", "a" * 64, "team-1", "a_b", "a.b", "a:b", "A-._:z9"])
def test_valid_rooms(room: str) -> None:
    assert is_valid_room(room)


@pytest.mark.parametrize(
    "room",
    ["", "a" * 65, "-a", "_a", ".a", ":a", "a b", "a/b", "a{b}", "a[b]", "a*", "é", "a\tb", "abc\n", "\nabc", "a\nb", "a\x00"],
)
def test_invalid_rooms(room: str) -> None:
    assert not is_valid_room(room)


def test_absent_claim_allows_any_room() -> None:
    assert room_allowed("anything", None)


def test_empty_claim_allows_no_room() -> None:
    assert not room_allowed("lobby", ())
    assert not room_allowed("lobby", [])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("room", "patterns", "allowed"),
    [
        ("lobby", ("lobby",), True),
        ("lobby2", ("lobby",), False),
        ("xlobby", ("lobby",), False),
        ("team-1", ("team-*",), True),
        ("team-", ("team-*",), True),
        ("team", ("team-*",), False),
        ("a-team-1", ("team-*",), False),
        ("anything", ("*",), True),
        ("a1", ("a?",), True),
        ("a", ("a?",), False),
        ("a12", ("a?",), False),
        ("x.y", ("x?y",), True),
        ("xzy", ("x.y",), False),  # `.` is literal, not a regex wildcard
        ("a[b]", ("a[b]",), True),  # `[` is literal, unlike fnmatch
        ("ab", ("a[b]",), False),
        ("a", ("a[!b]",), False),
        ("team-9", ("lobby", "team-?"), True),
        ("other", ("lobby", "team-?"), False),
        ("a+b", ("a+b",), True),
        ("aab", ("a+b",), False),
        ("a:b", ("*:*",), True),
        ("LOBBY", ("lobby",), False),  # case-sensitive
    ],
)
def test_globs(room: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert room_allowed(room, patterns) is allowed


# --- the glob matcher: the same answers as a regex, without its backtracking ------------------

def reference(pattern: str, name: str) -> bool:
    """The old translation to a regex: right, but exponential on `*a*a*...`."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


@settings(max_examples=3000)
@given(st.text(alphabet="ab*?[", max_size=9), st.text(alphabet="ab[", max_size=12))
def test_glob_match_agrees_with_the_regex(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) is reference(pattern, name)


@pytest.mark.parametrize(
    "pattern", ["*a*a*a*a*a*a*b", "*a" * 100 + "*b", "*" + "?" * 63 + "b*", "a*" * 60 + "b", "*" * 500 + "b"]
)
def test_patterns_that_made_the_regex_backtrack_are_fast(pattern: str) -> None:
    started = time.perf_counter()
    assert not glob_match(pattern, "a" * 64)
    assert time.perf_counter() - started < 0.01


# --- direct rooms (protocol §11) ---

from switchboard.protocol.names import direct_allows, direct_members  # noqa: E402


@pytest.mark.parametrize(
    "room", ["dm:alice+bob", "dm:guest:ann-x1+guest:bob-y2", "dm:a@b.c+z", f"dm:{'a' * 64}+{'b' * 64}"]
)
def test_direct_room_names_are_valid(room: str) -> None:
    assert is_valid_room(room)


@pytest.mark.parametrize(
    "room", ["dm:alice+", "dm:+bob", "dm:a+b+c", "dm:a b+c", f"dm:{'a' * 65}+b", "lobby+x", "dm:a+b\n"]
)
def test_malformed_direct_room_names_are_invalid(room: str) -> None:
    assert not is_valid_room(room)


def test_only_the_two_users_may_join_a_direct_room() -> None:
    assert direct_members("dm:alice+bob") == ("alice", "bob")
    assert direct_members("dm:alice") is None  # an ordinary room name
    assert direct_allows("dm:alice+bob", "alice") is True
    assert direct_allows("dm:alice+bob", "bob") is True
    assert direct_allows("dm:alice+bob", "carol") is False
    assert direct_allows("dm:bob+alice", "alice") is False  # not the canonical (sorted) name
    assert direct_allows("lobby", "alice") is None


def test_a_direct_room_ignores_the_rooms_claim() -> None:
    from switchboard_gateway.auth import Principal

    narrow = Principal("alice", "Alice", ("lobby",), None)
    everything = Principal("carol", "Carol", ("*",), None)
    assert narrow.may_join("dm:alice+bob") and not narrow.may_join("other")
    assert not everything.may_join("dm:alice+bob") and everything.may_join("other")
