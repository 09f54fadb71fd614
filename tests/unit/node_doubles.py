"""Test doubles for driving a gateway ``Node`` in one process: a recording
ASGI socket and a connection on it (shared by the node unit tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from switchboard_gateway.auth import Principal
from switchboard_gateway.connection import Connection
from switchboard_gateway.node import Node


class Socket:
    """An ASGI ``send`` that records the frames a connection was sent."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.conn: Connection | None = None  # the connection it is the socket of
        self._changed = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.frames.append(json.loads(message["text"]))
        elif message["type"] == "websocket.close":
            self.closed = message["code"]
        self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def offsets(self) -> list[int]:
        return [f["offset"] for f in self.of("message")]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not met within {timeout} s; frames: {self.frames[-5:]!r}") from None


def connect(node: Node, user: str, conn_id: str | None = None) -> Socket:
    """A connection of `user` on `node` (generous limits), registered there."""
    socket = Socket()
    conn = Connection(
        conn_id or f"c-{user}",
        Principal(user, user, None, None),
        socket,
        rate=100,
        burst=100,
        frame_rate=1000,
        frame_burst=1000,
        typing_rate=100,
        typing_burst=100,
        abuse_errors=50,
        queue_max=1000,
        queue_max_bytes=1 << 22,
        on_close=lambda code: None,
    )
    node.add_connection(conn)
    socket.conn = conn
    return socket
