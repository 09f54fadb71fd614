"""The room delivery core against a model backplane, under every
interleaving Hypothesis finds: live messages delivered, duplicated,
reordered and lost; history lost (new epochs) and newest writes lost
(offsets reused); reads and position checks that answer late or fail; joins
and leaves mid-stream.

Checked at every step: each member receives, after its ``joined`` position,
a contiguous duplicate-free sequence of offsets per epoch, a ``reset`` at
every epoch change, only frames that were published, and one content per
(epoch, offset) across everything the room delivered; the backlog stays
bounded. Once the faults stop, the room and every member reach the
backplane's position.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from switchboard.roomlog import Snapshot
from switchboard_gateway.room import Phase, Probe, ReadAfter, Request, Room, RoomEvent

HISTORY = 6
BACKLOG = 5


class ModelBackplane:
    """One room as Redis holds it (what publish.lua / read.lua do)."""

    def __init__(self) -> None:
        self._epochs = itertools.count(1)
        self._serials = itertools.count(1)
        self.epoch: str | None = None
        self.top = 0
        self.log: dict[int, str] = {}
        self.published: set[str] = set()
        # What a member may legitimately be evicted for: the message it needs
        # next left history (trimmed or lost), or its whole epoch did.
        self.gone: set[tuple[str, int]] = set()
        self.dead: set[str] = set()

    def _ensure_epoch(self) -> str:
        if self.epoch is None:
            self.epoch, self.top, self.log = f"E{next(self._epochs)}", 0, {}
        return self.epoch

    def publish(self) -> tuple[int, str, str]:
        epoch = self._ensure_epoch()
        self.top += 1
        frame = f"{epoch}/{self.top}/#{next(self._serials)}"  # unique content, even for a reused offset
        self.log[self.top] = frame
        if self.log.pop(self.top - HISTORY, None) is not None:
            self.gone.add((epoch, self.top - HISTORY))
        self.published.add(frame)
        return self.top, epoch, frame

    def restart(self) -> None:
        """Redis restarted empty."""
        if self.epoch is not None:
            self.dead.add(self.epoch)
        self.epoch, self.top, self.log = None, 0, {}

    def lose_newest(self, count: int) -> None:
        """A failover lost the newest writes: their offsets will be reused."""
        assert self.epoch is not None or self.top == 0
        for offset in range(max(1, self.top - count + 1), self.top + 1):
            self.log.pop(offset, None)
            self.gone.add((self.epoch or "", offset))
        self.top = max(0, self.top - count)

    def read_after(self, after: int) -> Snapshot:
        epoch = self._ensure_epoch()
        entries = sorted((o, f) for o, f in self.log.items() if o > after)
        return Snapshot(epoch, self.top, entries[0][0] if entries else 0, [f.encode() for _, f in entries])

    def position(self) -> Snapshot:
        return Snapshot(self._ensure_epoch(), self.top, 0, [])

    def positions(self) -> tuple[str | None, int]:
        return (self.epoch, self.top) if self.epoch else (None, 0)

    def renew(self, stale_epoch: str) -> Snapshot:
        if self.epoch is None or self.epoch == stale_epoch:
            if self.epoch is not None:
                self.dead.add(self.epoch)
            self.epoch, self.top, self.log = f"E{next(self._epochs)}", 0, {}
        return self.position()


def parse(frame: str) -> tuple[str, int]:
    epoch, offset, _ = frame.split("/")
    return epoch, int(offset)


class CheckedOutput:
    """The room's output, checking each member's stream as it is sent."""

    def __init__(self, backplane: ModelBackplane) -> None:
        self.backplane = backplane
        self.position: dict[str, tuple[str, int]] = {}  # active member -> (epoch, newest offset)
        self.content: dict[tuple[str, int], str] = {}
        self.evicted: set[str] = set()
        self.events: list[RoomEvent] = []

    def _frame(self, member: str, frame: str) -> None:
        assert member in self.position, f"{member} is sent {frame} but is not a member"
        assert frame in self.backplane.published, f"{frame} was never published"
        epoch, offset = parse(frame)
        at_epoch, at_offset = self.position[member]
        assert (epoch, offset) == (at_epoch, at_offset + 1), (
            f"{member} at {at_epoch}/{at_offset} is sent {frame}: not the next one"
        )
        known = self.content.setdefault((epoch, offset), frame)
        assert known == frame, f"{epoch}/{offset} delivered as {known} and as {frame}"
        self.position[member] = (epoch, offset)

    def deliver(self, members: Collection[str], frame: str, ts: int | None) -> None:
        for member in members:
            self._frame(member, frame)

    def send(self, member: str, frame: str) -> None:
        self._frame(member, frame)

    def reset(self, members: Collection[str], epoch: str) -> None:
        for member in members:
            assert member in self.position, f"{member} is sent a reset but is not a member"
            assert self.position[member][0] != epoch, f"{member} reset to the epoch it is in"
            self.position[member] = (epoch, 0)

    def evict(self, member: str) -> None:
        if member in self.position:
            epoch, top = self.position[member]
            assert epoch in self.backplane.dead or (epoch, top + 1) in self.backplane.gone, (
                f"{member} at {epoch}/{top} evicted though history still holds what follows"
            )
        self.evicted.add(member)
        self.position.pop(member, None)

    def wake(self) -> None:
        pass

    def event(self, event: RoomEvent) -> None:
        self.events.append(event)


class RoomMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.backplane = ModelBackplane()
        self.out = CheckedOutput(self.backplane)
        self.room: Room[str] = Room(self.out, backlog_max=BACKLOG)
        self.wire: list[tuple[int, str, str]] = []  # pub/sub in flight, in order
        self.sent: list[tuple[int, str, str]] = []  # everything ever published (for duplicates)
        self.answer: tuple[Request, Snapshot] | None = None  # a request performed, answer not yet back
        self.check: tuple[Probe, tuple[str | None, int]] | None = None
        self.parked: dict[str, Snapshot | None] = {}
        self.ids = itertools.count()
        start = self.backplane.position()  # the node subscribes, then reads the position
        self.room.start(start.epoch, start.top)

    # --- pub/sub ----------------------------------------------------------------

    @rule(count=st.integers(1, 4))
    def publish(self, count: int) -> None:
        for _ in range(count):
            item = self.backplane.publish()
            self.wire.append(item)
            self.sent.append(item)

    @precondition(lambda self: self.wire)
    @rule(count=st.integers(1, 4))
    def deliver(self, count: int) -> None:
        for _ in range(min(count, len(self.wire))):
            offset, epoch, frame = self.wire.pop(0)
            self.room.on_live(offset, epoch, frame, offset)

    @precondition(lambda self: len(self.wire) >= 2)
    @rule(index=st.integers(1, 3))
    def reorder(self, index: int) -> None:
        index = min(index, len(self.wire) - 1)
        self.wire[0], self.wire[index] = self.wire[index], self.wire[0]

    @precondition(lambda self: self.wire)
    @rule()
    def lose_in_flight(self) -> None:
        self.wire.pop(0)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        offset, epoch, frame = data.draw(st.sampled_from(self.sent))
        self.room.on_live(offset, epoch, frame, offset)

    @rule()
    def resubscribed(self) -> None:
        self.room.catch_up()

    # --- the backplane's faults ------------------------------------------------------------

    @rule()
    def redis_restarts_empty(self) -> None:
        self.backplane.restart()
        self.wire.clear()  # the subscription connection died with it

    @rule(count=st.integers(1, 4))
    def failover_loses_newest_writes(self, count: int) -> None:
        self.backplane.lose_newest(count)

    # --- the reads the room asks for ---------------------------------------------------------

    @precondition(lambda self: self.room.request is not None and self.answer is None)
    @rule()
    def perform_request(self) -> None:
        request = self.room.request
        assert request is not None
        if isinstance(request, ReadAfter):
            self.answer = (request, self.backplane.read_after(request.after))
        else:
            self.answer = (request, self.backplane.renew(request.stale_epoch))

    @precondition(lambda self: self.answer is not None)
    @rule()
    def answer_request(self) -> None:
        assert self.answer is not None
        request, snap = self.answer
        self.answer = None
        if isinstance(request, ReadAfter):
            self.room.on_read(request, snap)
        else:
            self.room.on_renewed(request, snap)

    @precondition(lambda self: self.answer is not None)
    @rule()
    def request_fails(self) -> None:
        self.answer = None  # the node logs, backs off and performs room.request again

    @precondition(lambda self: self.check is None)
    @rule()
    def read_positions(self) -> None:
        probe = self.room.probe()
        if probe is not None:
            self.check = (probe, self.backplane.positions())

    @precondition(lambda self: self.check is not None)
    @rule()
    def check_positions(self) -> None:
        assert self.check is not None
        probe, (epoch, top) = self.check
        self.check = None
        self.room.on_position(probe, epoch, top)

    # --- members ------------------------------------------------------------------------

    @rule()
    def join(self) -> None:
        member = f"m{next(self.ids)}"
        self.room.park(member)
        self.parked[member] = None

    @precondition(lambda self: any(snap is None for snap in self.parked.values()))
    @rule(data=st.data())
    def read_snapshot(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(m for m, s in self.parked.items() if s is None)))
        self.parked[member] = self.backplane.position()

    @precondition(lambda self: any(snap is not None for snap in self.parked.values()))
    @rule(data=st.data())
    def send_joined(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(m for m, s in self.parked.items() if s is not None)))
        self._admit(member)

    def _admit(self, member: str) -> None:
        snap = self.parked.pop(member)
        assert snap is not None
        if not self.room.parked(member):
            assert member in self.out.evicted
            return
        self.out.position[member] = (snap.epoch, snap.top)  # `joined` went out first
        if not self.room.admit(member, snap.epoch, snap.top):
            assert member in self.out.evicted

    @precondition(lambda self: self.out.position or self.parked)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted([*self.out.position, *self.parked])))
        self.room.discard(member)
        self.out.position.pop(member, None)
        self.parked.pop(member, None)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def backlog_is_bounded(self) -> None:
        assert self.room.backlog_size <= BACKLOG

    @invariant()
    def a_request_exactly_while_busy(self) -> None:
        busy = self.room.phase in (Phase.CATCHING_UP, Phase.RENEWING)
        assert (self.room.request is not None) == busy

    @invariant()
    def members_are_known(self) -> None:
        assert set(self.room.joined()) == set(self.out.position)

    def teardown(self) -> None:
        """The faults stop: pub/sub delivers, reads succeed, positions are
        checked. Everything converges to the backplane's position."""
        for _ in range(20):
            while self.wire:
                self.deliver(len(self.wire))
            if self.answer is not None:
                self.answer_request()
            for _ in range(100):
                if self.room.request is None:
                    break
                self.perform_request()
                self.answer_request()
            else:
                raise AssertionError(f"the room keeps asking: {self.room.request} {self.out.events[-6:]}")
            for member, snap in list(self.parked.items()):
                if snap is None:
                    self.parked[member] = self.backplane.position()
                self._admit(member)
            self.check = None
            for _ in range(2):  # a gap nobody announced shows at the second check
                self.read_positions()
                if self.check is not None:
                    self.check_positions()
            if self.room.request is None and not self.wire and not self.parked:
                break
        for kind in sorted({e.value for e in self.out.events}):
            event(kind)  # see --hypothesis-show-statistics
        assert self.room.phase is Phase.LIVE
        assert (self.room.epoch, self.room.last) == (self.backplane.epoch, self.backplane.top)
        assert set(self.room.members) == set(self.out.position)
        for member, position in self.out.position.items():
            assert position == (self.backplane.epoch, self.backplane.top), member


RoomMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRoomStateMachine = RoomMachine.TestCase
