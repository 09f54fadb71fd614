"""Value types of a room's ordered log, shared by every backplane
implementation (Redis, Redis Cluster, in-memory) and their callers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PublishResult:
    offset: int
    epoch: str
    duplicate: bool  # an earlier publish with the same client_msg_id was stored


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A room's position (``epoch``, newest ``top`` offset) and some of its
    history as encoded ``message`` frames, ascending by offset."""

    epoch: str
    top: int
    first: int  # offset of frames[0]; the rest follow one by one (0 when empty)
    frames: list[bytes]
