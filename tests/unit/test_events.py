"""The events stream layout (slots, stream keys, ids) and the event schema."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_key_slot

from switchboard.backplane.events import EventsLayout, with_id
from switchboard.backplane.keys import RoomKeys
from switchboard.backplane.slots import SLOTS, _tags, key_slot, slot_of_tag, slot_tag
from switchboard.protocol import codec, frames
from switchboard.protocol.events import (
    MessageEvent,
    RoomOccupied,
    RoomVacated,
    UserJoined,
    UserLeft,
    decode_batch,
    decode_event,
)
from switchboard.protocol.names import ROOM_PATTERN


def test_every_slot_has_a_short_tag_of_its_own() -> None:
    tags = [slot_tag(s) for s in range(SLOTS)]
    assert [slot_of_tag(t) for t in tags] == list(range(SLOTS))
    assert all(1 <= len(t) <= 3 and t.isalnum() for t in tags)


def test_the_tag_table_never_changes() -> None:
    # The tags are part of the key names: gateways and dispatchers of every
    # version must agree on them. Changing the search breaks deployments.
    digest = hashlib.sha256(",".join(_tags()).encode()).hexdigest()
    assert digest == "8de056e898040b36857f7e29dba8cf2f6c52e5a1cca5838075aebd7c6b15882f"
    assert slot_tag(5061) == "bar" and slot_tag(0) == "06S"


@pytest.mark.parametrize("slot", [-1, SLOTS])
def test_slot_out_of_range(slot: int) -> None:
    with pytest.raises(ValueError):
        slot_tag(slot)


@given(st.text(alphabet="ab{}:x", max_size=12))
def test_key_slot_is_redis_rule(key: str) -> None:
    assert key_slot(key) == redis_key_slot(key.encode())


def test_standalone_has_one_stream() -> None:
    layout = EventsLayout("sb", cluster=False)
    assert layout.stream_for_tag("lobby") == layout.stream_for_tag("other") == "sb:events"
    assert layout.all_streams() == ["sb:events"]
    assert layout.event_id("sb:events", "17-0") == "17-0"
    assert layout.dead_letter == "sb:events:dead"


@given(st.from_regex(ROOM_PATTERN, fullmatch=True))
def test_cluster_stream_shares_the_rooms_slot(room: str) -> None:
    layout = EventsLayout("sb", cluster=True)
    stream = layout.stream_for_tag(room)
    assert key_slot(stream) == key_slot(RoomKeys("sb", room).log) == key_slot(RoomKeys("sb", room).presence)
    assert stream == f"sb:events:{{{slot_tag(key_slot(stream))}}}"


def test_cluster_streams_and_ids() -> None:
    layout = EventsLayout("sb", cluster=True)
    streams = layout.all_streams()
    assert len(set(streams)) == SLOTS and [key_slot(s) for s in streams] == list(range(SLOTS))
    # The same entry id in two streams gives two ids.
    assert layout.event_id(streams[7], "17-0") == "7-17-0" != layout.event_id(streams[8], "17-0")


def test_with_id_puts_id_first() -> None:
    assert with_id("5-0", b'{"type":"x","room":"r"}') == b'{"id":"5-0","type":"x","room":"r"}'


@pytest.mark.parametrize("stored", [b"", b"{}", b"{ }", b"[1]", b'"x"', b"{", b"null"])
def test_with_id_refuses_what_is_not_an_object(stored: bytes) -> None:
    with pytest.raises(ValueError):
        with_id("1-0", stored)


def _frame(room: str, offset: int, epoch: str, body: frames.MessageBody) -> bytes:
    # Exactly as backplane/scripts/publish.lua assembles it.
    return (
        codec.message_head(room)
        + f'{offset},"epoch":"{epoch}","msg_id":"{epoch}-{offset}"'.encode()
        + codec.message_tail(body)
    )


def test_a_message_event_is_the_logged_frame() -> None:
    body = frames.MessageBody(user=frames.User(id="u1", name="Ann"), text="hi é", ts=1700000000123)
    event = decode_event(with_id("9-0", _frame("lobby", 4, "ab12", body)))
    assert event == MessageEvent(
        id="9-0", room="lobby", ts=1700000000123, offset=4, epoch="ab12", msg_id="ab12-4",
        user=frames.User("u1", "Ann"), text="hi é",
    )
    assert event.kind == "message" and event.target is None and event.emoji is None


def test_edit_and_reaction_events() -> None:
    edit = decode_event(
        b'{"type":"message","room":"r","ts":1,"offset":5,"epoch":"e","msg_id":"e-5",'
        b'"user":{"id":"u","name":"U"},"text":"new","kind":"edit","target":3}'
    )
    react = decode_event(
        b'{"type":"message","room":"r","ts":1,"offset":6,"epoch":"e","msg_id":"e-6",'
        b'"user":{"id":"u","name":"U"},"text":"","kind":"react","target":3,"emoji":"\xf0\x9f\x91\x8d"}'
    )
    assert isinstance(edit, MessageEvent) and (edit.kind, edit.target, edit.text) == ("edit", 3, "new")
    assert isinstance(react, MessageEvent) and react.emoji == "👍"


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("room_occupied", RoomOccupied), ("room_vacated", RoomVacated), ("user_joined", UserJoined), ("user_left", UserLeft)],
)
def test_room_and_user_events(kind: str, cls: type) -> None:
    data = f'{{"id":"1-0","type":"{kind}","room":"r","ts":7,"user":{{"id":"u","name":"U"}},"new":1}}'
    event = decode_event(data)
    assert type(event) is cls and event.user == frames.User("u", "U") and event.id == "1-0"


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"nope","room":"r","ts":1}',
        b'{"type":"user_joined","room":"r","ts":1}',  # no user
        b'{"type":"user_joined","room":"r","ts":"1","user":{"id":"u","name":"U"}}',
        b"[]",
        b"not json",
    ],
)
def test_bad_events_are_refused(data: bytes) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        decode_event(data)


def test_batch() -> None:
    batch = decode_batch(b'[{"id":"1-0","type":"user_left","room":"r","ts":1,"user":{"id":"u","name":"U"}}]')
    assert [type(e) for e in batch] == [UserLeft]
