"""Coalescing of ``read`` frames (protocol §11), sans-I/O.

A client may send ``read`` for every message it shows; the backplane needs
at most one write per second per user and room. ``ReadMarks`` decides, for
each (user, room), whether a new mark is written now (nothing written for
that key within the interval) or kept pending, and hands pending marks out
once their interval has passed (``due``), so the last one is always written,
at most `interval` late. Marks only move forward within an epoch (a mark of
another epoch replaces a pending one: the room's history was renewed).
The node drives it with a timer and performs the writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.protocol.frames import User

Key = tuple[str, str]  # (user id, room)


@dataclass(frozen=True, slots=True)
class Mark:
    user: User
    epoch: str
    offset: int


class ReadMarks:
    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._written: dict[Key, float] = {}  # when a mark of the key was last handed out
        self._pending: dict[Key, Mark] = {}
        self._clean_at = 1024  # table size at which old write times are dropped

    @property
    def pending(self) -> int:
        return len(self._pending)

    def offer(self, key: Key, mark: Mark, now: float) -> Mark | None:
        """The mark to write now, or None when it waits (merged with any
        pending one) for ``due``."""
        self._forget_old(now)
        pending = self._pending.get(key)
        if pending is not None:
            if pending.epoch != mark.epoch or mark.offset > pending.offset:
                self._pending[key] = mark
            return None
        last = self._written.get(key)
        if last is not None and now - last < self.interval_s:
            self._pending[key] = mark
            return None
        self._written[key] = now
        return mark

    def due(self, now: float) -> list[tuple[Key, Mark]]:
        """Pending marks whose interval has passed: write them now."""
        out = []
        for key, mark in list(self._pending.items()):
            if now - self._written.get(key, now - self.interval_s) >= self.interval_s:
                del self._pending[key]
                self._written[key] = now
                out.append((key, mark))
        return out

    def next_due(self) -> float | None:
        """When the earliest pending mark is due (None: nothing pending)."""
        if not self._pending:
            return None
        return min(self._written.get(key, 0.0) + self.interval_s for key in self._pending)

    def failed(self, key: Key, mark: Mark, now: float) -> None:
        """A write failed (backplane down): keep the mark to retry after the
        interval, unless a newer one is already waiting."""
        self._written[key] = now
        pending = self._pending.get(key)
        if pending is None or (pending.epoch == mark.epoch and pending.offset < mark.offset):
            self._pending[key] = mark

    def drain(self) -> list[tuple[Key, Mark]]:
        """Every pending mark, at once (the gateway is stopping)."""
        out = list(self._pending.items())
        self._pending.clear()
        return out

    def _forget_old(self, now: float) -> None:
        """Write times older than the interval decide nothing: drop them
        (amortised: only when the table has doubled since)."""
        if len(self._written) > self._clean_at:
            self._written = {
                k: t for k, t in self._written.items() if now - t < self.interval_s or k in self._pending
            }
            self._clean_at = 2 * len(self._written) + 1024
