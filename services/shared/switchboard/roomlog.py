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
