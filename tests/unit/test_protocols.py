"""The server-layer guard's protocols on a fake transport: what they write,
when they close, what they count. (Real sockets: tests/reliability/
test_server_guard.py.)"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from switchboard_gateway.metrics import Metrics
from switchboard_gateway.protocols import MAX_PINGS_PER_S, ServerGuard, protocol_classes
from switchboard_gateway.settings import Settings

SECRET = "protocols-test-secret-0123456789abcdef"


class FakeTransport:
    def __init__(self, peer: str = "198.51.100.7") -> None:
        self.peer = peer
        self.written = bytearray()
        self.buffered = 0  # what get_write_buffer_size reports
        self.closed = self.aborted = self.eof = False
        self.protocol: Any = None
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (self.peer, 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def make(**env: str) -> tuple[Any, Any, ServerGuard, uvicorn.Config]:
    settings = Settings.from_env({"JWT_SECRET": SECRET, "REDIS_URL": "memory://", **env})
    guard = ServerGuard(settings, Metrics())
    http_class, ws_class = protocol_classes(guard)
    config = uvicorn.Config(app, http=http_class, ws=ws_class, lifespan="off", log_level="critical")
    config.load()
    return http_class, ws_class, guard, config


def open_http(http_class: Any, config: uvicorn.Config, peer: str = "198.51.100.7") -> tuple[Any, FakeTransport]:
    protocol = http_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport(peer)
    protocol.connection_made(transport)
    return protocol, transport


def upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def ping(payload: bytes) -> bytes:
    mask = b"\x00\x00\x00\x00"
    return bytes([0x89, 0x80 | len(payload)]) + mask + payload


async def test_a_big_head_is_refused_as_it_arrives() -> None:
    http_class, _, guard, config = make(MAX_HEADER_BYTES="4096")
    protocol, transport = open_http(http_class, config)
    protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(3):
        protocol.data_received(b"a" * 2000)
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert transport.eof and not transport.closed  # lingering: input dropped, then closed
    protocol.data_received(b"a" * 100_000)  # dropped, not parsed
    assert transport.written.count(b"HTTP/1.1") == 1


async def test_a_long_request_line_is_414() -> None:
    http_class, _, _, config = make()
    protocol, transport = open_http(http_class, config)
    protocol.data_received(b"GET /" + b"a" * 9000)
    assert transport.written.startswith(b"HTTP/1.1 414 ")


async def test_sockets_are_admitted_per_peer_and_in_total() -> None:
    http_class, _, guard, config = make(MAX_CONNECTIONS_PER_IP="2", MAX_CONNECTIONS="3", FORWARDED_ALLOW_IPS="")
    opened = [open_http(http_class, config) for _ in range(2)]
    refused, transport = open_http(http_class, config)
    assert transport.written.startswith(b"HTTP/1.1 503 ") and transport.closed
    other, other_transport = open_http(http_class, config, peer="198.51.100.8")
    assert not other_transport.written and guard.total == 3
    full, full_transport = open_http(http_class, config, peer="198.51.100.9")
    assert full_transport.written.startswith(b"HTTP/1.1 503 ")
    opened[0][0].connection_lost(None)
    refused.connection_lost(None)  # a refused socket was never counted
    assert guard.total == 2 and guard.http_per_peer.counts == {"198.51.100.7": 1, "198.51.100.8": 1}


async def test_trusted_proxies_are_not_limited_per_peer() -> None:
    http_class, _, guard, config = make(MAX_CONNECTIONS_PER_IP="1", FORWARDED_ALLOW_IPS="10.0.0.0/8")
    for _ in range(5):
        _, transport = open_http(http_class, config, peer="10.1.2.3")
        assert not transport.written
    assert guard.total == 5 and guard.http_per_peer.counts == {}


async def upgraded(ws_env: dict[str, str] | None = None) -> tuple[Any, FakeTransport, ServerGuard]:
    http_class, _, guard, config = make(**(ws_env or {}))
    protocol, transport = open_http(http_class, config)
    protocol.data_received(upgrade_request())
    ws = transport.protocol
    assert ws is not None
    for _ in range(50):  # the app's accept runs as a task
        await asyncio.sleep(0)
        if b"101" in transport.written:
            break
    assert transport.written.startswith(b"HTTP/1.1 101 ")
    transport.written.clear()
    return ws, transport, guard


async def test_an_upgraded_socket_stays_counted_until_it_ends() -> None:
    ws, transport, guard = await upgraded({"FORWARDED_ALLOW_IPS": ""})
    assert guard.total == 1 and guard.http_per_peer.counts == {}  # counted per address as a WebSocket instead
    ws.connection_lost(None)
    assert guard.total == 0


async def test_pings_are_answered_while_the_peer_reads() -> None:
    ws, transport, _ = await upgraded()
    ws.data_received(ping(b"a") + ping(b"b"))
    assert transport.written == bytes([0x8A, 1]) + b"a" + bytes([0x8A, 1]) + b"b"


async def test_no_pong_is_queued_while_the_peer_does_not_read() -> None:
    ws, transport, _ = await upgraded()
    ws.pause_writing()  # the transport is over its high-water mark
    ws.data_received(ping(b"a") * 5)
    assert transport.written == b"" and not transport.is_closing()
    ws.resume_writing()
    ws.data_received(ping(b"b"))
    assert transport.written == bytes([0x8A, 1]) + b"b"


async def test_a_ping_flood_fails_the_connection_with_1008() -> None:
    ws, transport, _ = await upgraded()
    ws.data_received(ping(b"p") * (MAX_PINGS_PER_S + 5))
    close_frame = bytes([0x88])
    assert close_frame in transport.written and b"too many pings" in transport.written
    assert transport.closed
    # The pongs of one read go out together; nothing after the close frame.
    assert transport.written.rindex(bytes([0x8A, 1])) < transport.written.index(close_frame)
    ws.data_received(ping(b"q"))
    assert b"q" not in transport.written


async def test_a_write_buffer_over_the_cap_aborts() -> None:
    ws, transport, _ = await upgraded({"SEND_QUEUE_MAX_BYTES": "1000"})
    transport.buffered = 1001
    ws.data_received(ping(b"x"))
    assert transport.aborted


@pytest.mark.parametrize("timeout", ["1"])
async def test_the_sweep_times_out_an_idle_socket(timeout: str) -> None:
    http_class, _, guard, config = make(HTTP_REQUEST_TIMEOUT=timeout)
    protocol, transport = open_http(http_class, config)
    protocol.deadline = asyncio.get_running_loop().time() - 0.01  # as if a second had passed
    guard._sweep(asyncio.get_running_loop())
    assert transport.written.startswith(b"HTTP/1.1 408 ") and transport.eof
    protocol.deadline = asyncio.get_running_loop().time() - 0.01  # the linger is over too
    guard._sweep(asyncio.get_running_loop())
    assert transport.closed


async def test_the_sweep_aborts_a_closed_socket_that_lingers() -> None:
    http_class, _, guard, config = make()
    protocol, transport = open_http(http_class, config)
    transport.close()
    loop = asyncio.get_running_loop()
    guard._sweep(loop)
    assert not transport.aborted
    protocol.closing_since -= 5.0
    guard._sweep(loop)
    assert transport.aborted


async def test_a_handshake_websockets_refuses_is_answered_not_left_hanging() -> None:
    """websockets queued its 414/431 (or nothing, for garbage) but uvicorn
    only sends responses to requests it got: the socket hung."""
    _, ws_class, guard, config = make()
    for request, status in (
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 414 "),
        (b"GET /ws HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(200)) + b"\r\n", b"HTTP/1.1 431 "),
        (b"NOT HTTP AT ALL\r\n\r\n", b""),
    ):
        ws = ws_class(config=config, server_state=ServerState(), app_state={})
        transport = FakeTransport()
        ws.connection_made(transport)
        ws.data_received(request)
        assert transport.written.startswith(status) and transport.closed, (request[:20], transport.written[:40])
