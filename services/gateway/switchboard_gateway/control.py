"""User control (docs/protocol.md "User control"): the commands the HTTP API
publishes on the backplane's control channel, and what each gateway does
when one arrives.

The API stores a ban first (``Broker.ban``), then publishes the command: a
reconnect racing the command is refused by the ban, and a gateway that
missed the command (pub/sub is at most once, e.g. while it reconnects to
Redis) still refuses the banned user's next connection or join. Every
gateway, the one that served the API call included, applies the command to
its own connections when it arrives, well within the 1 s the contract gives.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from switchboard.protocol import codec, frames
from switchboard.protocol.codes import CloseCode
from switchboard_gateway.broker import BrokerUnavailable

if TYPE_CHECKING:
    from switchboard_gateway.connection import Connection
    from switchboard_gateway.node import Node

log = logging.getLogger("switchboard.control")

# A WebSocket close reason is at most 123 bytes of UTF-8.
CLOSE_REASON_MAX_BYTES = 123
DEFAULT_DISCONNECT_REASON = "disconnected by the application"
BANNED_REASON = "banned"


class Disconnect(msgspec.Struct, tag_field="op", tag="disconnect"):
    """Close every connection of `user` with 4003 and `reason`."""

    user: str
    reason: str


class Remove(msgspec.Struct, tag_field="op", tag="remove"):
    """Take `user` out of `room` on every connection (``left``, ``reason: "removed"``)."""

    user: str
    room: str


class Direct(msgspec.Struct, tag_field="op", tag="direct"):
    """Tell `user` that the direct room `room` exists (its other user is
    `peer`): a ``direct`` frame to each connection not in the room.
    Published by the gateway that served the room's publish (directs.py)."""

    user: str
    room: str
    peer: frames.User


Command = Disconnect | Remove | Direct
_decoder = msgspec.json.Decoder(Command)
_OP_OF: dict[type[Command], str] = {Disconnect: "disconnect", Remove: "remove", Direct: "direct"}


def encode(command: Command) -> bytes:
    return codec.encode_bytes(command)


def close_reason(text: str) -> str:
    """`text` cut to what a close frame can carry, on a character boundary."""
    data = text.encode()[:CLOSE_REASON_MAX_BYTES]
    return data.decode("utf-8", "ignore")


class UserControl:
    """Applies control commands to the node's own connections."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def on_command(self, data: bytes) -> None:
        try:
            command = _decoder.decode(data)
        except msgspec.MsgspecError:
            log.warning("ignoring a malformed control command (%d bytes)", len(data))
            return
        connections = self._connections_of(command.user)
        if isinstance(command, Disconnect):
            for conn in connections:
                conn.close_soon(CloseCode.KICKED, close_reason(command.reason))
        elif isinstance(command, Direct):
            notice = codec.encode(frames.DirectNotice(room=command.room, user=command.peer))
            for conn in connections:
                if command.room not in conn.rooms:  # a member has the room already
                    conn.send_text(notice)
        else:
            members = [conn for conn in connections if command.room in conn.rooms]
            if members:
                self.node.supervisor.spawn("remove", self._remove(members, command.room))
        self.node.metrics.control_commands.labels(op=_OP_OF[type(command)]).inc()

    def _connections_of(self, user_id: str) -> list[Connection]:
        # A walk over the node's connections: commands are rare, and a
        # per-user index would cost every connect and disconnect.
        return [conn for conn in self.node.connections if conn.user_id == user_id and not conn.closing]

    async def _remove(self, members: list[Connection], room: str) -> None:
        for conn in members:
            if room not in conn.rooms:
                continue  # left (or was removed) meanwhile
            try:
                await self.node.leave(conn, room)
            except BrokerUnavailable:
                pass  # out of the room locally; its presence entry expires by itself
            finally:
                conn.send_text(codec.encode(frames.Left(room=room, reason="removed")))
