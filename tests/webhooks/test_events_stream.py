"""The Lua include the gateway's scripts use to append events
(backplane/scripts/events.lua), on a real Redis."""

from __future__ import annotations

import pytest

from switchboard.backplane import scripts
from switchboard.backplane.events import with_id
from switchboard.protocol.events import MessageEvent, RoomOccupied, RoomVacated, UserJoined, UserLeft, decode_event

from .conftest import EventsWriter


def _stored(events: EventsWriter) -> list[tuple[str, bytes]]:
    return [(eid.decode(), fields[b"e"]) for eid, fields in events.redis.xrange(events.stream)]


def test_events_off_appends_nothing(events: EventsWriter) -> None:
    # EVENTS_MAXLEN 0 (the default): not even the stream key is created.
    events.redis.eval(scripts.APPEND_EVENT.source, 1, events.stream, 0, '{"type":"x"}')
    # No key given at all: the same.
    events.redis.eval(scripts.EVENTS_PRELUDE + "append_event(KEYS[1], ARGV[1], ARGV[2])", 0, 100, '{"type":"x"}')
    assert events.redis.exists(events.stream) == 0


def test_the_stream_is_capped(events: EventsWriter) -> None:
    for _ in range(10):
        events.redis.eval(scripts.APPEND_EVENT.source, 1, events.stream, 50, *['{"type":"x"}'] * 100)
    length = events.redis.xlen(events.stream)
    # MAXLEN ~ trims whole stream nodes (100 entries each by default).
    assert 50 <= length <= 50 + 100


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("room_occupied", RoomOccupied), ("room_vacated", RoomVacated), ("user_joined", UserJoined), ("user_left", UserLeft)],
)
def test_room_events_decode(events: EventsWriter, kind: str, cls: type) -> None:
    events.room_event(kind, 'room "quoted" é', user=("guest:ann-1a2b", 'Ann "A"'))
    ((entry_id, stored),) = _stored(events)
    event = decode_event(with_id(entry_id, stored))
    assert type(event) is cls
    assert (event.id, event.room, event.user.id, event.user.name) == (entry_id, 'room "quoted" é', "guest:ann-1a2b", 'Ann "A"')
    assert event.ts > 1_600_000_000_000


def test_a_message_event_is_the_frame_the_publish_script_builds(events: EventsWriter) -> None:
    frame = events.message("lobby", 7, "hi")
    ((entry_id, stored),) = _stored(events)
    assert stored == frame  # appended as is: no second encoding in the publish script
    event = decode_event(with_id(entry_id, stored))
    assert isinstance(event, MessageEvent)
    assert (event.offset, event.epoch, event.msg_id, event.text, event.kind) == (7, "ep01", "ep01-7", "hi", "message")
