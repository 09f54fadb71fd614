"""A user's direct rooms (docs/protocol.md, direct rooms: our addition to
protocol §11): the value type every backplane implementation returns, and
the bounds they keep."""

from __future__ import annotations

from dataclasses import dataclass

# The newest rooms a user's list keeps; older ones drop out of the list (the
# rooms themselves stay joinable by name).
DIRECT_ROOMS_MAX = 100
# A list nobody touched for this long is dropped.
DIRECT_ROOMS_TTL_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class DirectEntry:
    room: str
    peer: bytes | None  # the other user's {id,name} JSON; None if it was lost
    ts: int  # last activity, ms since the Unix epoch
