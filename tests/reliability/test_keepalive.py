"""Keepalive detects dead peers, not busy ones (keepalive.py), on a real
gateway process with short ping settings:

- a publisher whose frames wait for the gateway (Redis paused) keeps its
  connection, though its pongs wait behind those frames;
- a reader several seconds behind a burst, but reading, gets every message
  and is not closed, though the pings wait behind the frames queued for it;
- a peer that never answers is still closed with 1011 within
  interval + timeout + a margin.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time

from switchboard.client import Client

from .conftest import RawWebSocket, metric, wait_until

PING_S = 0.5
TIMEOUT_S = 2.0
KEEPALIVE = {"WS_PING_INTERVAL": PING_S, "WS_PING_TIMEOUT": TIMEOUT_S}


class PongingReader(RawWebSocket):
    """Reads at a bounded pace and answers pings, as a busy client would."""

    def pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes((0x8A, 0x80 | len(payload))) + mask + masked)

    def read_messages(self, room: str, count: int, bytes_per_s: float, timeout: float) -> tuple[list[int], int | None]:
        """The offsets of `count` messages of `room`, read no faster than
        `bytes_per_s`; and the close code if the server closed first."""
        offsets: list[int] = []
        started = time.monotonic()
        read = 0
        self.sock.settimeout(timeout)
        while len(offsets) < count:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{len(offsets)} of {count} messages within {timeout} s")
            opcode, payload = self.recv_frame()
            read += len(payload) + 4
            ahead = read / bytes_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            if opcode == 0x9:
                self.pong(payload)
            elif opcode == 0x8:
                return offsets, struct.unpack("!H", payload[:2])[0]
            elif opcode == 0x1:
                frame = json.loads(payload)
                if frame.get("type") == "message" and frame.get("room") == room:
                    offsets.append(frame["offset"])
        return offsets, None


async def test_a_publisher_waiting_for_the_gateway_is_not_cut_off(start_gateway, redis_server, token) -> None:
    timeout_s = 1.0
    gw = start_gateway(redis=redis_server.url, PUBLISH_RATE=1000, PUBLISH_BURST=1000,
                       WS_PING_INTERVAL=PING_S, WS_PING_TIMEOUT=timeout_s)
    client = await Client.connect(gw.ws_url, token("publisher"))
    try:
        await client.join("busy")
        # Redis holds every write for 4 s (4 pong timeouts; less than the
        # gateway's 5 s Redis timeout): the gateway reads the first publish
        # and waits; the rest, and the client's pongs to the pings the
        # gateway keeps sending, wait unread behind it.
        await asyncio.to_thread(redis_server.command, "CLIENT", "PAUSE", "4000", "WRITE")
        paused_at = time.monotonic()
        for i in range(20):
            await client.send({"type": "publish", "room": "busy", "text": f"m{i}", "client_msg_id": f"c{i}"})
        acks = []
        while len(acks) < 20:
            frame = await client.recv(timeout=30)
            if frame["type"] == "ack":
                acks.append(frame["offset"])
        assert time.monotonic() - paused_at > PING_S + 2 * timeout_s  # a pong deadline passed meanwhile
        assert acks == list(range(1, 21))
        assert (await client.ping())["type"] == "pong"  # still open
    finally:
        await client.close()


async def test_a_reader_behind_a_burst_gets_everything_and_stays(start_gateway, token) -> None:
    gw = start_gateway(PUBLISH_RATE=100000, PUBLISH_BURST=100000, SEND_QUEUE_MAX=100000, **KEEPALIVE)
    room, count = "burst", 2000
    text = "x" * 1500
    publisher = await Client.connect(gw.ws_url, token("publisher"))
    reader = await asyncio.to_thread(PongingReader.connect, gw.port, token("reader"), 4096)
    try:
        assert (await asyncio.to_thread(reader.recv_json))["type"] == "welcome"
        reader.send_text(json.dumps({"type": "join", "room": room, "id": 1}))
        assert (await asyncio.to_thread(reader.recv_json))["type"] == "joined"
        await publisher.join(room)
        # ~3 MB for a reader that takes ~500 KB/s: it is seconds behind, and
        # every ping after the first waits behind the frames queued for it.
        reading = asyncio.create_task(asyncio.to_thread(reader.read_messages, room, count, 500_000, 60))
        for i in range(count):
            await publisher.send({"type": "publish", "room": room, "text": text})
        offsets, closed = await reading
        assert closed is None, f"closed with {closed} after {len(offsets)} messages"
        assert offsets == list(range(1, count + 1))
        assert await metric(gw, "switchboard_connections") == 2
    finally:
        reader.close()
        await publisher.close()


async def test_a_peer_that_never_answers_is_still_closed(start_gateway, token) -> None:
    gw = start_gateway(**KEEPALIVE)
    silent = await asyncio.to_thread(RawWebSocket.connect, gw.port, token("silent"), 65536)
    try:
        assert (await asyncio.to_thread(silent.recv_json))["type"] == "welcome"
        await wait_until(lambda: _connections(gw, 1), 5, "the connection registered")
        opened = time.monotonic()
        # It reads nothing more and never answers a ping.
        await wait_until(lambda: _connections(gw, 0), PING_S + 2 * TIMEOUT_S + 5, "a keepalive close")
        assert time.monotonic() - opened <= PING_S + 2 * TIMEOUT_S + 5
        opcode, payload = await asyncio.to_thread(_first_non_ping, silent)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1011
    finally:
        silent.close()


def _first_non_ping(ws: RawWebSocket) -> tuple[int, bytes]:
    while True:
        opcode, payload = ws.recv_frame()
        if opcode != 0x9:
            return opcode, payload


async def _connections(gw, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await metric(gw, "switchboard_connections") == n
