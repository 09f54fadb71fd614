"""The fan-out fast path (switchboard_gateway.wire) pinned against the
uvicorn and websockets internals it relies on.

If an upgrade renames an attribute, changes the protocol class, or changes
what uvicorn's ``send`` puts on the wire, these fail loudly here instead of
the gateway writing corrupt frames: the attributes and their types, the
class the gateway configures, and, on a real uvicorn server over loopback,
byte-identical frames through ``send`` and through ``wire.write`` (payloads
of 0..125, 126..65535 and > 65535 bytes), plus every fall-back condition.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from switchboard_gateway import wire
from switchboard_gateway.keepalive import GatewayWebSocketProtocol
from switchboard_gateway.lifecycle import make_config
from switchboard_gateway.outbound import Outbound
from switchboard_gateway.settings import Settings

from live_uvicorn import RawClient, uvicorn_server, ws_class  # noqa: F401  (ws_class is a fixture)

SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 300_000]


def payload(n: int) -> bytes:
    """`n` bytes of valid UTF-8 with multi-byte characters."""
    text = "é" * (n // 2) + "a" * (n % 2)
    data = text.encode()
    assert len(data) == n
    return data


@pytest.mark.parametrize("n", SIZES)
def test_text_frame_is_what_websockets_serialises(n: int) -> None:
    data = payload(n)
    assert wire.text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


def send_text(text: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": text}


async def test_uvicorn_internals_the_fast_path_reads_are_there(ws_class: type) -> None:
    async with uvicorn_server(ws_class) as (port, accepted):
        client = await RawClient.connect(port)
        conn = await accepted.get()
        protocol = conn.send.__self__
        assert type(protocol) is ws_class
        assert type(protocol) in wire.SUPPORTED
        for name, kind in [("close_sent", bool), ("disconnected", bool), ("handshake_complete", bool),
                           ("conn", ServerProtocol)]:
            assert isinstance(getattr(protocol, name), kind), name
        assert protocol.writable.is_set() is True  # an asyncio.Event, or lean.Flag
        assert protocol.handshake_complete and not protocol.close_sent and not protocol.disconnected
        assert protocol.conn.state is State.OPEN
        assert protocol.conn.extensions == []
        assert callable(protocol.transport.write)
        assert wire.writer_for(conn.send) is protocol
        conn.done.set()
        client.close()


def test_the_gateway_configures_a_supported_protocol() -> None:
    settings = Settings.from_env({"REDIS_URL": "memory://", "JWT_SECRET": "x" * 32})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = make_config(app, settings)
    config.load()
    assert config.ws_protocol_class is GatewayWebSocketProtocol
    assert issubclass(GatewayWebSocketProtocol, WebSocketsSansIOProtocol)
    # It overrides the keepalive decision only, not what `send` writes.
    assert GatewayWebSocketProtocol.send is WebSocketsSansIOProtocol.send
    assert config.ws_protocol_class in wire.SUPPORTED
    assert config.ws_per_message_deflate is False


async def test_frames_are_byte_identical_through_send_and_the_fast_path(ws_class: type) -> None:
    async with uvicorn_server(ws_class) as (port, accepted):
        client = await RawClient.connect(port)
        conn = await accepted.get()
        protocol = wire.writer_for(conn.send)
        assert protocol is not None
        for n in SIZES:
            data = payload(n)
            await conn.send(send_text(data.decode()))
            assert wire.write(protocol, wire.text_frame(data))
            through_send, through_wire = await client.frame(), await client.frame()
            assert through_wire == through_send, n
            assert through_send == Frame(Opcode.TEXT, data).serialize(mask=False)
        conn.done.set()
        client.close()


async def test_outbound_uses_the_fast_path_and_falls_back_in_order(ws_class: type) -> None:
    async with uvicorn_server(ws_class) as (port, accepted):
        client = await RawClient.connect(port)
        conn = await accepted.get()
        overflowed: list[bool] = []
        out = Outbound(conn.send, lambda: overflowed.append(True), 100, 1 << 20, fast_path=True)
        assert out.fast_path
        protocol = conn.send.__self__
        writes: list[bytes] = []
        real_write = protocol.transport.write
        protocol.transport.write = lambda data: (writes.append(bytes(data)), real_write(data))[1]
        try:
            # Writable: the prebuilt frame itself is written, no coroutine.
            frame = wire.text_frame(b"one")
            out.send(send_text("one"), frame)
            assert writes == [frame] and not out.backed_up

            # The transport says "stop" (above its high-water mark): uvicorn's
            # send would suspend, so does Outbound; later frames wait in the
            # outbox, in order, even once the transport is writable again.
            protocol.pause_writing()
            assert not wire.write(protocol, frame)
            out.send(send_text("two"), wire.text_frame(b"two"))
            assert out.backed_up
            protocol.resume_writing()
            out.send(send_text("three"), wire.text_frame(b"three"))
            assert await out.flush(5)
            assert not out.backed_up
            out.send(send_text("four"), wire.text_frame(b"four"))
            got = [await client.frame() for _ in range(4)]
            assert got == [wire.text_frame(t) for t in (b"one", b"two", b"three", b"four")]
            assert writes[-1] == wire.text_frame(b"four")  # the fast path again
            assert not overflowed

            # After a close: never written.
            await conn.send({"type": "websocket.close", "code": 1000})
            assert protocol.close_sent
            assert not wire.write(protocol, frame)
        finally:
            protocol.transport.write = real_write
        conn.done.set()
        client.close()


async def test_no_fast_path_when_the_peer_is_gone(ws_class: type) -> None:
    async with uvicorn_server(ws_class) as (port, accepted):
        client = await RawClient.connect(port)
        conn = await accepted.get()
        protocol = wire.writer_for(conn.send)
        assert protocol is not None
        client.writer.transport.abort()
        assert (await conn.receive())["type"] == "websocket.disconnect"
        assert protocol.disconnected
        assert not wire.write(protocol, wire.text_frame(b"late"))
        conn.done.set()


async def test_no_fast_path_with_compression(ws_class: type) -> None:
    async with uvicorn_server(ws_class, ws_per_message_deflate=True) as (port, accepted):
        client = await RawClient.connect(port, extensions="permessage-deflate")
        conn = await accepted.get()
        assert conn.send.__self__.conn.extensions  # negotiated
        assert wire.writer_for(conn.send) is None
        assert not Outbound(conn.send, lambda: None, 10, 1000, fast_path=True).fast_path
        conn.done.set()
        client.close()


def test_no_fast_path_for_other_servers_or_when_off() -> None:
    async def plain_send(message: dict[str, Any]) -> None:
        pass

    assert wire.writer_for(plain_send) is None
    assert not Outbound(plain_send, lambda: None, 10, 1000, fast_path=True).fast_path
