"""Room names and the `rooms` claim's glob patterns."""

from __future__ import annotations

import re
from functools import lru_cache

# `\Z`, not `$`: Python's `$` also matches before a trailing newline ("lobby\n").
ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z"
_ROOM_RE = re.compile(ROOM_PATTERN)


def is_valid_room(room: str) -> bool:
    return _ROOM_RE.match(room) is not None


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    # Shell-style globs with `*` and `?` only: unlike fnmatch, `[` is literal.
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def room_allowed(room: str, patterns: tuple[str, ...] | None) -> bool:
    """True when `patterns` (the token's `rooms` claim) lets a user join `room`.

    ``None`` (claim absent) allows every room; an empty list allows none.
    """
    if patterns is None:
        return True
    return any(_glob_regex(p).fullmatch(room) for p in patterns)
