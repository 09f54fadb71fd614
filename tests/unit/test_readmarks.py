"""The read-mark coalescer (readmarks.py): at most one write per interval
per (user, room), the last mark always written, never backwards."""

from __future__ import annotations

from switchboard.protocol.frames import User
from switchboard_gateway.readmarks import Mark, ReadMarks

ALICE = User("alice", "Alice")
KEY = ("alice", "lobby")


def mark(offset: int, epoch: str = "e1") -> Mark:
    return Mark(ALICE, epoch, offset)


def test_first_mark_is_written_at_once_then_one_per_interval() -> None:
    marks = ReadMarks(interval_s=1.0)
    assert marks.offer(KEY, mark(1), now=10.0) == mark(1)
    assert marks.offer(KEY, mark(2), now=10.1) is None
    assert marks.offer(KEY, mark(5), now=10.2) is None
    assert marks.offer(KEY, mark(4), now=10.3) is None  # lower: the pending 5 stays
    assert marks.next_due() == 11.0
    assert marks.due(10.9) == []
    assert marks.due(11.0) == [(KEY, mark(5))]  # only the last (highest) one
    assert marks.pending == 0 and marks.next_due() is None
    assert marks.offer(KEY, mark(6), now=11.5) is None  # within a second of the flush
    assert marks.due(12.0) == [(KEY, mark(6))]
    assert marks.offer(KEY, mark(7), now=13.5) == mark(7)  # quiet for a second: at once again


def test_keys_are_independent() -> None:
    marks = ReadMarks(interval_s=1.0)
    other = ("bob", "lobby")
    assert marks.offer(KEY, mark(1), now=0.0) is not None
    assert marks.offer(other, Mark(User("bob", "Bob"), "e1", 1), now=0.1) is not None
    assert marks.offer(("alice", "other"), mark(1), now=0.2) is not None


def test_a_new_epoch_replaces_a_pending_mark() -> None:
    marks = ReadMarks(interval_s=1.0)
    marks.offer(KEY, mark(50), now=0.0)
    marks.offer(KEY, mark(60), now=0.5)
    marks.offer(KEY, mark(2, epoch="e2"), now=0.6)  # history was renewed: offsets restarted
    assert marks.due(1.0) == [(KEY, mark(2, epoch="e2"))]


def test_a_failed_write_is_retried_after_the_interval() -> None:
    marks = ReadMarks(interval_s=1.0)
    written = marks.offer(KEY, mark(3), now=0.0)
    assert written is not None
    marks.failed(KEY, written, now=0.2)
    assert marks.due(1.0) == []
    assert marks.due(1.2) == [(KEY, mark(3))]
    marks.offer(KEY, mark(9), now=1.3)
    marks.failed(KEY, mark(3), now=1.4)  # an older failure does not replace a newer pending mark
    assert marks.due(2.4) == [(KEY, mark(9))]


def test_drain_hands_out_everything_pending() -> None:
    marks = ReadMarks(interval_s=1.0)
    marks.offer(KEY, mark(1), now=0.0)
    marks.offer(KEY, mark(2), now=0.1)
    assert marks.drain() == [(KEY, mark(2))]
    assert marks.pending == 0


def test_old_write_times_are_forgotten() -> None:
    marks = ReadMarks(interval_s=1.0)
    for n in range(5000):
        marks.offer((f"u{n}", "r"), mark(1), now=float(n))  # one second apart: each written at once
    assert len(marks._written) < 3000  # bounded: not one entry per user ever seen
