"""The ``latest`` view of a room's history (protocol §11): its messages with
their edits, deletions and reactions applied. A pure function of log entries.

A change always has a greater offset than the message it changes, so folding
a contiguous run of entries from some offset up to the room's newest gives
every message of that run its final state. The caller reads history from
the newest entry backwards until the run holds `limit` messages below
`before` (``messages_below``), or history ends, then folds it: at most the
whole history, ``HISTORY_SIZE`` entries (1,000 by default), per page, each
decoded once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from switchboard.protocol.frames import LatestMessage, ReactionCount, User


class Entry(msgspec.Struct):
    """What the view reads of one logged ``message`` frame."""

    offset: int
    user: User
    text: str
    ts: int
    kind: str = "message"  # frames logged before kinds existed are messages
    target: int | None = None
    emoji: str | None = None


_decoder = msgspec.json.Decoder(Entry)


def decode(frames: Iterable[bytes]) -> list[Entry]:
    """Log entries (encoded ``message`` frames) as the view reads them."""
    return [_decoder.decode(raw) for raw in frames]


def messages_below(entries: Iterable[Entry], before: int | None) -> int:
    """How many of `entries` are messages below `before` (None: all)."""
    return sum(1 for e in entries if e.kind == "message" and (before is None or e.offset < before))


@dataclass
class _Folded:
    entry: Entry
    text: str
    edited: bool = False
    deleted: bool = False
    reactions: dict[str, set[str]] = field(default_factory=dict)  # emoji -> user ids, first given first


def fold(entries: Iterable[Entry], viewer: str | None) -> list[LatestMessage]:
    """Every message among `entries` (ascending by offset) with the changes
    among them applied; `viewer` is who asks (``me``). Changes to messages
    not among `entries` are ignored. A deleted message
    keeps its offset, author and time, with no text and no reactions."""
    messages: dict[int, _Folded] = {}
    for entry in entries:
        if entry.kind == "message":
            messages[entry.offset] = _Folded(entry, entry.text)
            continue
        folded = messages.get(entry.target or 0)
        if folded is None or folded.deleted:
            continue
        if entry.kind == "edit":
            folded.text, folded.edited = entry.text, True
        elif entry.kind == "delete":
            folded.deleted, folded.text = True, ""
            folded.reactions.clear()
        elif entry.kind == "react" and entry.emoji is not None:
            folded.reactions.setdefault(entry.emoji, set()).add(entry.user.id)
        elif entry.kind == "unreact" and entry.emoji is not None:
            users = folded.reactions.get(entry.emoji)
            if users is not None:
                users.discard(entry.user.id)
                if not users:
                    del folded.reactions[entry.emoji]
    return [_latest(folded, viewer) for folded in messages.values()]


def _latest(folded: _Folded, viewer: str | None) -> LatestMessage:
    entry = folded.entry
    return LatestMessage(
        offset=entry.offset,
        user=entry.user,
        text=folded.text,
        ts=entry.ts,
        edited=folded.edited,
        deleted=folded.deleted,
        reactions={emoji: ReactionCount(len(users), viewer in users) for emoji, users in folded.reactions.items()},
    )


def page(messages: list[LatestMessage], before: int | None, limit: int) -> list[LatestMessage]:
    """The newest `limit` of `messages` (ascending) with offsets below `before`."""
    eligible = [m for m in messages if before is None or m.offset < before]
    return eligible[-limit:] if limit > 0 else []
