"""Every frame of the wire protocol, as msgspec Structs tagged on ``type``.

Client frames are decoded strictly (types and ranges checked by msgspec);
unknown fields are ignored so newer clients keep working. Server frames are
encoded by ``codec``; a chat ``message`` is encoded once per message and its
bytes are reused for every member and for history (``msgspec.Raw``).
"""

from __future__ import annotations

from typing import Annotated, Literal

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
# The offset of the message an edit, delete or reaction changes (protocol §11).
Target = Annotated[int, Meta(ge=1, le=MAX_SAFE_INTEGER)]
# 1-16 code points, no whitespace and no control characters (so it can
# never be confused with the separators of the backplane's state fields).
Emoji = Annotated[str, Meta(min_length=1, max_length=16, pattern=r"^[^\s\x00-\x1f\x7f]+\Z")]
# What a log entry is (protocol §11): an ordinary message, or a change to one.
EntryKind = Literal["message", "edit", "delete", "react", "unreact"]


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
    # "log": the entries as stored; "latest": the messages with their
    # edits, deletions and reactions applied (protocol §11).
    view: Literal["log", "latest"] = "log"


class Presence(_ClientFrame, tag="presence"):
    room: Room


class Typing(_ClientFrame, tag="typing"):
    room: Room


class Ping(_ClientFrame, tag="ping"):
    pass


class Refresh(_ClientFrame, tag="refresh"):
    """A new token for the same user: the socket stays open past the old one's expiry."""

    token: Annotated[str, Meta(min_length=1, max_length=8192)]


# --- changes to a message and read state (protocol §11) ---


class Edit(_ClientFrame, tag="edit"):
    room: Room
    target: Target
    text: Text
    client_msg_id: ClientMsgId | None = None


class Delete(_ClientFrame, tag="delete"):
    room: Room
    target: Target
    client_msg_id: ClientMsgId | None = None


class React(_ClientFrame, tag="react"):
    room: Room
    target: Target
    emoji: Emoji
    client_msg_id: ClientMsgId | None = None


class Unreact(_ClientFrame, tag="unreact"):
    room: Room
    target: Target
    emoji: Emoji
    client_msg_id: ClientMsgId | None = None


class Read(_ClientFrame, tag="read"):
    room: Room
    offset: Offset


# --- direct rooms: the list of a user's (our addition to protocol §11) ---


class Directs(_ClientFrame, tag="directs"):
    """Ask for the user's direct rooms, the most recently active first."""

    limit: Annotated[int, Meta(ge=1, le=100)] = 20


ClientFrame = (
    Join | Leave | Publish | History | Presence | Typing | Ping | Refresh | Edit | Delete | React | Unreact | Read
    | Directs
)
ROOM_FRAMES = (Join, Leave, Publish, History, Presence, Typing, Edit, Delete, React, Unreact, Read)
# The frames that append a change entry to the room's log.
CHANGE_FRAMES = (Edit, Delete, React, Unreact)


# --- server -> client -------------------------------------------------------


class User(Struct):
    id: str
    name: str


class Member(Struct):
    user: User
    connections: int


class MessageBody(Struct):
    """The part of a ``message`` frame the publisher knows before Redis
    assigns ``offset``, ``epoch`` and ``msg_id`` (see backplane/scripts/publish.lua).
    ``kind``, ``target`` and ``emoji`` say what the log entry is (protocol
    §11); ``codec.message_tail`` puts them first and ``ts`` last."""

    user: User
    text: str
    ts: int
    kind: EntryKind = "message"
    target: int | None = None  # the changed message's offset (every kind but "message")
    emoji: str | None = None  # react / unreact


class Message(Struct, tag_field="type", tag="message"):
    room: str
    offset: int
    epoch: str
    msg_id: str
    user: User
    text: str
    ts: int
    kind: str = "message"
    target: int | None = None
    emoji: str | None = None


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
    # Read state (protocol §11): the highest offset the user has read (0 if
    # never) and how many messages of others after it are not deleted (<= 1000).
    last_read: int
    unread: int
    # A direct room only: the other user's read mark (0 if never), read with
    # last_read, so "seen" survives a reload. Absent in other rooms.
    peer_read: int | None = None


class Left(_Reply, tag="left"):
    room: str
    reason: str | None = None  # "removed" (user control API), "forbidden" (a refreshed token's rooms)


class Ack(_Reply, tag="ack"):
    room: str
    offset: int | None  # null: a repeated react or an unreact without reaction, nothing logged
    epoch: str


class ReactionCount(Struct):
    count: int
    me: bool  # the asking user is among them


class LatestMessage(Struct):
    """One message of the ``latest`` history view: its edits, deletion and
    reactions applied (switchboard/latest.py folds them)."""

    offset: int
    user: User
    text: str  # the latest edit's; "" once deleted
    ts: int  # when it was first posted
    edited: bool
    deleted: bool
    reactions: dict[str, ReactionCount]  # emoji -> count, in the order they were first given


class HistoryPage(_Reply, tag="history"):
    room: str
    epoch: str | None  # null while the room has no history yet
    messages: list[Raw]  # log entries, or encoded LatestMessages (the latest view)


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


class ReadNotice(Struct, tag_field="type", tag="read"):
    """How far a user has read a room (read receipts), to its other members."""

    room: str
    user: User
    offset: int


class DirectRoom(Struct):
    """One direct room of a user: the other user, and when it was last active (ms)."""

    room: str
    user: User
    ts: int


class DirectList(_Reply, tag="directs"):
    """The reply to ``directs``: the user's direct rooms, newest activity first."""

    rooms: list[DirectRoom]


class DirectNotice(Struct, tag_field="type", tag="direct"):
    """A direct room got a message and the user had not got it: `user` is the other one."""

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
