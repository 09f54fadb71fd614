"""The gateway's presence_count coalescing, on a hand-driven scheduler: the
first change after a quiet interval goes out at once, later ones at most
once per interval, the newest value wins, an announcement voids an older
pending count, and a quiet room's state goes away."""

from __future__ import annotations

from collections.abc import Callable

from switchboard_gateway.presence_counts import PresenceCounts


class Timers:
    """A scheduler whose timers fire only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None], Timers.Handle]] = []

    class Handle:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timers.Handle:
        handle = Timers.Handle()
        self.pending.append((delay, callback, handle))
        return handle

    def fire(self) -> None:
        """Fire every timer armed so far (one interval passes)."""
        due, self.pending = self.pending, []
        for delay, callback, handle in due:
            assert delay == 1.0
            if not handle.cancelled:
                callback()


def make() -> tuple[PresenceCounts, Timers, list[tuple[str, int]]]:
    sent: list[tuple[str, int]] = []
    timers = Timers()
    counts = PresenceCounts(lambda room, count: sent.append((room, count)), 1.0, timers.call_later)
    return counts, timers, sent


def test_first_change_at_once_then_at_most_one_per_interval_newest_wins() -> None:
    counts, timers, sent = make()
    counts.update("r", 201)
    assert sent == [("r", 201)] and len(timers.pending) == 1
    for n in range(202, 260):  # a burst within the interval: held
        counts.update("r", n)
    assert sent == [("r", 201)]
    timers.fire()
    assert sent == [("r", 201), ("r", 259)] and len(timers.pending) == 1
    timers.fire()  # nothing changed meanwhile: quiet, the state goes away
    assert sent == [("r", 201), ("r", 259)] and timers.pending == []
    counts.update("r", 258)  # the next change after the quiet interval: at once
    assert sent[-1] == ("r", 258)


def test_a_count_that_changed_back_is_not_sent() -> None:
    counts, timers, sent = make()
    counts.update("r", 300)
    counts.update("r", 301)
    counts.update("r", 300)
    timers.fire()
    assert sent == [("r", 300)]


def test_rooms_are_independent() -> None:
    counts, timers, sent = make()
    counts.update("a", 500)
    counts.update("b", 900)
    counts.update("a", 501)
    assert sent == [("a", 500), ("b", 900)]
    timers.fire()
    assert sent == [("a", 500), ("b", 900), ("a", 501)]


def test_an_announcement_voids_an_older_pending_count() -> None:
    counts, timers, sent = make()
    counts.update("r", 202)
    counts.update("r", 201)  # pending ...
    counts.announced("r", 200)  # ... but a presence_leave told members 200 since
    timers.fire()
    assert sent == [("r", 202)]
    counts.announced("other", 5)  # a quiet room: nothing held, its next count goes out at once
    counts.update("other", 6)
    assert sent[-1] == ("other", 6)


def test_close_cancels_the_timers() -> None:
    counts, timers, sent = make()
    counts.update("r", 300)
    counts.update("r", 301)
    counts.close()
    timers.fire()
    assert sent == [("r", 300)]

