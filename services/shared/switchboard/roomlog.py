"""Value types of a room's ordered log, shared by every backplane
implementation (Redis, Redis Cluster, in-memory) and their callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from switchboard.roster import PresencePage

# Protocol §11: at most this many distinct emoji on one message, and the
# unread count in `joined` stops here.
MAX_EMOJI_PER_MESSAGE = 20
UNREAD_CAP = 1000

# What a read returns besides the position: nothing, entries after an
# offset, the newest ones before an offset, or the newest ones.
ReadMode = Literal["none", "after", "before", "last"]


@dataclass(frozen=True, slots=True)
class PublishResult:
    offset: int
    epoch: str
    duplicate: bool  # an earlier publish with the same client_msg_id was stored
    # "" when stored (or a duplicate). Otherwise nothing was stored (offset
    # 0): "noop" (a repeated react, an unreact without reaction),
    # "no_target" (not a message of the room's history), "deleted",
    # "forbidden" (not the author), "emoji_limit" (too many distinct emoji).
    status: str = ""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A user's read state in a room: the highest offset read (0 if never)
    and the messages of others after it, not deleted (at most UNREAD_CAP);
    in a direct room, also the other user's mark (``peer_read``, 0 if never)."""

    last_read: int
    unread: int
    peer_read: int = 0


@dataclass(frozen=True, slots=True)
class Heard:
    """The newest offset of ``epoch`` a gateway has heard of (delivered,
    waiting, or acknowledged to a publisher). The backplane held it, so it
    must still show at least that much: if it shows less, it lost writes
    (a failover) and the offsets after its top would be reused."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A room's position (``epoch``, newest ``top`` offset) and some of its
    history as encoded ``message`` frames, ascending by offset."""

    epoch: str
    top: int
    first: int  # offset of frames[0]; the rest follow one by one (0 when empty)
    frames: list[bytes]


@dataclass(frozen=True, slots=True)
class JoinReply:
    """One join's backplane call. ``banned_s`` > 0: the user is banned from
    the room for that long, nothing changed (``snapshot`` and ``page`` are
    empty). Otherwise the room's snapshot (as asked: position only, history
    after an offset, or the newest entries) and its presence page with the
    joiner listed first, both read at the moment the joiner was added."""

    banned_s: float
    snapshot: Snapshot
    page: PresencePage


NOT_JOINED = (Snapshot("", 0, 0, []), PresencePage(0, []))

