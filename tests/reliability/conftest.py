"""Helpers for the fault-injection tier: real gateway processes, real Redis,
real faults. Every wait here has a deadline; periodic things are polled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from switchboard.client import Client
from switchboard_harness import TEST_API_KEY, GatewayProcess, RedisProcess
from switchboard_harness.keyspace import keys_with_prefix  # noqa: F401  (re-exported for the tests)


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A private redis-server that the test may stop, kill and restart (the
    shared session Redis is never touched by a fault)."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.cleanup()


async def wait_until(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(interval)


async def collect_until(
    client: Client,
    room: str,
    upto: int,
    timeout: float = 20.0,
    others: list[dict[str, Any]] | None = None,
    received_at: list[float] | None = None,
) -> list[dict[str, Any]]:
    """The `message` frames of `room` until one with offset >= `upto`.
    Other frames go to `others` (if given); arrival times to `received_at`."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not got or got[-1]["offset"] < upto:
        left = deadline - time.monotonic()
        if left <= 0:
            last = got[-1]["offset"] if got else None
            raise AssertionError(f"{room}: got up to offset {last} of {upto} within {timeout} s")
        frame = await client.recv(timeout=left)
        if frame.get("type") == "message" and frame.get("room") == room:
            got.append(frame)
            if received_at is not None:
                received_at.append(time.time())
        elif others is not None:
            others.append(frame)
    return got


def offsets(messages: list[dict[str, Any]]) -> list[int]:
    return [m["offset"] for m in messages]


def assert_contiguous(got: list[int], first: int, last: int, who: str = "") -> None:
    """Exactly first..last, each once, in order (with a readable failure)."""
    if got == list(range(first, last + 1)):
        return
    dups = sorted({o for o in got if got.count(o) > 1})
    missing = sorted(set(range(first, last + 1)) - set(got))
    disorder = [(a, b) for a, b in zip(got, got[1:]) if b <= a][:5]
    raise AssertionError(
        f"{who}: expected offsets {first}..{last} once each in order; "
        f"{len(got)} received, duplicates {dups[:10]}, missing {missing[:10]}, out of order {disorder}"
    )


async def api_presence(gateway: GatewayProcess, room: str) -> dict[str, int]:
    """user id -> connections, from ``GET /api/rooms/{room}/presence``."""
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=5) as http:
        response = await http.get(
            f"/api/rooms/{room}/presence", headers={"Authorization": f"Bearer {TEST_API_KEY}"}
        )
        response.raise_for_status()
        return {m["user"]["id"]: m["connections"] for m in response.json()["members"]}


async def api_publish(gateway: GatewayProcess, room: str, text: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=5) as http:
        response = await http.post(
            "/api/publish", json={"room": room, "text": text}, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
        )
        response.raise_for_status()
        return response.json()


async def metric(gateway: GatewayProcess, name: str, labels: str = "") -> float:
    """One sample of the gateway's /metrics (0 when absent), e.g.
    ``metric(gw, "switchboard_closes_total", 'code="1013"')``."""
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=5) as http:
        text = (await http.get("/metrics")).text
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M)
    assert match is not None
    return int(match.group(1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


class RawWebSocket:
    """A WebSocket client by hand on a blocking socket, for a peer that
    stops reading: the test controls every recv (none, if it wants)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def connect(cls, port: int, token: str, rcvbuf: int = 4096) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)  # byte by byte: never read past the handshake
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head
        except BaseException:
            sock.close()  # a failed handshake must not leak the socket
            raise
        return cls(sock)

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("eof")
            data += chunk
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (server frames are unmasked)."""
        b0, b1 = self._recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._recv_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._recv_exact(8))
        return b0 & 0x0F, self._recv_exact(n)

    def recv_json(self) -> dict[str, Any]:
        opcode, payload = self.recv_frame()
        assert opcode == 1, (opcode, payload[:100])
        return json.loads(payload)

    def drain_to_end(self, timeout: float) -> str:
        """Read (and discard) until the server's side is gone: 'eof' or
        'reset'; raise if the connection is still open after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the connection is still open after {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return "reset"
            except TimeoutError:
                continue
            if not chunk:
                return "eof"

    def close(self) -> None:
        self.sock.close()


