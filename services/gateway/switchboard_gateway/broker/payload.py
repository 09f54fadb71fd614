"""The pub/sub payloads the Lua scripts publish, decoded for the node.

``m<offset> <epoch> <ts> <frame>``: a stored message (publish.lua);
``e<frame>``: an ephemeral frame (typing, presence_join/leave);
``c<count>``: a room's user count, above PRESENCE_EVENTS_MAX (presence scripts);
``k<command>``: a user control command, on the control channel only
(``switchboard.backplane.control``)."""

from __future__ import annotations

from switchboard.backplane.control import CONTROL_ROOM
from switchboard_gateway.broker.base import BrokerEvents


def dispatch(events: BrokerEvents, room: str, data: bytes) -> None:
    if data[:1] == b"m":
        offset, epoch, ts, frame = data[1:].split(b" ", 3)
        events.on_message(room, int(offset), epoch.decode(), int(ts), frame.decode())
    elif data[:1] == b"e":
        events.on_ephemeral(room, data[1:].decode())
    elif data[:1] == b"c":
        events.on_presence_count(room, int(data[1:]))
    elif data[:1] == b"k" and room == CONTROL_ROOM:
        events.on_control(data[1:])
