"""A real uvicorn server inside the test's event loop, and a raw WebSocket
client that sees every frame's bytes: for the tests that pin the uvicorn
internals the gateway relies on (wire.py, keepalive.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from switchboard_gateway.keepalive import GatewayWebSocketProtocol


class Accepted:
    def __init__(self, send: Any, receive: Any) -> None:
        self.send = send
        self.receive = receive
        self.done = asyncio.Event()


@pytest.fixture(params=[WebSocketsSansIOProtocol, GatewayWebSocketProtocol], ids=["uvicorn", "gateway"])
def ws_class(request: pytest.FixtureRequest) -> type:
    """uvicorn's websockets-sansio protocol, and the gateway's subclass of it."""
    return request.param  # type: ignore[no-any-return]


@asynccontextmanager
async def uvicorn_server(ws_class: type, **config: Any) -> AsyncIterator[tuple[int, asyncio.Queue[Accepted]]]:
    """uvicorn (websockets-sansio, the gateway's choice) on a pre-bound
    loopback socket: connections queue in its backlog until it accepts, so
    nothing waits for "started". The app accepts and hands (send, receive)
    to the test, which drives the connection."""
    accepted: asyncio.Queue[Accepted] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        conn = Accepted(send, receive)
        await accepted.put(conn)
        await conn.done.wait()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"ws_per_message_deflate": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, ws=ws_class, lifespan="off", log_level="warning",
                                           **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port, accepted
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


class RawClient:
    """A WebSocket client on a plain stream that returns each frame's raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, extensions: str | None = None, rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> bytes:
        async with asyncio.timeout(10):
            head = await self.reader.readexactly(2)
            length = head[1] & 0x7F
            extra = b""
            if length == 126:
                extra = await self.reader.readexactly(2)
                length = struct.unpack("!H", extra)[0]
            elif length == 127:
                extra = await self.reader.readexactly(8)
                length = struct.unpack("!Q", extra)[0]
            assert not head[1] & 0x80, "a server frame is never masked"
            return head + extra + await self.reader.readexactly(length)

    def send(self, opcode: int, payload: bytes) -> None:
        """A masked frame (client to server), short payloads only."""
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def close(self) -> None:
        self.writer.close()


