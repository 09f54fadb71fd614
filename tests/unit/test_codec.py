"""The codec: every client frame decodes, every bad input is a ProtocolError
with code bad_request (carrying the frame's id when it is usable), and
nothing else ever escapes ``decode_client_frame``, whatever arrives."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.protocol import codec, frames
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.errors import ProtocolError

CLIENT_TYPES = ("join", "leave", "publish", "history", "presence", "typing", "ping")
CLIENT_CLASSES = (
    frames.Join,
    frames.Leave,
    frames.Publish,
    frames.History,
    frames.Presence,
    frames.Typing,
    frames.Ping,
)


def decode(obj: Any) -> frames.ClientFrame:
    return codec.decode_client_frame(json.dumps(obj))


def bad(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as raised:
        codec.decode_client_frame(data)
    assert raised.value.code == ErrorCode.BAD_REQUEST
    return raised.value


# --- every frame type decodes -------------------------------------------------------


def test_join_minimal_and_full() -> None:
    frame = decode({"type": "join", "room": "lobby"})
    assert isinstance(frame, frames.Join)
    assert (frame.room, frame.since, frame.history, frame.id) == ("lobby", None, None, None)

    frame = decode(
        {"type": "join", "id": 7, "room": "team-1", "since": {"offset": 12, "epoch": "ab12"}, "history": 100}
    )
    assert isinstance(frame, frames.Join)
    assert frame.id == 7 and frame.history == 100
    assert frame.since == frames.Since(offset=12, epoch="ab12")


def test_leave_presence_typing_ping() -> None:
    assert decode({"type": "leave", "room": "a"}) == frames.Leave(room="a")
    assert decode({"type": "presence", "room": "a", "id": "p1"}) == frames.Presence(room="a", id="p1")
    assert decode({"type": "typing", "room": "a"}) == frames.Typing(room="a")
    assert decode({"type": "ping"}) == frames.Ping()
    assert decode({"type": "ping", "id": "x"}) == frames.Ping(id="x")


def test_publish() -> None:
    frame = decode({"type": "publish", "id": 1, "room": "a", "text": "héllo 👋", "client_msg_id": "c" * 64})
    assert isinstance(frame, frames.Publish)
    assert (frame.text, frame.client_msg_id) == ("héllo 👋", "c" * 64)
    assert decode({"type": "publish", "room": "a", "text": "x"}).client_msg_id is None  # type: ignore[union-attr]


def test_history_defaults_and_bounds() -> None:
    frame = decode({"type": "history", "room": "a"})
    assert isinstance(frame, frames.History)
    assert (frame.before, frame.limit) == (None, 50)
    frame = decode({"type": "history", "room": "a", "before": 1, "limit": 100})
    assert (frame.before, frame.limit) == (1, 100)  # type: ignore[union-attr]
    assert decode({"type": "history", "room": "a", "limit": 1}).limit == 1  # type: ignore[union-attr]


def test_bytes_input_and_unknown_fields_are_accepted() -> None:
    assert codec.decode_client_frame(b'{"type":"ping","id":3}') == frames.Ping(id=3)
    assert decode({"type": "leave", "room": "a", "future": {"x": 1}}) == frames.Leave(room="a")


@pytest.mark.parametrize(
    "room",
    ["a", "A", "0", "a" * 64, "team-1", "x_y.z:w-v", "9:" + "z" * 62],
)
def test_valid_room_names(room: str) -> None:
    assert decode({"type": "join", "room": room}).room == room  # type: ignore[union-attr]


# --- every bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "",
        "not json",
        "{",
        '{"type":"ping"',
        b"\xff\xfe",
        b"\x00",
        "null",
        "42",
        '"ping"',
        "[]",
        '[{"type":"ping"}]',
    ],
)
def test_not_a_json_object(data: str | bytes) -> None:
    err = bad(data)
    assert err.frame_id is None


ID = 5


@pytest.mark.parametrize(
    "frame",
    [
        {"id": ID},  # no type
        {"type": "shout", "id": ID},
        {"type": None, "id": ID},
        {"type": 1, "id": ID},
        {"type": "join", "id": ID},  # missing room
        {"type": "leave", "id": ID},
        {"type": "publish", "id": ID, "text": "x"},
        {"type": "history", "id": ID},
        {"type": "presence", "id": ID},
        {"type": "typing", "id": ID},
        {"type": "join", "id": ID, "room": ""},
        {"type": "join", "id": ID, "room": "-a"},
        {"type": "join", "id": ID, "room": "_a"},
        {"type": "join", "id": ID, "room": "a b"},
        {"type": "join", "id": ID, "room": "a/b"},
        {"type": "join", "id": ID, "room": "a{b}"},
        {"type": "join", "id": ID, "room": "é"},
        {"type": "join", "id": ID, "room": "a" * 65},
        {"type": "join", "id": ID, "room": "abc\n"},
        {"type": "join", "id": ID, "room": "\nabc"},
        {"type": "join", "id": ID, "room": 5},
        {"type": "join", "id": ID, "room": ["a"]},
        {"type": "publish", "id": ID, "room": "a", "text": ""},
        {"type": "publish", "id": ID, "room": "a"},
        {"type": "publish", "id": ID, "room": "a", "text": 5},
        {"type": "publish", "id": ID, "room": "a", "text": "x", "client_msg_id": "c" * 65},
        {"type": "publish", "id": ID, "room": "a", "text": "x", "client_msg_id": ""},
        {"type": "publish", "id": ID, "room": "a", "text": "x", "client_msg_id": 5},
        {"type": "join", "id": ID, "room": "a", "history": 0},
        {"type": "join", "id": ID, "room": "a", "history": 101},
        {"type": "join", "id": ID, "room": "a", "history": -1},
        {"type": "join", "id": ID, "room": "a", "history": 1.5},
        {"type": "join", "id": ID, "room": "a", "history": "5"},
        {"type": "join", "id": ID, "room": "a", "since": {"offset": -1, "epoch": "e"}},
        {"type": "join", "id": ID, "room": "a", "since": {"offset": 1}},
        {"type": "join", "id": ID, "room": "a", "since": {"epoch": "e"}},
        {"type": "join", "id": ID, "room": "a", "since": 3},
        {"type": "history", "id": ID, "room": "a", "limit": 0},
        {"type": "history", "id": ID, "room": "a", "limit": 101},
        {"type": "history", "id": ID, "room": "a", "before": 0},
        {"type": "history", "id": ID, "room": "a", "before": -5},
        {"type": "history", "id": ID, "room": "a", "before": "1"},
    ],
)
def test_bad_frame_carries_its_id(frame: dict[str, Any]) -> None:
    err = bad(json.dumps(frame))
    assert err.frame_id == ID
    assert err.message  # something a person can read


@pytest.mark.parametrize("frame_id", ["abc", 0, -3, 2**40, ""])
def test_usable_ids_of_any_kind_are_carried(frame_id: str | int) -> None:
    err = bad(json.dumps({"type": "shout", "id": frame_id}))
    assert err.frame_id == frame_id


@pytest.mark.parametrize("frame_id", [True, False, 1.5, [1], {"a": 1}])
def test_unusable_id_is_itself_bad_and_not_carried(frame_id: Any) -> None:
    err = bad(json.dumps({"type": "ping", "id": frame_id}))
    assert err.frame_id is None
    err = bad(json.dumps({"type": "shout", "id": frame_id}))
    assert err.frame_id is None


def test_id_null_is_no_id() -> None:
    assert decode({"type": "ping", "id": None}) == frames.Ping()
    assert bad(json.dumps({"type": "shout", "id": None})).frame_id is None


# --- property: nothing but a frame or ProtocolError(bad_request) ---------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["id", "room", "text", "since", "history", "before", "limit", "client_msg_id", "offset", "epoch", "type"]
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["lobby", "a" * 64, "a" * 65, "", "-x", "x\n"]),
    st.integers(min_value=-2, max_value=102),
    st.fixed_dictionaries({"offset": st.integers(-1, 10), "epoch": st.text(max_size=8)}),
)
typed_frames = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.sampled_from(CLIENT_TYPES) | st.text(max_size=10),
    st.dictionaries(field_names, field_values, max_size=6),
)


def check_decode(data: str | bytes) -> None:
    try:
        frame = codec.decode_client_frame(data)
    except ProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
        assert exc.frame_id is None or (isinstance(exc.frame_id, (str, int)) and not isinstance(exc.frame_id, bool))
        return
    assert isinstance(frame, CLIENT_CLASSES)
    if isinstance(frame, (frames.Join, frames.Leave, frames.Publish, frames.History, frames.Presence, frames.Typing)):
        assert frame.room and len(frame.room) <= 64 and "\n" not in frame.room


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_property_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@FAST
@given(st.text(max_size=300))
def test_property_arbitrary_text(data: str) -> None:
    check_decode(data)
    check_decode(data.encode("utf-8", "surrogatepass"))


@FAST
@given(json_values)
def test_property_arbitrary_json(value: Any) -> None:
    check_decode(json.dumps(value))


@FAST
@given(typed_frames)
def test_property_frames_with_a_real_type(value: dict[str, Any]) -> None:
    data = json.dumps(value)
    check_decode(data)
    check_decode(data.encode())


# --- encoding server frames --------------------------------------------------------------------


def roundtrip(frame: msgspec.Struct) -> dict[str, Any]:
    text = codec.encode(frame)
    assert isinstance(text, str)
    return json.loads(text)


ALICE = frames.User(id="alice", name="Alice")


def test_joined_always_carries_recovered() -> None:
    joined = frames.Joined(
        room="a",
        offset=0,
        epoch="e1",
        recovered=None,
        messages=[],
        presence=[frames.Member(ALICE, 2)],
        presence_count=7,
        last_read=0,
        unread=0,
    )
    assert roundtrip(joined) == {
        "type": "joined",
        "room": "a",
        "offset": 0,
        "epoch": "e1",
        "recovered": None,
        "messages": [],
        "presence": [{"user": {"id": "alice", "name": "Alice"}, "connections": 2}],
        "presence_count": 7,
        "last_read": 0,  # always on the wire, 0 included
        "unread": 0,
    }
    message = b'{"type":"message","room":"a","offset":3}'
    joined = frames.Joined(
        id="j",
        room="a",
        offset=3,
        epoch="e1",
        recovered=True,
        messages=[msgspec.Raw(message)],
        presence=[],
        presence_count=0,
        last_read=2,
        unread=1,
    )
    out = roundtrip(joined)
    assert out["id"] == "j" and out["recovered"] is True
    assert out["messages"] == [json.loads(message)]
    joined = frames.Joined(
        room="a", offset=0, epoch="e", recovered=False, messages=[], presence=[], presence_count=0, last_read=0, unread=0
    )
    assert roundtrip(joined)["recovered"] is False


def test_error_omits_id_when_none() -> None:
    out = roundtrip(frames.Error(code="bad_request", message="nope"))
    assert out == {"type": "error", "code": "bad_request", "message": "nope"}
    out = roundtrip(frames.Error(id=0, code="rate_limited", message="slow", retry_after=250))
    assert out == {"type": "error", "id": 0, "code": "rate_limited", "message": "slow", "retry_after": 250}


def test_encode_error_from_protocol_error() -> None:
    out = json.loads(codec.encode_error(ProtocolError(ErrorCode.NOT_JOINED, "join first", "p1")))
    assert out == {"type": "error", "id": "p1", "code": "not_joined", "message": "join first"}
    out = json.loads(codec.encode_error(ProtocolError(ErrorCode.BAD_REQUEST, "bad")))
    assert "id" not in out and out["code"] == "bad_request"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (frames.Ack(id=1, room="a", offset=4, epoch="e"), {"type": "ack", "id": 1, "room": "a", "offset": 4, "epoch": "e"}),
        (frames.Left(room="a"), {"type": "left", "room": "a"}),
        (frames.Pong(id="x"), {"type": "pong", "id": "x"}),
        (frames.Pong(), {"type": "pong"}),
        (
            frames.Welcome(session="s1", user=ALICE, node="gw1", protocol=1, exp=None),
            {
                "type": "welcome",
                "session": "s1",
                "user": {"id": "alice", "name": "Alice"},
                "node": "gw1",
                "protocol": 1,
                "exp": None,
            },
        ),
        (
            frames.PresenceList(room="a", members=[frames.Member(ALICE, 1)], count=250),
            {
                "type": "presence",
                "room": "a",
                "members": [{"user": {"id": "alice", "name": "Alice"}, "connections": 1}],
                "count": 250,
            },
        ),
        (frames.HistoryPage(room="a", epoch="e", messages=[]), {"type": "history", "room": "a", "epoch": "e", "messages": []}),
        (
            frames.PresenceJoin(room="a", user=ALICE, count=2),
            {"type": "presence_join", "room": "a", "user": {"id": "alice", "name": "Alice"}, "count": 2},
        ),
        (
            frames.PresenceLeave(room="a", user=ALICE, count=1),
            {"type": "presence_leave", "room": "a", "user": {"id": "alice", "name": "Alice"}, "count": 1},
        ),
        (frames.PresenceCount(room="a", count=201), {"type": "presence_count", "room": "a", "count": 201}),
        (frames.TypingNotice(room="a", user=ALICE), {"type": "typing", "room": "a", "user": {"id": "alice", "name": "Alice"}}),
        (frames.Reset(room="a", epoch="e2"), {"type": "reset", "room": "a", "epoch": "e2", "offset": 0}),
    ],
)
def test_server_frames_encode(frame: msgspec.Struct, expected: dict[str, Any]) -> None:
    assert roundtrip(frame) == expected
    assert msgspec.json.decode(codec.encode(frame), type=type(frame)) == frame  # and back


def test_message_head_and_tail_make_the_message_frame() -> None:
    """The publish script splices offset, epoch and msg_id between head and
    tail; the result must be exactly a ``message`` frame."""
    body = frames.MessageBody(user=ALICE, text='say "hi"\n', ts=1_700_000_000_123)
    raw = codec.message_frame("room:1", 7, "ep", body)
    assert codec.message_position(7, "ep") == b'7,"epoch":"ep","msg_id":"ep-7"'
    assert raw == codec.message_head("room:1") + codec.message_position(7, "ep") + codec.message_tail(body)
    message = msgspec.json.decode(raw, type=frames.Message)
    assert message == frames.Message(
        room="room:1", offset=7, epoch="ep", msg_id="ep-7", user=ALICE, text='say "hi"\n', ts=1_700_000_000_123
    )
    assert json.loads(raw)["type"] == "message" and json.loads(raw)["kind"] == "message"
    assert b'"msg_id":"ep-7","kind":"message","user":' in raw  # kind first, ts last: message_ts reads it


def test_change_entries_carry_kind_target_and_emoji() -> None:
    react = frames.MessageBody(user=ALICE, text="", ts=5, kind="react", target=3, emoji="👍")
    raw = codec.message_frame("r", 9, "ep", react)
    assert json.loads(raw) == {
        "type": "message", "room": "r", "offset": 9, "epoch": "ep", "msg_id": "ep-9", "kind": "react",
        "target": 3, "emoji": "👍", "user": {"id": "alice", "name": "Alice"}, "text": "", "ts": 5,
    }
    edit = frames.MessageBody(user=ALICE, text="new", ts=6, kind="edit", target=3)
    assert "emoji" not in json.loads(codec.message_frame("r", 10, "ep", edit))
    assert codec.message_ts(codec.message_frame("r", 10, "ep", edit).decode()) == 6


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"react","room":"r","target":1,"emoji":""}',
        '{"type":"react","room":"r","target":1,"emoji":"a b"}',
        '{"type":"react","room":"r","target":1,"emoji":"\\u0000"}',
        '{"type":"react","room":"r","target":1,"emoji":"12345678901234567"}',
        '{"type":"react","room":"r","target":0,"emoji":"x"}',
        '{"type":"edit","room":"r","target":1,"text":""}',
        '{"type":"delete","room":"r"}',
        '{"type":"read","room":"r","offset":-1}',
        '{"type":"history","room":"r","view":"newest"}',
    ],
)
def test_bad_change_frames_are_bad_requests(frame: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        codec.decode_client_frame(frame)
    assert caught.value.code == ErrorCode.BAD_REQUEST


def test_change_frames_decode() -> None:
    frame = codec.decode_client_frame('{"type":"react","room":"dm:a+b","target":2,"emoji":"🇫🇷","id":1}')
    assert frame == frames.React(id=1, room="dm:a+b", target=2, emoji="🇫🇷")
    assert codec.decode_client_frame('{"type":"history","room":"r","view":"latest"}') == frames.History(
        room="r", view="latest"
    )


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=1, max_size=50), name=st.text(max_size=20), ts=st.integers(0, 2**53))
def test_message_ts_reads_the_ts_of_any_message_frame(text: str, name: str, ts: int) -> None:
    body = frames.MessageBody(user=frames.User("u", name), text=text, ts=ts)
    assert codec.message_ts(codec.message_frame("r", 1, "ep", body).decode()) == ts


@pytest.mark.parametrize("frame", ["", "{}", '{"type":"reset"}', '{"ts":"12"}', '{"x":1,"xts":5}', "12}"])
def test_message_ts_of_something_else_is_none(frame: str) -> None:
    assert codec.message_ts(frame) is None
