"""The room delivery core (switchboard_gateway.room), driven step by step:
every ordering rule without a broker, a socket or a clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

import pytest

from switchboard.roomlog import Heard, Snapshot
from switchboard_gateway.room import Phase, Probe, ReadAfter, RenewEpoch, Room, RoomEvent

E1, E2, E3 = "e1", "e2", "e3"


def frame(epoch: str, offset: int, variant: str = "") -> str:
    return f"{epoch}/{offset}{variant}"


class Out:
    """A RoomOutput that records what each member was sent."""

    def __init__(self) -> None:
        self.got: dict[str, list[str]] = defaultdict(list)
        self.delivered: list[tuple[str, int | None, int]] = []  # frame, ts, members
        self.evicted: list[str] = []
        self.events: list[RoomEvent] = []
        self.wakes = 0

    def deliver(self, members: Collection[str], frame: str, ts: int | None) -> None:
        self.delivered.append((frame, ts, len(members)))
        for member in members:
            self.got[member].append(frame)

    def send(self, member: str, frame: str) -> None:
        self.got[member].append(frame)

    def reset(self, members: Collection[str], epoch: str) -> None:
        for member in members:
            self.got[member].append(f"reset:{epoch}")

    def evict(self, member: str) -> None:
        self.evicted.append(member)

    def wake(self) -> None:
        self.wakes += 1

    def event(self, event: RoomEvent) -> None:
        self.events.append(event)


def make_room(epoch: str = E1, top: int = 0, members: tuple[str, ...] = ("m",), backlog_max: int = 100) -> tuple[Room[str], Out]:
    out = Out()
    room: Room[str] = Room(out, backlog_max=backlog_max)
    room.start(epoch, top)
    for member in members:
        room.park(member)
        assert room.admit(member, epoch, top)
    return room, out


def live(room: Room[str], epoch: str, *offsets: int, variant: str = "") -> None:
    for offset in offsets:
        room.on_live(offset, epoch, frame(epoch, offset, variant), 1000 + offset)


def history(epoch: str, top: int, first: int, last: int | None = None, variant: str = "") -> Snapshot:
    """A read answer: frames first..last (default: ..top)."""
    last = top if last is None else last
    frames = [frame(epoch, o, variant).encode() for o in range(first, last + 1)] if first else []
    return Snapshot(epoch, top, first if frames else 0, frames)


def answer(room: Room[str], snap: Snapshot) -> None:
    request = room.request
    if isinstance(request, ReadAfter):
        room.on_read(request, snap)
    else:
        assert isinstance(request, RenewEpoch)
        room.on_renewed(request, snap)


def frames_of(epoch: str, first: int, last: int) -> list[str]:
    return [frame(epoch, o) for o in range(first, last + 1)]


# --- live delivery -------------------------------------------------------------------


def test_delivers_in_order_with_its_ts() -> None:
    room, out = make_room()
    live(room, E1, 1, 2, 3)
    assert out.got["m"] == frames_of(E1, 1, 3)
    assert [ts for _, ts, _ in out.delivered] == [1001, 1002, 1003]
    assert (room.phase, room.last, room.request) == (Phase.LIVE, 3, None)


def test_duplicates_are_dropped() -> None:
    room, out = make_room()
    live(room, E1, 1, 2, 1, 2, 2)
    assert out.got["m"] == frames_of(E1, 1, 2)
    assert room.request is None and out.events == []


def test_a_gap_is_filled_from_history_before_anything_newer() -> None:
    room, out = make_room()
    live(room, E1, 1, 3, 4)
    assert room.phase is Phase.CATCHING_UP and out.events == [RoomEvent.CATCH_UP]
    request = room.request
    assert isinstance(request, ReadAfter) and (request.after, request.epoch) == (1, E1)
    assert out.wakes == 1 and room.backlog_size == 2
    answer(room, history(E1, 4, 2))
    assert out.got["m"] == frames_of(E1, 1, 4)  # 3 and 4 from history; the backlog's copies were duplicates
    assert [ts for _, ts, _ in out.delivered] == [1001, None, None, None]
    assert (room.phase, room.request, room.backlog_size) == (Phase.LIVE, None, 0)
    live(room, E1, 5)
    assert out.got["m"][-1] == frame(E1, 5)


def test_backlog_newer_than_the_read_is_delivered_after_it() -> None:
    room, out = make_room()
    live(room, E1, 1, 3, 4, 5, 6)
    answer(room, history(E1, 4, 2))  # the read saw up to 4; 5 and 6 arrived live meanwhile
    assert out.got["m"] == frames_of(E1, 1, 6)
    assert room.phase is Phase.LIVE


def test_a_read_that_does_not_reach_top_reads_again() -> None:
    room, out = make_room()
    live(room, E1, 3)
    answer(room, history(E1, 10, 1, last=5))  # a capped read: 1..5 of 10
    request = room.request
    assert isinstance(request, ReadAfter) and request.after == 5
    answer(room, history(E1, 10, 6))
    assert out.got["m"] == frames_of(E1, 1, 10) and room.phase is Phase.LIVE


def test_messages_before_the_position_are_duplicates_and_after_it_are_delivered() -> None:
    out = Out()
    room: Room[str] = Room(out, backlog_max=10)
    live(room, E1, 4, 5, 6)  # arrived between subscribe and the position read
    assert room.phase is Phase.UNKNOWN and room.backlog_size == 3
    room.start(E1, 5)
    assert out.delivered == [] and room.last == 6  # nobody had joined yet: 6 went to no one
    room.park("m")
    room.admit("m", E1, 6)
    live(room, E1, 7)
    assert out.got["m"] == [frame(E1, 7)]


def test_the_backlog_is_bounded_and_an_overflow_is_read_from_history() -> None:
    room, out = make_room(backlog_max=3)
    live(room, E1, 1, 3)  # gap: catching up
    first_read = room.request
    live(room, E1, *range(4, 12))
    assert room.backlog_size <= 3
    assert RoomEvent.BACKLOG_OVERFLOW in out.events
    answer(room, history(E1, 4, 2))  # the read in flight predates the dropped messages
    request = room.request
    assert request is not first_read and isinstance(request, ReadAfter) and request.after == 4
    answer(room, history(E1, 11, 5))
    assert out.got["m"] == frames_of(E1, 1, 11)
    assert room.phase is Phase.LIVE


def test_catch_up_during_a_read_reads_again_after_it() -> None:
    room, out = make_room()
    live(room, E1, 2)  # gap
    room.catch_up()  # e.g. the subscription came back while the read is in flight
    answer(room, history(E1, 2, 1))
    request = room.request
    assert isinstance(request, ReadAfter) and request.after == 2
    answer(room, history(E1, 3, 3))
    assert out.got["m"] == frames_of(E1, 1, 3) and room.phase is Phase.LIVE


def test_a_failed_read_leaves_the_request_for_a_retry() -> None:
    room, _ = make_room()
    live(room, E1, 2)
    request = room.request
    # The node's read raised: it calls nothing; the same request stays pending.
    live(room, E1, 3)
    assert room.request is request and room.phase is Phase.CATCHING_UP
    answer(room, history(E1, 3, 1))
    assert room.phase is Phase.LIVE


def test_an_answer_to_a_superseded_request_is_ignored() -> None:
    room, out = make_room()
    live(room, E1, 1, 3)
    stale = room.request
    assert isinstance(stale, ReadAfter)
    room.on_position(Probe(E1, 1), E1, 0)  # ignored: not LIVE
    room.park("j")
    room.admit("j", E1, 0)  # its snapshot shows offset 1 lost: renewal supersedes the read
    assert isinstance(room.request, RenewEpoch)
    room.on_read(stale, history(E1, 3, 2))
    assert out.got["m"] == [frame(E1, 1)]


# --- epochs ------------------------------------------------------------------------------


def test_a_new_epoch_is_adopted_from_a_read_with_reset_first() -> None:
    room, out = make_room()
    live(room, E1, 1, 2)
    live(room, E2, 1)  # Redis restarted empty: a message under an epoch the room does not know
    assert room.phase is Phase.CATCHING_UP and room.epoch == E1
    answer(room, history(E2, 2, 0))  # read_after(2) in the new epoch: nothing useful
    assert room.epoch == E2 and out.got["m"][-1] == f"reset:{E2}"
    request = room.request
    assert isinstance(request, ReadAfter) and request.after == 0
    answer(room, history(E2, 2, 1))
    assert out.got["m"] == [*frames_of(E1, 1, 2), f"reset:{E2}", *frames_of(E2, 1, 2)]
    assert RoomEvent.RESET in out.events
    live(room, E1, 3)  # late message of the abandoned epoch
    live(room, E2, 3)
    assert out.got["m"][-1] == frame(E2, 3) and room.phase is Phase.LIVE


def test_a_reset_on_an_empty_new_epoch() -> None:
    room, out = make_room()
    live(room, E1, 1)
    room.on_position(room.probe() or Probe(E1, 1), None, 0)  # the room's state is gone
    answer(room, Snapshot(E2, 0, 0, []))
    assert out.got["m"] == [frame(E1, 1), f"reset:{E2}"]
    assert (room.phase, room.epoch, room.last) == (Phase.LIVE, E2, 0)


def test_a_message_of_an_unknown_epoch_that_the_read_does_not_confirm_is_dropped() -> None:
    room, out = make_room()
    live(room, E1, 1)
    live(room, E2, 1)  # e.g. an epoch a failover then lost
    answer(room, history(E1, 1, 0))
    assert room.phase is Phase.LIVE and room.epoch == E1
    live(room, E2, 2)  # now retired: dropped without another read
    assert room.phase is Phase.LIVE
    assert out.got["m"] == [frame(E1, 1)]


def test_a_message_of_an_unknown_epoch_during_a_read_reads_again() -> None:
    room, out = make_room()
    live(room, E1, 2)  # gap: a read is in flight
    live(room, E2, 1)  # may be newer than that read
    answer(room, history(E1, 2, 1))
    request = room.request
    assert isinstance(request, ReadAfter)  # asked again instead of trusting the older read
    answer(room, history(E2, 1, 0))
    answer(room, history(E2, 1, 1))
    assert out.got["m"] == [*frames_of(E1, 1, 2), f"reset:{E2}", frame(E2, 1)]


# --- offsets are never reused -------------------------------------------------------------------


def test_position_check_below_what_was_delivered_renews_the_epoch() -> None:
    room, out = make_room()
    live(room, E1, 1, 2, 3)
    probe = room.probe()
    assert probe == Probe(E1, 3)
    room.on_position(probe, E1, 1)  # the backplane lost 2 and 3
    request = room.request
    assert isinstance(request, RenewEpoch) and request.stale_epoch == E1
    assert room.phase is Phase.RENEWING and out.events == [RoomEvent.OFFSET_REUSED]
    live(room, E1, 2, variant="'")  # the reused offset, waiting: dropped with its epoch
    answer(room, Snapshot(E2, 0, 0, []))
    assert out.got["m"] == [*frames_of(E1, 1, 3), f"reset:{E2}"]
    assert (room.phase, room.epoch, room.last) == (Phase.LIVE, E2, 0)
    live(room, E2, 1)
    assert out.got["m"][-1] == frame(E2, 1)


def test_a_position_read_before_a_delivery_is_not_a_regression() -> None:
    room, out = make_room()
    live(room, E1, 1)
    probe = room.probe()
    assert probe is not None
    live(room, E1, 2, 3)  # delivered after the position was read
    room.on_position(probe, E1, 1)
    assert room.request is None and out.events == []


def test_a_read_below_what_was_delivered_renews_the_epoch() -> None:
    room, _ = make_room()
    live(room, E1, 1, 2, 3, 5)
    answer(room, history(E1, 2, 0))  # read_after(3) finds top 2
    request = room.request
    assert isinstance(request, RenewEpoch) and request.stale_epoch == E1


def test_a_read_below_a_waiting_message_renews_the_epoch() -> None:
    room, _ = make_room()
    live(room, E1, 1, 3)  # 3 waits for 2
    answer(room, history(E1, 2, 2))  # asked after 3 arrived, and the backplane has only up to 2
    request = room.request
    assert isinstance(request, RenewEpoch) and request.stale_epoch == E1


def test_a_position_below_what_a_joiner_was_shown_renews_the_epoch() -> None:
    room, _ = make_room()
    live(room, E1, 1)
    room.park("j")
    room.admit("j", E1, 3)  # the backplane had 3 when the joiner's snapshot was read
    probe = room.probe()
    assert probe == Probe(E1, 3)
    room.on_position(probe, E1, 2)  # ... and now only 2: offset 3 will be reused
    assert isinstance(room.request, RenewEpoch)


def test_a_delivered_offset_with_other_content_renews_the_epoch() -> None:
    room, out = make_room()
    live(room, E1, 1, 2, 3)
    live(room, E1, 3)  # same content: a duplicate
    assert room.request is None
    live(room, E1, 2, variant="-new")  # offset 2 again, other content: reused
    assert isinstance(room.request, RenewEpoch) and room.phase is Phase.RENEWING
    assert out.events == [RoomEvent.OFFSET_REUSED]


def test_renewal_is_asked_once_per_stale_epoch() -> None:
    room, out = make_room()
    live(room, E1, 1, 2, 3)
    live(room, E1, 2, variant="-new")
    request = room.request
    live(room, E1, 3, variant="-new")
    room.catch_up()
    assert room.request is request and out.events.count(RoomEvent.OFFSET_REUSED) == 1


def test_a_renewal_answered_by_another_gateways_epoch_reads_it() -> None:
    room, out = make_room()
    live(room, E1, 1, 2)
    room.on_position(Probe(E1, 2), E1, 1)
    answer(room, Snapshot(E2, 2, 0, []))  # someone else renewed first, and 2 were published since
    assert room.epoch == E2 and isinstance(room.request, ReadAfter)
    answer(room, history(E2, 2, 1))
    assert out.got["m"] == [*frames_of(E1, 1, 2), f"reset:{E2}", *frames_of(E2, 1, 2)]


def test_a_resurrected_epoch_is_renewed() -> None:
    room, out = make_room()
    live(room, E1, 1)
    live(room, E2, 1)
    answer(room, history(E2, 1, 0))
    answer(room, history(E2, 1, 1))
    assert room.epoch == E2
    room.catch_up()
    answer(room, history(E1, 5, 0))  # a failover lost the epoch change: E1 is back
    request = room.request
    assert isinstance(request, RenewEpoch) and request.stale_epoch == E1
    answer(room, Snapshot(E3, 0, 0, []))
    assert out.got["m"][-1] == f"reset:{E3}" and room.epoch == E3


# --- lost position ------------------------------------------------------------------------------


def test_a_gap_older_than_history_evicts_the_members() -> None:
    room, out = make_room(members=("m", "n"))
    live(room, E1, 1, 9)
    answer(room, history(E1, 9, 6))  # history starts at 6: 2..5 are gone
    assert sorted(out.evicted) == ["m", "n"] and RoomEvent.LOST_POSITION in out.events
    assert out.got["m"] == [frame(E1, 1)]  # nothing after the hole
    assert (room.phase, room.last) == (Phase.LIVE, 9) and room.empty


def test_a_gap_with_history_gone_entirely() -> None:
    room, out = make_room()
    live(room, E1, 1, 9)
    answer(room, Snapshot(E1, 9, 0, []))
    assert out.evicted == ["m"] and room.last == 9 and room.phase is Phase.LIVE


# --- the join seam --------------------------------------------------------------------------------


def test_a_joiner_gets_what_was_delivered_after_its_snapshot() -> None:
    room, out = make_room()
    live(room, E1, 1, 2)
    room.park("j")
    live(room, E1, 3, 4)  # while its snapshot is read
    assert "j" not in out.got
    assert room.admit("j", E1, 3)  # its snapshot saw 3
    assert out.got["j"] == [frame(E1, 4)]
    live(room, E1, 5)
    assert out.got["j"] == frames_of(E1, 4, 5) and "j" in room.members


def test_a_joiner_ahead_of_the_room_waits_for_it() -> None:
    room, out = make_room()
    live(room, E1, 1)
    room.park("j")
    assert room.admit("j", E1, 4)  # the read saw 4; pub/sub has delivered only 1
    assert "j" not in room.members and "j" in room.ahead and "j" in room.joined()
    live(room, E1, 2, 3, 4)
    assert out.got["j"] == [] and "j" in room.members
    live(room, E1, 5)
    assert out.got["j"] == [frame(E1, 5)]


def test_a_joiner_ahead_in_a_new_epoch() -> None:
    room, out = make_room()
    live(room, E1, 1)
    room.park("j")
    assert room.admit("j", E2, 2)  # Redis restarted; the room has not noticed yet
    assert isinstance(room.request, ReadAfter)  # ... and now asks
    live(room, E1, 2)  # waits, and is dropped once the read shows E1 was abandoned
    answer(room, history(E2, 3, 0))
    answer(room, history(E2, 3, 1))
    assert out.got["m"] == [frame(E1, 1), f"reset:{E2}", *frames_of(E2, 1, 3)]
    assert out.got["j"] == [frame(E2, 3)] and "j" in room.members


def test_a_joiner_whose_epoch_the_read_does_not_confirm_is_evicted() -> None:
    room, out = make_room()
    room.park("j")
    assert room.admit("j", E2, 2)
    answer(room, history(E1, 0, 0))  # E1 is current after all
    assert out.evicted == ["j"] and room.joined() == ["m"]


def test_a_joiner_sees_a_reset_that_happened_while_it_was_parked() -> None:
    room, out = make_room()
    live(room, E1, 1)
    room.park("j")
    live(room, E2, 1)
    answer(room, history(E2, 1, 0))
    answer(room, history(E2, 1, 1))
    assert room.admit("j", E1, 1)  # its snapshot was read before the restart
    assert out.got["j"] == [f"reset:{E2}", frame(E2, 1)] and "j" in room.members


def test_a_joiner_whose_snapshot_predates_an_earlier_reset_is_evicted() -> None:
    room, out = make_room()
    live(room, E2, 1)
    answer(room, history(E2, 1, 1))  # read_after(0): everything of E2
    room.park("j")  # parked after the room moved to E2
    assert not room.admit("j", E1, 7)  # a stale read of the old epoch
    assert out.evicted == ["j"] and room.empty is False and "j" not in room.joined()


def test_a_joiner_across_a_lost_position_is_evicted() -> None:
    room, out = make_room()
    live(room, E1, 1)
    room.park("j")
    live(room, E1, 9)
    answer(room, history(E1, 9, 6))
    assert not room.admit("j", E1, 2)
    assert "j" in out.evicted


def test_a_joiner_snapshot_behind_the_room_renews_the_epoch() -> None:
    room, out = make_room()
    live(room, E1, 1, 2, 3)
    room.park("j")
    assert room.admit("j", E1, 1)  # the backplane lost 2 and 3
    assert isinstance(room.request, RenewEpoch) and "j" in room.ahead
    live(room, E1, 2, variant="-new")
    answer(room, Snapshot(E2, 0, 0, []))
    assert out.got["j"] == [f"reset:{E2}"] and "j" in room.members
    live(room, E2, 1)
    assert out.got["j"][-1] == frame(E2, 1) and out.got["m"][-1] == frame(E2, 1)


def test_a_parked_joiner_buffer_is_bounded() -> None:
    room, out = make_room(backlog_max=2)
    room.park("j")
    live(room, E1, 1, 2, 3)
    assert out.evicted == ["j"] and not room.parked("j")
    assert not room.admit("j", E1, 0)


def test_leaving_and_emptiness() -> None:
    room, _ = make_room(members=("a",))
    room.park("b")
    assert not room.empty
    room.discard("a")
    room.discard("b")
    room.discard("nobody")
    assert room.empty


@pytest.mark.parametrize("phase_setup", ["gap", "renew"])
def test_probe_is_none_while_busy(phase_setup: str) -> None:
    room, _ = make_room()
    live(room, E1, 1, 2)
    if phase_setup == "gap":
        live(room, E1, 5)
    else:
        live(room, E1, 2, variant="x")
    assert room.probe() is None


def test_a_room_ahead_in_history_for_two_checks_catches_up() -> None:
    room, out = make_room()
    live(room, E1, 1)
    room.on_position(Probe(E1, 1), E1, 2)  # pub/sub may be on its way with 2
    assert room.request is None
    room.on_position(Probe(E1, 1), E1, 2)  # still not delivered: it was lost
    assert isinstance(room.request, ReadAfter) and out.events == [RoomEvent.CATCH_UP]


# --- a room without history: the first epoch is adopted, not a reset -------------------


def test_a_room_without_history_adopts_its_first_epoch_without_reset() -> None:
    room, out = make_room(epoch="", top=0)  # reads create no epoch: "" until the first publish
    live(room, E1, 1)  # an epoch the room has not read yet: it asks
    request = room.request
    assert isinstance(request, ReadAfter) and (request.after, request.epoch) == (0, "")
    answer(room, history(E1, 1, 1))
    assert out.got["m"] == frames_of(E1, 1, 1)  # no "reset:e1" before it
    assert RoomEvent.RESET not in out.events
    assert (room.phase, room.epoch, room.last) == (Phase.LIVE, E1, 1)
    live(room, E1, 2)
    assert out.got["m"] == frames_of(E1, 1, 2)


def test_joiners_of_a_room_without_history_adopt_the_first_epoch_too() -> None:
    room, out = make_room(epoch="", top=0, members=())
    room.park("early")  # parked before the first publish, its snapshot shows no epoch
    live(room, E1, 1)
    answer(room, history(E1, 1, 1))
    assert room.admit("early", "", 0)
    assert out.got["early"] == frames_of(E1, 1, 1)  # adopted silently, then the message
    # a joiner whose snapshot has the epoch before the room's read does
    room2, out2 = make_room(epoch="", top=0, members=())
    room2.park("j")
    assert room2.admit("j", E1, 1)
    assert room2.request is not None  # an epoch the room has not seen: it reads
    answer(room2, history(E1, 2, 1))
    assert out2.got["j"] == [frame(E1, 2)] and "reset:e1" not in out2.got["j"]


def test_an_empty_position_check_does_not_catch_up_a_room_without_history() -> None:
    room, out = make_room(epoch="", top=0)
    probe = room.probe()
    assert probe is not None
    room.on_position(probe, None, 0)  # the backplane has nothing for the room: in step
    assert room.request is None and out.events == []


def test_a_room_that_had_an_epoch_still_resets_when_history_is_lost() -> None:
    room, out = make_room(epoch=E1, top=2)
    live(room, E2, 1)
    answer(room, history(E2, 1, 1))  # reset; its frames follow the old offset: read again
    answer(room, history(E2, 1, 1))
    assert out.got["m"] == ["reset:e2", frame(E2, 1)]
    assert RoomEvent.RESET in out.events


def test_heard_covers_deliveries_the_backlog_and_local_acks() -> None:
    room, _ = make_room(E1, 3)
    assert room.heard() == Heard(E1, 3)
    room.on_acked(E1, 7)  # a local publish stored at 7, not yet heard live
    assert room.heard() == Heard(E1, 7)
    room.on_acked(E2, 9)  # another epoch's ack says nothing about this one
    room.on_acked(E1, 5)  # an older ack does not lower it
    assert room.heard() == Heard(E1, 7)
    probe = room.probe()
    assert probe is not None and probe.last == 7
    room.on_position(probe, E1, 4)  # the backplane lost the acked writes
    assert room.phase is Phase.RENEWING


def test_a_room_without_an_epoch_claims_nothing() -> None:
    room, _ = make_room("", 0)
    assert room.heard() is None
