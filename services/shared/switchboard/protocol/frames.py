"""Every frame of the wire protocol, as msgspec Structs tagged on ``type``.

Client frames are decoded strictly (types and ranges checked by msgspec);
unknown fields are ignored so newer clients keep working. Server frames are
encoded by ``codec``; a chat ``message`` is encoded once per message and its
bytes are reused for every member and for history (``msgspec.Raw``).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Raw, Struct

from switchboard.protocol.names import ROOM_PATTERN

# Integers a browser can hold exactly (Number.MAX_SAFE_INTEGER); larger ones
# are refused as bad_request before they reach Redis (whose Lua would print
# them as 1e+14).
MAX_SAFE_INTEGER = 2**53 - 1
SafeInt = Annotated[int, Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
FrameId = str | SafeInt | None
Room = Annotated[str, Meta(pattern=ROOM_PATTERN)]
Offset = Annotated[int, Meta(ge=0, le=MAX_SAFE_INTEGER)]
HistoryCount = Annotated[int, Meta(ge=1, le=100)]
ClientMsgId = Annotated[str, Meta(min_length=1, max_length=64)]
# The upper bound of `text` is MAX_TEXT_CHARS, a setting: checked by the gateway.
Text = Annotated[str, Meta(min_length=1)]


# --- client -> server -------------------------------------------------------


class Since(Struct, forbid_unknown_fields=False):
    offset: Offset
    epoch: str | None  # null: the room had no history when the client last saw it


class _ClientFrame(Struct, tag_field="type", kw_only=True):
    id: FrameId = None


class Join(_ClientFrame, tag="join"):
    room: Room
    since: Since | None = None
    history: HistoryCount | None = None


class Leave(_ClientFrame, tag="leave"):
    room: Room


class Publish(_ClientFrame, tag="publish"):
    room: Room
    text: Text
    client_msg_id: ClientMsgId | None = None


class History(_ClientFrame, tag="history"):
    room: Room
    before: Annotated[int, Meta(ge=1, le=MAX_SAFE_INTEGER)] | None = None
    limit: HistoryCount = 50


class Presence(_ClientFrame, tag="presence"):
    room: Room


class Typing(_ClientFrame, tag="typing"):
    room: Room


class Ping(_ClientFrame, tag="ping"):
    pass


class Refresh(_ClientFrame, tag="refresh"):
    """A new token for the same user: the socket stays open past the old one's expiry."""

    token: Annotated[str, Meta(min_length=1, max_length=8192)]


ClientFrame = Join | Leave | Publish | History | Presence | Typing | Ping | Refresh
ROOM_FRAMES = (Join, Leave, Publish, History, Presence, Typing)


# --- server -> client -------------------------------------------------------


class User(Struct):
    id: str
    name: str


class Member(Struct):
    user: User
    connections: int


class MessageBody(Struct):
    """The part of a ``message`` frame the publisher knows before Redis
    assigns ``offset``, ``epoch`` and ``msg_id`` (see backplane/scripts/publish.lua)."""

    user: User
    text: str
    ts: int


class Message(Struct, tag_field="type", tag="message"):
    room: str
    offset: int
    epoch: str
    msg_id: str
    user: User
    text: str
    ts: int


class _Reply(Struct, tag_field="type", omit_defaults=True, kw_only=True):
    id: FrameId = None


class Welcome(_Reply, tag="welcome"):
    session: str
    user: User
    node: str
    protocol: int
    exp: int | None  # the token's expiry (Unix seconds), null without one: refresh before it


class Joined(_Reply, tag="joined"):
    room: str
    offset: int
    epoch: str | None  # null while the room has no history yet (its first publish creates it)
    recovered: bool | None  # required, so it is always on the wire (null without since)
    messages: list[Raw]
    presence: list[Member]  # at most PRESENCE_LIST_MAX, the joiner among them
    presence_count: int  # distinct users present


class Left(_Reply, tag="left"):
    room: str
    reason: str | None = None  # "removed" (user control API), "forbidden" (a refreshed token's rooms)


class Ack(_Reply, tag="ack"):
    room: str
    offset: int
    epoch: str


class HistoryPage(_Reply, tag="history"):
    room: str
    epoch: str | None  # null while the room has no history yet
    messages: list[Raw]


class PresenceList(_Reply, tag="presence"):
    room: str
    members: list[Member]  # at most PRESENCE_LIST_MAX
    count: int  # distinct users present


class Pong(_Reply, tag="pong"):
    pass


class Refreshed(_Reply, tag="refreshed"):
    exp: int | None  # the new token's expiry (Unix seconds), null when it has none


# presence_join / presence_leave are built by the presence scripts
# (backplane/scripts/presence_prelude.lua); these Structs document and test them.
class PresenceJoin(Struct, tag_field="type", tag="presence_join"):
    room: str
    user: User
    count: int  # users present after the join


class PresenceLeave(Struct, tag_field="type", tag="presence_leave"):
    room: str
    user: User
    count: int  # users present after the leave


class PresenceCount(Struct, tag_field="type", tag="presence_count"):
    """Instead of presence_join/_leave in a room above PRESENCE_EVENTS_MAX
    users: at most once per second while the count changes."""

    room: str
    count: int


class TypingNotice(Struct, tag_field="type", tag="typing"):
    room: str
    user: User


class Reset(Struct, tag_field="type", tag="reset"):
    room: str
    epoch: str
    offset: int = 0


class Error(_Reply, tag="error"):
    code: str
    message: str
    retry_after: int | None = None
