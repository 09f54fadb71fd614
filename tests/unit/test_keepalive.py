"""The pong deadline (switchboard_gateway.keepalive) on a real uvicorn server
over loopback, driven step by step: the ping and the deadline are called by
the test (automatic pings are 10 minutes away), so nothing depends on timing.

A peer that has everything and does not answer is closed with 1011, as
uvicorn does; a peer whose pong is stuck behind frames the gateway has not
read yet, or behind frames it is still reading, is given more time; a peer
that stopped reading is closed with 1011 after one more deadline.
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from switchboard_gateway import wire
from switchboard_gateway.keepalive import GatewayWebSocketProtocol, send_progress

from live_uvicorn import RawClient, uvicorn_server

PING, PONG, CLOSE, TEXT = 0x9, 0xA, 0x8, 0x1
QUIET = {"ws_ping_interval": 600.0, "ws_ping_timeout": 600.0}  # the test calls the keepalive itself


async def until(check, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Let the loop run (server and client share it) until `check()`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def ping(protocol: GatewayWebSocketProtocol) -> bytes:
    """Send a keepalive ping now, as the ping timer would; its payload."""
    if protocol.ping_timer is not None:
        protocol.ping_timer.cancel()
    protocol.send_keepalive_ping()
    assert protocol.pending_ping_payload is not None
    return protocol.pending_ping_payload


def deadline(protocol: GatewayWebSocketProtocol) -> bool:
    """The pong deadline passes now; True if the peer was given more time."""
    assert protocol.pong_timer is not None
    protocol.pong_timer.cancel()
    protocol.keepalive_timeout()
    if protocol.close_sent:
        return False
    assert protocol.pong_timer is not None and protocol.pending_ping_payload is not None
    return True


async def frames_until(client: RawClient, opcode: int) -> tuple[int, bytes]:
    """Read frames until one with `opcode`; (frames read before it, its payload)."""
    count = 0
    while True:
        raw = await client.frame()
        head = raw[1] & 0x7F
        start = 2 if head < 126 else 4 if head == 126 else 10
        if raw[0] & 0x0F == opcode:
            return count, raw[start:]
        count += 1


@pytest.fixture
async def connection():  # type: ignore[no-untyped-def]
    async with uvicorn_server(GatewayWebSocketProtocol, **QUIET) as (port, accepted):
        yield port, accepted


async def test_a_peer_with_everything_that_does_not_answer_gets_1011(connection) -> None:  # type: ignore[no-untyped-def]
    port, accepted = connection
    client = await RawClient.connect(port)
    conn = await accepted.get()
    protocol = conn.send.__self__
    ping(protocol)
    await until(lambda: send_progress(protocol.transport) is not None
                and send_progress(protocol.transport)[1] == 0, "the ping acknowledged")
    assert not deadline(protocol)
    await frames_until(client, PING)
    _, close = await frames_until(client, CLOSE)
    assert struct.unpack("!H", close[:2])[0] == 1011
    conn.done.set()
    client.close()


async def test_a_pong_behind_unread_frames_is_waited_for(connection) -> None:  # type: ignore[no-untyped-def]
    port, accepted = connection
    client = await RawClient.connect(port)
    conn = await accepted.get()
    protocol = conn.send.__self__
    # The peer sends a frame the application has not read yet: uvicorn stops
    # reading the socket until it does.
    client.send(TEXT, b"a publish the gateway is still working on")
    await until(lambda: protocol.read_paused, "uvicorn to pause reading")
    payload = ping(protocol)
    await frames_until(client, PING)
    client.send(PONG, payload)  # answered at once, but behind the unread frame
    assert deadline(protocol)  # uvicorn alone: 1011 here
    assert deadline(protocol)  # still not read: still not the peer's fault
    # The application gets to the frame: reading resumes, the pong counts.
    assert (await conn.receive())["text"] == "a publish the gateway is still working on"
    await until(lambda: protocol.pending_ping_payload is None, "the pong")
    assert not protocol.close_sent and protocol.pong_timer is None
    assert protocol._behind is None
    conn.done.set()
    client.close()


async def _fill(protocol: GatewayWebSocketProtocol, frames: int, size: int) -> int:
    """Queue `frames` text frames of `size` bytes for the peer; their bytes."""
    frame = wire.text_frame(b"x" * size)
    for _ in range(frames):
        protocol.transport.write(frame)
    return frames * len(frame)


async def test_a_reader_behind_but_reading_is_given_time_then_a_silent_one_1011(connection) -> None:  # type: ignore[no-untyped-def]
    port, accepted = connection
    client = await RawClient.connect(port, rcvbuf=4096)
    conn = await accepted.get()
    protocol = conn.send.__self__
    await _fill(protocol, 100, 60_000)  # ~6 MB: more than the kernel buffers on both sides hold
    ping(protocol)
    progress = send_progress(protocol.transport)
    assert progress is not None and progress[1] > 0, progress

    assert deadline(protocol)  # frames queued ahead of the ping: wait and see
    acked = protocol._behind[0]
    # The reader reads a part: the peer's TCP acknowledges more of our bytes.
    await client.reader.readexactly(1_000_000)
    await until(lambda: send_progress(protocol.transport)[0] > acked, "the peer to acknowledge more")
    assert deadline(protocol)  # behind, but reading: more time
    # It reads everything up to the ping (never answering it): the queue empties.
    before, _ = await frames_until(client, PING)
    assert before > 0
    await until(lambda: send_progress(protocol.transport)[1] == 0, "the queue to empty")
    assert deadline(protocol)  # the ping reached it only now: one more timeout
    assert not deadline(protocol)  # and then: it had the ping for a whole timeout
    _, close = await frames_until(client, CLOSE)
    assert struct.unpack("!H", close[:2])[0] == 1011
    conn.done.set()
    client.close()


async def test_a_reader_that_stopped_reading_gets_1011_after_one_more_deadline(connection) -> None:  # type: ignore[no-untyped-def]
    port, accepted = connection
    client = await RawClient.connect(port, rcvbuf=4096)
    conn = await accepted.get()
    protocol = conn.send.__self__
    await _fill(protocol, 100, 60_000)
    ping(protocol)
    assert deadline(protocol)  # frames queued: first look
    assert not deadline(protocol)  # nothing acknowledged for a whole timeout: gone
    assert protocol.close_sent
    conn.done.set()
    client.close()


async def test_the_pong_resets_the_deadline_state(connection) -> None:  # type: ignore[no-untyped-def]
    port, accepted = connection
    client = await RawClient.connect(port, rcvbuf=4096)
    conn = await accepted.get()
    protocol = conn.send.__self__
    total = await _fill(protocol, 20, 60_000)
    payload = ping(protocol)
    assert deadline(protocol) and protocol._behind is not None
    await frames_until(client, PING)
    client.send(PONG, payload)
    await until(lambda: protocol.pending_ping_payload is None, "the pong")
    assert protocol._behind is None and not protocol.close_sent
    assert total > 0
    conn.done.set()
    client.close()
