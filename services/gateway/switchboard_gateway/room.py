"""The delivery core of one room: what each member receives next, and when
the room must be caught up from history.

Sans-I/O: no asyncio and no broker in here. The node feeds a ``Room`` what
happens -- live messages from pub/sub, the results of the reads it was asked
for, position checks, joins and leaves -- and the room answers through its
``RoomOutput`` (deliver to the members, send to one joiner, reset, evict) and
through ``request``: the backplane call the node must perform next. So every
ordering rule is tested without timing (tests/unit/test_room*.py).

The invariant, per member: within an epoch it receives offsets ``n+1, n+2,
...`` after the ``joined`` position ``n``, each once; a new epoch arrives as
``reset`` and the count restarts at 1. A member that cannot be kept so (more
was missed than history keeps) is evicted: the node closes it with 1013 so
that it resumes with ``since``.

How the room keeps it:

- ``last`` is the newest offset handed to the members under ``epoch``. In
  ``LIVE`` a message is delivered when its offset is ``last + 1``; an older
  one is a duplicate and dropped; a newer one reveals a gap, so the room
  asks for ``ReadAfter(last)`` (``CATCHING_UP``) and live messages wait in a
  bounded backlog meanwhile. A backlog that overflows is dropped: history
  holds the same messages, and the catch-up reads them from there.
- An epoch is adopted only from a read (a message's epoch alone is not
  trusted: a delayed message of an abandoned epoch must not win). Leaving an
  epoch sends ``reset`` and retires it; late messages of retired epochs are
  dropped.
- An offset is never reused (contract §9). When the backplane shows fewer
  messages than the room had already heard of in the same epoch -- a
  position check or a read whose ``top`` is below the newest offset the
  room had delivered, held in its backlog or shown to a joiner when it
  asked; a live message for a delivered offset with other content (the last
  ``RECENT_FRAMES`` are kept to compare); or a joiner's snapshot behind what
  the room had delivered when it parked -- its newest writes were lost (a
  failover), so the room asks for ``RenewEpoch`` (``RENEWING``): a fresh
  epoch, and ``reset`` for everyone, as after a Redis restart.
- No epoch yet: reads create nothing, so a room without history has the
  epoch ``""`` (offset 0) until its first publish creates one. That first
  epoch is *adopted* -- by the room, a parked joiner or one ahead -- without
  a ``reset``: nothing was lost, the members simply had no epoch before.
- Joining: a joiner is *parked* while the node reads its snapshot; what the
  room delivers meanwhile is buffered. ``admit`` then sends it what follows
  its snapshot position. A joiner whose snapshot is ahead of the room (pub/sub
  is slower than the read) stays *ahead* and is skipped until the room
  catches up with it. No gap, no duplicate at the seam.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from switchboard.roomlog import Heard, Snapshot

M = TypeVar("M", bound=Hashable)
M_contra = TypeVar("M_contra", bound=Hashable, contravariant=True)

# Delivered frames kept per room to recognise a reused offset. Writes lost in
# a failover are the newest few; offsets older than this are only caught by
# the position check (top below last).
RECENT_FRAMES = 8
# Epochs remembered as abandoned, so that their late messages are dropped.
RETIRED_EPOCHS = 8


class Phase(enum.Enum):
    UNKNOWN = "unknown"  # subscribed, position not read yet: live messages wait
    LIVE = "live"  # delivering offset last + 1 as it arrives
    CATCHING_UP = "catching_up"  # reading history after `last`: live messages wait
    RENEWING = "renewing"  # offsets were reused: waiting for a fresh epoch


class RoomEvent(enum.Enum):
    """Noteworthy transitions, for logs and metrics."""

    CATCH_UP = "catch_up"  # a gap (or a reason to doubt the position): reading history
    RESET = "reset"  # the room moved to another epoch
    LOST_POSITION = "lost_position"  # missed more than history keeps: members evicted
    OFFSET_REUSED = "offset_reused"  # the backplane lost delivered writes: renewing the epoch
    BACKLOG_OVERFLOW = "backlog_overflow"  # live messages dropped, read again from history


@dataclass(frozen=True, slots=True, eq=False)
class ReadAfter:
    """Read the room's messages after `after` (``Broker.read_after``), then
    call ``Room.on_read``."""

    after: int
    epoch: str
    known: int = 0  # the newest offset of `epoch` the room had heard of when asking


@dataclass(frozen=True, slots=True, eq=False)
class RenewEpoch:
    """Give the room a fresh epoch if its epoch is still `stale_epoch`
    (``Broker.renew_epoch``), then call ``Room.on_renewed``."""

    stale_epoch: str


Request = ReadAfter | RenewEpoch


@dataclass(frozen=True, slots=True)
class Probe:
    """The newest offset the room had heard of (delivered, waiting, or shown
    to a joiner) when a position check was asked for."""

    epoch: str
    last: int


class RoomOutput(Protocol[M_contra]):
    """What the room asks of the node; every call is synchronous and must not
    call back into the room."""

    def deliver(self, members: Collection[M_contra], frame: str, ts: int | None) -> None:
        """Hand a message frame to every member (`ts`: its publish time in ms,
        None when it came from history)."""

    def send(self, member: M_contra, frame: str) -> None:
        """Hand a message frame to one member (a joiner at its seam)."""

    def reset(self, members: Collection[M_contra], epoch: str) -> None:
        """Tell `members` that the room's history restarts under `epoch`."""

    def evict(self, member: M_contra) -> None:
        """`member` cannot be kept contiguous: close it so that it resumes."""

    def wake(self) -> None:
        """``request`` is set: perform it."""

    def event(self, event: RoomEvent) -> None:
        """A noteworthy transition happened."""


# A live message waiting in the backlog: (offset, epoch, frame, ts).
_Live = tuple[int, str, str, int | None]
# What a parked joiner missed: (offset, epoch, frame); frame None is a reset to epoch.
_Missed = tuple[int, str, str | None]


class _Parked:
    __slots__ = ("epoch", "last", "retired", "missed")

    def __init__(self, epoch: str, last: int, retired: tuple[str, ...]) -> None:
        self.epoch = epoch  # the room's position when the joiner parked
        self.last = last
        self.retired = retired  # epochs the room had left by then
        self.missed: list[_Missed] = []


class _View:
    """A joiner's position when it is not in step with the room."""

    __slots__ = ("epoch", "top", "stale")

    def __init__(self, epoch: str, top: int, stale: bool = False) -> None:
        self.epoch = epoch
        self.top = top
        self.stale = stale  # its snapshot shows reused offsets: it waits for the reset


def _adopts(epoch: str, last: int) -> bool:
    """A position without an epoch (the room had no history) takes the first
    epoch as its own: no ``reset``, nothing was lost."""
    return epoch == "" and last == 0


class Room(Generic[M]):
    def __init__(self, output: RoomOutput[M], *, backlog_max: int) -> None:
        self._output = output
        self._backlog_max = backlog_max
        self.phase = Phase.UNKNOWN
        self.epoch = ""
        self.last = 0
        self.request: Request | None = None
        self.members: dict[M, None] = {}  # in step with the room (an ordered set)
        self._parked: dict[M, _Parked] = {}
        self._ahead: dict[M, _View] = {}
        self._backlog: list[_Live] = []
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT_FRAMES)
        self._retired: deque[str] = deque(maxlen=RETIRED_EPOCHS)
        self._again = False  # read again once the request in flight is answered
        self._checked_top = 0  # the room's newest offset at the previous position check
        self._acked = 0  # newest offset of `epoch` the backplane acknowledged to a local publisher

    # --- views -------------------------------------------------------------------

    @property
    def backlog_size(self) -> int:
        return len(self._backlog)

    @property
    def empty(self) -> bool:
        """No member, joiner or parked joiner left: the node may unsubscribe."""
        return not (self.members or self._parked or self._ahead)

    @property
    def ahead(self) -> Collection[M]:
        """Joined members not yet in step with the room (their snapshot was ahead)."""
        return self._ahead.keys()

    def joined(self) -> list[M]:
        """Every member that got ``joined`` (in step with the room or ahead of it)."""
        return [*self.members, *self._ahead]

    def parked(self, member: M) -> bool:
        return member in self._parked

    def heard(self) -> Heard | None:
        """What a publish through this node tells the backplane it has heard
        of (``Broker.publish``): a backplane showing less lost writes."""
        return Heard(self.epoch, self._known()) if self.epoch else None

    def on_acked(self, epoch: str, offset: int) -> None:
        """A local publish was stored at (`epoch`, `offset`)."""
        if epoch == self.epoch and offset > self._acked:
            self._acked = offset

    # --- position --------------------------------------------------------------------

    def start(self, epoch: str, top: int) -> None:
        """The room's position, read after subscribing (``Broker.position``)."""
        if self.phase is not Phase.UNKNOWN:
            return
        self.epoch, self.last, self._checked_top = epoch, top, top
        self.phase = Phase.LIVE
        if self._again:  # the backlog overflowed meanwhile: read what it lost
            self._again = False
            self.catch_up()
            return
        self._drain()

    def catch_up(self) -> None:
        """Read history after ``last`` (a gap, or anything may have been missed,
        e.g. the subscription connection was re-established)."""
        if self.phase is Phase.LIVE:
            self._read()
            self._output.event(RoomEvent.CATCH_UP)
        else:
            self._again = True  # the read in flight may predate the reason: read again after it

    def probe(self) -> Probe | None:
        """Take before reading the room's position for ``on_position``; None
        while the room is busy reading anyway."""
        return Probe(self.epoch, self._known()) if self.phase is Phase.LIVE else None

    def on_position(self, probe: Probe, epoch: str | None, top: int) -> None:
        """The backplane's (epoch, newest offset), read after `probe` was
        taken; epoch None (or "") when the room has no history there."""
        if self.phase is not Phase.LIVE or probe.epoch != self.epoch:
            return  # the room moved on meanwhile
        if (epoch or "") != self.epoch:
            self.catch_up()  # the read tells which epoch is current
        elif top < probe.last:
            self._renew(self.epoch)  # == epoch here
        else:
            # Pub/sub may lag a read, so a top ahead of `last` is normal; one
            # that stays ahead until the next check is a silent gap.
            if self.last < min(top, self._checked_top):
                self.catch_up()
            self._checked_top = top

    # --- live messages -------------------------------------------------------------------

    def on_live(self, offset: int, epoch: str, frame: str, ts: int | None) -> None:
        """A message from pub/sub."""
        if self.phase is Phase.LIVE:
            if offset == self.last + 1 and epoch == self.epoch:
                self._deliver(offset, frame, ts)
            else:
                self._accept((offset, epoch, frame, ts))
            return
        if epoch != self.epoch and epoch not in self._retired and self.request is not None:
            self._again = True  # an epoch the read in flight may not know yet
        self._wait((offset, epoch, frame, ts))

    def _accept(self, item: _Live) -> None:
        offset, epoch, frame, ts = item
        if epoch != self.epoch:
            if epoch not in self._retired:
                self._wait(item)
                self.catch_up()
            return
        if offset == self.last + 1:
            self._deliver(offset, frame, ts)
        elif offset <= self.last:
            if self._reused(offset, frame):
                self._renew(epoch)
        else:
            self._wait(item)
            self.catch_up()

    def _reused(self, offset: int, frame: str) -> bool:
        """True when `offset` was delivered with other content."""
        for delivered, delivered_frame in self._recent:
            if delivered == offset:
                return delivered_frame != frame
        return False  # older than we remember: a plain duplicate as far as we know

    def _wait(self, item: _Live) -> None:
        if len(self._backlog) >= self._backlog_max:
            # History holds these messages too: drop them and read them from there.
            self._backlog.clear()
            self._output.event(RoomEvent.BACKLOG_OVERFLOW)
            self.catch_up()
            return
        self._backlog.append(item)

    def _drain(self) -> None:
        items, self._backlog = self._backlog, []
        for index, item in enumerate(items):
            if self.phase is not Phase.LIVE:
                self._backlog.extend(items[index:])
                return
            self._accept(item)

    # --- requests -----------------------------------------------------------------------------

    def on_read(self, request: ReadAfter, snap: Snapshot) -> None:
        """The answer to ``request`` (a ``ReadAfter``)."""
        if request is not self.request:
            return  # superseded (e.g. a renewal was asked meanwhile)
        if snap.epoch in self._retired:
            self._renew(snap.epoch)  # an abandoned epoch came back (a failover lost the change)
            return
        if snap.epoch != self.epoch:
            self._reset(snap.epoch)
            if request.after != 0 and snap.top > 0:  # these frames follow the old epoch's offset
                self._read()
                return
        elif snap.top < request.known:
            # Messages the room heard of before asking are gone from the
            # backplane: their offsets will be reused.
            self._renew(snap.epoch)
            return
        if snap.top > request.after and snap.first != request.after + 1:
            self._lose_position(snap)
        for index, raw in enumerate(snap.frames):
            offset = snap.first + index
            if offset > self.last:
                self._deliver(offset, raw.decode(), None)
        if self.last < snap.top or self._again:
            self._read()
            return
        self._resume()

    def on_renewed(self, request: RenewEpoch, snap: Snapshot) -> None:
        """The answer to ``request`` (a ``RenewEpoch``): the room's position."""
        if request is not self.request:
            return
        if snap.epoch in self._retired or snap.epoch == request.stale_epoch:
            self._renew(snap.epoch)  # not renewed (cannot happen with a correct broker): again
            return
        if snap.epoch != self.epoch:
            self._reset(snap.epoch)
        if self.last < snap.top or self._again:
            self._read()
            return
        self._resume()

    def _known(self) -> int:
        """The newest offset of the current epoch this room has heard of: the
        backplane held it, so it must still show at least that much."""
        known = max(self.last, self._acked)
        for offset, epoch, *_ in self._backlog:
            if epoch == self.epoch and offset > known:
                known = offset
        for view in self._ahead.values():
            if view.epoch == self.epoch and not view.stale and view.top > known:
                known = view.top
        return known

    def _read(self) -> None:
        self._issue(ReadAfter(self.last, self.epoch, self._known()), Phase.CATCHING_UP)

    def _issue(self, request: Request, phase: Phase) -> None:
        self.phase = phase
        self.request = request
        self._again = False
        self._output.wake()

    def _resume(self) -> None:
        """Back to LIVE after a read or renewal that was the latest word."""
        self.phase = Phase.LIVE
        self.request = None
        # A message of an unknown epoch that was waiting when the last read was
        # asked for is answered by it: that epoch is not current. (One that
        # arrived later set `_again`, so we did not get here.)
        # The same holds for a joiner whose snapshot showed another epoch: it
        # cannot be given this epoch's messages from 1, so it resumes.
        for item in self._backlog:
            if item[1] != self.epoch and item[1] not in self._retired:
                self._retired.append(item[1])
        self._backlog = [item for item in self._backlog if item[1] == self.epoch]
        for member, view in list(self._ahead.items()):
            if view.epoch != self.epoch and not view.stale:
                self._evict_joiner(member)
        self._drain()

    def _renew(self, stale_epoch: str) -> None:
        if isinstance(self.request, RenewEpoch) and self.request.stale_epoch == stale_epoch:
            return  # already asked
        self._output.event(RoomEvent.OFFSET_REUSED)
        self._issue(RenewEpoch(stale_epoch), Phase.RENEWING)

    # --- delivery -------------------------------------------------------------------------------

    def _deliver(self, offset: int, frame: str, ts: int | None) -> None:
        self.last = offset
        self._recent.append((offset, frame))
        if self.members:
            self._output.deliver(self.members, frame, ts)
        if self._parked:
            self._note_missed((offset, self.epoch, frame))
        if self._ahead:
            self._advance_ahead(offset, frame)

    def _reset(self, epoch: str) -> None:
        adopting = _adopts(self.epoch, self.last)
        if self.epoch and self.epoch not in self._retired:
            self._retired.append(self.epoch)
        self.epoch, self.last, self._checked_top, self._acked = epoch, 0, 0, 0
        self._recent.clear()
        if not adopting:
            self._output.event(RoomEvent.RESET)
            if self.members:
                self._output.reset(self.members, epoch)
        if self._parked:
            self._note_missed((0, epoch, None))
        for member, view in list(self._ahead.items()):
            if view.epoch != epoch:
                if not _adopts(view.epoch, view.top):
                    self._output.reset((member,), epoch)
                view.epoch, view.top, view.stale = epoch, 0, False
            if view.top == 0:
                self._promote(member)

    def _lose_position(self, snap: Snapshot) -> None:
        """More was missed than history keeps: the members cannot be made whole."""
        self._output.event(RoomEvent.LOST_POSITION)
        for member in list(self.members):
            self._output.evict(member)
        self.members.clear()
        self.last = snap.first - 1 if snap.frames else snap.top
        self._recent.clear()
        for member, view in list(self._ahead.items()):
            if view.epoch == self.epoch and not view.stale and view.top < self.last:
                self._evict_joiner(member)
        # A parked joiner's buffer now has a hole; ``admit`` notices.

    def _note_missed(self, item: _Missed) -> None:
        for member, parked in list(self._parked.items()):
            if len(parked.missed) >= self._backlog_max:
                self._evict_joiner(member)
            else:
                parked.missed.append(item)

    def _advance_ahead(self, offset: int, frame: str) -> None:
        for member, view in list(self._ahead.items()):
            if view.stale or view.epoch != self.epoch:
                continue
            if offset <= view.top:
                if view.top == offset:  # the room reached the joiner's snapshot
                    self._promote(member)
                continue
            if offset != view.top + 1:
                self._evict_joiner(member)
                continue
            self._output.send(member, frame)
            view.top = offset
            if offset == self.last:
                self._promote(member)

    def _promote(self, member: M) -> None:
        del self._ahead[member]
        self.members[member] = None

    def _evict_joiner(self, member: M) -> None:
        self._parked.pop(member, None)
        self._ahead.pop(member, None)
        self._output.evict(member)

    # --- joining and leaving -------------------------------------------------------------------------

    def park(self, member: M) -> None:
        """`member` joins: the node reads its snapshot next, then calls ``admit``."""
        self._parked[member] = _Parked(self.epoch, self.last, tuple(self._retired))

    def admit(self, member: M, epoch: str, top: int) -> bool:
        """`member` was sent ``joined`` at (`epoch`, `top`): send it what the
        room delivered beyond that while it was parked. False when it is not
        admitted (evicted now or earlier: the node closes it)."""
        parked = self._parked.pop(member, None)
        if parked is None:
            return False
        if epoch != parked.epoch and epoch in parked.retired:
            # Its snapshot predates a reset the room had already sent: the
            # joiner would need the new epoch's messages from 1.
            self._output.evict(member)
            return False
        view = _View(epoch, top)
        if epoch == parked.epoch and top < parked.last:
            # The snapshot lacks offsets the room had delivered: they were lost
            # and will be reused. The joiner waits for the new epoch's reset.
            view.stale = True
            if epoch == self.epoch:
                self._renew(epoch)
        for offset, item_epoch, frame in parked.missed:
            if frame is None:  # the room moved to item_epoch
                if view.epoch != item_epoch:
                    if not _adopts(view.epoch, view.top):
                        self._output.reset((member,), item_epoch)
                    view.epoch, view.top, view.stale = item_epoch, 0, False
                continue
            if view.stale or item_epoch != view.epoch or offset <= view.top:
                continue  # waiting for a reset, in a newer epoch, or already in its snapshot
            if offset != view.top + 1:
                self._output.evict(member)  # the room skipped ahead (lost position)
                return False
            self._output.send(member, frame)
            view.top = offset
        if not view.stale and view.epoch == self.epoch:
            if view.top == self.last:
                self.members[member] = None
                return True
            if view.top < self.last:  # the room skipped ahead (lost position)
                self._output.evict(member)
                return False
        elif not view.stale:
            # Its snapshot shows an epoch the room has not seen: ask which is
            # current (``_resume`` settles it).
            self.catch_up()
        self._ahead[member] = view
        return True

    def discard(self, member: M) -> None:
        """`member` left (or its connection closed)."""
        self.members.pop(member, None)
        self._parked.pop(member, None)
        self._ahead.pop(member, None)
