"""``presence_count`` frames, coalesced per room.

Above PRESENCE_EVENTS_MAX users a room's joins and leaves are not announced
one by one; the backplane reports each new count to every gateway with
members there instead (``BrokerEvents.on_presence_count``). Forwarding each
report would cost every member a frame per join. Here a room's newest count
is sent at most once per interval: the first change after a quiet interval
at once, later ones when the room's timer fires, last value wins. One timer
per room (``loop.call_later``), not a task per report; a room's state goes
away one quiet interval after its last change.

Each gateway forwards the newest count it saw; they all see the same reports
in the same order (one channel per room), so members agree within an interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class _Cancellable(Protocol):
    def cancel(self) -> None: ...


# (delay in seconds, callback) -> a handle; asyncio's loop.call_later by default.
Scheduler = Callable[[float, Callable[[], None]], _Cancellable]


class _RoomCount:
    __slots__ = ("sent", "pending", "timer")

    def __init__(self, sent: int) -> None:
        self.sent = sent  # the count members were told last
        self.pending: int | None = None  # newer, waiting for the timer
        self.timer: _Cancellable | None = None


class PresenceCounts:
    def __init__(
        self, send: Callable[[str, int], None], interval_s: float = 1.0, call_later: Scheduler | None = None
    ) -> None:
        self._send = send  # (room, count): tell the room's members on this gateway
        self._interval_s = interval_s
        self._call_later = call_later
        self._rooms: dict[str, _RoomCount] = {}

    def update(self, room: str, count: int) -> None:
        """The backplane reports the room's new count."""
        state = self._rooms.get(room)
        if state is None:  # quiet until now: send at once, hold later ones
            state = self._rooms[room] = _RoomCount(count)
            self._send(room, count)
            self._arm(room, state)
        else:
            state.pending = count

    def announced(self, room: str, count: int) -> None:
        """A ``presence_join``/``_leave`` carrying ``count`` went to the
        members: a count waiting here is older than that, so it is dropped."""
        state = self._rooms.get(room)
        if state is not None:
            state.sent, state.pending = count, None

    def close(self) -> None:
        for state in self._rooms.values():
            if state.timer is not None:
                state.timer.cancel()
        self._rooms.clear()

    def _arm(self, room: str, state: _RoomCount) -> None:
        call_later = self._call_later or asyncio.get_running_loop().call_later
        state.timer = call_later(self._interval_s, lambda: self._tick(room))

    def _tick(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        state.timer = None
        if state.pending is None or state.pending == state.sent:
            del self._rooms[room]  # quiet for an interval: the next change goes out at once
            return
        state.sent, state.pending = state.pending, None
        self._send(room, state.sent)
        self._arm(room, state)
