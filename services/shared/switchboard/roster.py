"""Value type of a room's presence as one backplane call sees it, shared by
every backplane implementation (Redis, Redis Cluster, in-memory) and their
callers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PresencePage:
    """``count`` distinct users present, and some of them: ``members`` holds
    at most the number asked for, as (user JSON, live connections) pairs. A
    big room is never listed whole (see docs/protocol.md, big rooms)."""

    count: int
    members: list[tuple[bytes, int]]
