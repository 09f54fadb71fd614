"""Room names and the `rooms` claim's glob patterns."""

from __future__ import annotations

import re
from functools import lru_cache

# A direct room (protocol §11): ``dm:<user>+<user>``, the two user ids sorted.
# Ids are limited to these characters (guest ids are made of them); ``+``
# appears only in this form, so the split is unambiguous.
DIRECT_ID = r"[A-Za-z0-9_.:@-]{1,64}"
# `\Z`, not `$`: Python's `$` also matches before a trailing newline ("lobby\n").
ROOM_PATTERN = rf"^(?:[A-Za-z0-9][A-Za-z0-9_.:-]{{0,63}}|dm:{DIRECT_ID}\+{DIRECT_ID})\Z"
_ROOM_RE = re.compile(ROOM_PATTERN)
_DIRECT_RE = re.compile(rf"^dm:({DIRECT_ID})\+({DIRECT_ID})\Z")


def is_valid_room(room: str) -> bool:
    return _ROOM_RE.match(room) is not None


def direct_members(room: str) -> tuple[str, str] | None:
    """The two user ids of a direct room name (``dm:<a>+<b>``), else None.
    The ids are returned as written: ``direct_allows`` checks their order."""
    found = _DIRECT_RE.match(room)
    return (found.group(1), found.group(2)) if found else None


def direct_allows(room: str, user_id: str) -> bool | None:
    """Whether `user_id` may join the direct room `room`: only its two users,
    and only under the canonical name (ids sorted), whatever a `rooms` claim
    says. None when `room` is not a direct room (the claim decides)."""
    pair = direct_members(room)
    if pair is None:
        return None
    first, second = pair
    return first <= second and user_id in pair


class _Segment:
    """A run of pattern characters between two `*`: literals and `?`."""

    __slots__ = ("text", "size", "search")

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text)
        # A segment with `?` becomes a regex of literals and `.`: no quantifier,
        # so no backtracking; without `?`, str.find does it.
        self.search = (
            re.compile("".join("." if ch == "?" else re.escape(ch) for ch in text), re.DOTALL).search
            if "?" in text
            else None
        )

    def matches_at(self, name: str, pos: int) -> bool:
        if pos + self.size > len(name):
            return False
        if self.search is None:
            return name.startswith(self.text, pos)
        return all(p == "?" or p == c for p, c in zip(self.text, name[pos : pos + self.size], strict=False))

    def find(self, name: str, start: int, end: int) -> int:
        """Leftmost position in name[start:end] where the segment fits, or -1."""
        if self.search is None:
            return name.find(self.text, start, end)
        found = self.search(name, start, end)
        return -1 if found is None else found.start()


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> tuple[_Segment, ...]:
    return tuple(_Segment(part) for part in pattern.split("*"))


def glob_match(pattern: str, name: str) -> bool:
    """Shell-style glob with `*` (any run) and `?` (one character); every
    other character, `[` included, is literal.

    No backtracking: the first segment must fit at the start, the last at the
    end, and each segment in between is placed leftmost after the previous
    one (leftmost is always safe, as segments have a fixed length). Each
    segment is searched once, so a match costs at most
    O(len(pattern) * len(name)) -- with room names of at most 64 characters,
    linear in the pattern. (The regex translation this replaces needed 3.7 s
    for ``*a*a*a*a*a*a*b`` against 64 ``a``.)"""
    segments = _compile(pattern)
    if len(segments) == 1:
        only = segments[0]
        return only.size == len(name) and only.matches_at(name, 0)
    first, last = segments[0], segments[-1]
    start, end = first.size, len(name) - last.size
    if end < start or not first.matches_at(name, 0) or not last.matches_at(name, end):
        return False
    for segment in segments[1:-1]:
        if segment.size == 0:
            continue  # `**`
        found = segment.find(name, start, end)
        if found < 0:
            return False
        start = found + segment.size
    return True


def room_allowed(room: str, patterns: tuple[str, ...] | None) -> bool:
    """True when `patterns` (the token's `rooms` claim) lets a user join `room`.

    ``None`` (claim absent) allows every room; an empty list allows none.
    """
    if patterns is None:
        return True
    return any(glob_match(p, room) for p in patterns)
