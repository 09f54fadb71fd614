"""The server layer against an unauthenticated attacker (issue 10, findings
1-3): real gateway processes, raw sockets, floods bounded in size and time.

Each test states the bound it holds the gateway to: bytes of memory per
abusive connection, seconds until a socket is closed, the status sent.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from switchboard.client import Client, ClientClosed

from .conftest import RawWebSocket, rss_kib, wait_until

TIMEOUT_S = 1.0  # HTTP_REQUEST_TIMEOUT in these tests
SWEEP_S = 1.0  # the guard checks deadlines once a second
LINGER_S = 2.0  # a refused socket drops input this long before closing


_opened: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    """Every raw socket a test opened is closed after it (the server closed
    most of them already; unclosed ones are errors under pytest.ini)."""
    yield
    while _opened:
        _opened.pop().close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    _opened.append(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took;
    fails if the socket is still open after `timeout`."""
    started = time.monotonic()
    data = b""
    while True:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise AssertionError(f"still open after {timeout} s; got {data[:200]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, time.monotonic() - started
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def send_until_answered(sock: socket.socket, chunks: list[bytes]) -> bytes:
    """Send chunks until the server answers (or refuses to read more); the
    answer's first bytes. Never sends more than the chunks given."""
    sock.setblocking(False)
    try:
        for chunk in chunks:
            try:
                answer = sock.recv(65536)
                if answer:
                    return answer
            except BlockingIOError:
                pass
            try:
                sock.sendall(chunk)
            except BlockingIOError:
                break  # the server stopped reading
            except (BrokenPipeError, ConnectionResetError):
                break
    finally:
        sock.setblocking(True)
    sock.settimeout(5)
    return sock.recv(65536)


@pytest.fixture
def guarded(start_gateway):  # type: ignore[no-untyped-def]
    return start_gateway(HTTP_REQUEST_TIMEOUT=TIMEOUT_S, FORWARDED_ALLOW_IPS="", ALLOW_GUESTS="true")


# --- 1. request heads are bounded ----------------------------------------------------------------


def test_header_flood_gets_431_and_memory_stays_flat(guarded) -> None:
    """50 MB of headers grew a gateway by 327 MB; now the head is cut at
    MAX_HEADER_BYTES (16 KiB): 431 and a close, a few KB held."""
    before = rss_kib(guarded.pid)
    sock = connect(guarded.port)
    chunks = [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "] + [b"a" * 4096] * 1024  # at most 4 MiB
    answer = send_until_answered(sock, chunks)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    rest, took = read_until_closed(sock, LINGER_S + SWEEP_S + 2)
    assert took <= LINGER_S + SWEEP_S + 1
    assert rss_kib(guarded.pid) - before < 2048


def test_many_small_header_fields_get_431(guarded) -> None:
    sock = connect(guarded.port)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(150)) + b"\r\n"
    sock.sendall(head)
    answer, _ = read_until_closed(sock, LINGER_S + SWEEP_S + 2)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


@pytest.mark.parametrize("path", ["/ws", "/healthz"])
def test_request_line_over_8_kb_gets_414_and_a_close(guarded, path: str) -> None:
    """An upgrade whose request line is over 8 KB was logged as answered but
    nothing was sent and the socket hung."""
    sock = connect(guarded.port)
    sock.sendall(
        f"GET {path}?token={'a' * 9000} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer, took = read_until_closed(sock, LINGER_S + SWEEP_S + 2)
    assert answer.startswith(b"HTTP/1.1 414 "), answer[:100]


def test_a_long_header_line_on_an_upgrade_gets_431(guarded) -> None:
    sock = connect(guarded.port)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Cookie: " + b"c" * 8500 + b"\r\n\r\n"
    )
    answer, _ = read_until_closed(sock, LINGER_S + SWEEP_S + 2)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


# --- 3. nothing stays open for free ---------------------------------------------------------------


@pytest.mark.parametrize(
    "what",
    [
        b"",  # a socket that never sends a byte
        b"GET /heal",  # a partial request line
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers that never end
        b"POST /auth/guest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na",  # a body that never ends
    ],
    ids=["idle", "partial-line", "partial-headers", "slow-body"],
)
def test_incomplete_requests_get_408_within_the_timeout(guarded, what: bytes) -> None:
    """They stayed >= 70 s; now HTTP_REQUEST_TIMEOUT (+ the 1 s sweep)."""
    sock = connect(guarded.port)
    started = time.monotonic()
    sock.sendall(what)
    answer, _ = read_until_closed(sock, TIMEOUT_S + SWEEP_S + LINGER_S + 2)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert time.monotonic() - started <= TIMEOUT_S + SWEEP_S + LINGER_S + 1


def test_dripped_headers_are_cut_at_the_deadline(guarded) -> None:
    """One byte every 0.2 s keeps no socket alive: the deadline counts from
    the first byte, not the last."""
    sock = connect(guarded.port)
    started = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: " + b"d" * 100
    answer = b""
    for byte in head:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(0.2)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        break
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert took <= TIMEOUT_S + SWEEP_S + 0.5


def test_a_normal_request_still_works(guarded) -> None:
    sock = connect(guarded.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer, _ = read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")


def test_connections_per_address_are_limited(start_gateway, token) -> None:
    """2,000 idle sockets from one address stayed open. Now at most
    MAX_CONNECTIONS_PER_IP not-yet-upgraded sockets per peer (HTTP 503) and
    as many WebSockets per client address (accept, close 1013)."""
    gw = start_gateway(MAX_CONNECTIONS_PER_IP=3, FORWARDED_ALLOW_IPS="", HTTP_REQUEST_TIMEOUT=10)
    idle = [connect(gw.port) for _ in range(3)]
    refused = connect(gw.port)
    answer, _ = read_until_closed(refused, 5)
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
    for sock in idle:
        sock.close()

    async def websockets_() -> None:
        clients = [await Client.connect(gw.ws_url, token(f"u{n}")) for n in range(3)]
        try:
            with pytest.raises(ClientClosed) as closed:
                extra = await Client.connect(gw.ws_url, token("u9"))
                await extra.ping()
            assert closed.value.code == 1013 and "address" in closed.value.reason
            await clients[0].close()  # the gateway frees its place as the socket ends

            async def freed() -> bool:
                try:
                    async with await Client.connect(gw.ws_url, token("u9")) as again:
                        return (await again.ping())["type"] == "pong"
                except ClientClosed:
                    return False

            await wait_until(freed, 5, "the freed place is usable", interval=0.1)
        finally:
            for client in clients:
                await client.close()

    asyncio.run(websockets_())


def test_loopback_is_exempt_by_default(start_gateway, token) -> None:
    """FORWARDED_ALLOW_IPS (default loopback) names trusted peers: local tools
    and the load balancer are not limited per address."""
    gw = start_gateway(MAX_CONNECTIONS_PER_IP=2)

    async def run() -> None:
        clients = [await Client.connect(gw.ws_url, token(f"u{n}")) for n in range(4)]
        for client in clients:
            assert (await client.ping())["type"] == "pong"
            await client.close()

    asyncio.run(run())


def test_max_connections_per_gateway(start_gateway) -> None:
    gw = start_gateway(MAX_CONNECTIONS=3, HTTP_REQUEST_TIMEOUT=10)
    held = [connect(gw.port) for _ in range(3)]
    refused = connect(gw.port)
    answer, _ = read_until_closed(refused, 5)
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
    for sock in held:
        sock.close()


# --- 2. a peer that does not read -----------------------------------------------------------------


def _ping_frame(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return bytes([0x89, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _flood_pings(ws: RawWebSocket, total_bytes: int, deadline_s: float) -> tuple[int, bool]:
    """Send pings (never reading) until `total_bytes` went out, the server
    dropped the connection, or the deadline: (bytes sent, dropped)."""
    frame = _ping_frame(b"p" * 125)
    batch = frame * 256  # ~33 KB
    sent = 0
    ws.sock.settimeout(0.5)
    stop = time.monotonic() + deadline_s
    while sent < total_bytes and time.monotonic() < stop:
        try:
            ws.sock.sendall(batch)
        except TimeoutError:
            continue  # the server is not reading right now
        except (BrokenPipeError, ConnectionResetError):
            return sent, True
        sent += len(batch)
    return sent, False


def test_ping_flood_is_cut_off_and_holds_little_memory(start_gateway, token) -> None:
    """131 MB of pings held 111 MB until the client chose to close. Now more
    than 20 pings a second fail the connection (1008) and the socket is
    dropped within the close grace, whether the peer reads or not."""
    gw = start_gateway(NODE_ID="gw-a")
    before = rss_kib(gw.pid)
    ws = RawWebSocket.connect(gw.port, token("pinger"), rcvbuf=4096)
    started = time.monotonic()
    try:
        sent, dropped = _flood_pings(ws, 1 << 40, deadline_s=5 + SWEEP_S + 4)
        took = time.monotonic() - started
        grown = rss_kib(gw.pid) - before
        print(f"ping flood: {sent / 1e6:.1f} MB sent, dropped after {took:.1f} s, gateway grew {grown} KiB")
        assert dropped and took < 5 + SWEEP_S + 1
        assert grown < 2048
    finally:
        ws.close()


def test_a_few_pings_are_answered(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a")
    ws = RawWebSocket.connect(gw.port, token("pinger"))
    try:
        assert ws.recv_json()["type"] == "welcome"
        for n in range(10):
            ws.sock.sendall(_ping_frame(b"k%d" % n))
            assert ws.recv_frame() == (0xA, b"k%d" % n)
    finally:
        ws.close()


def test_ping_flood_after_a_bad_token_is_cut_off(start_gateway) -> None:
    """A refused connection (4001) kept reading and answering pings forever."""
    gw = start_gateway(NODE_ID="gw-a")
    ws = RawWebSocket.connect(gw.port, "not-a-token", rcvbuf=4096)
    started = time.monotonic()
    try:
        sent, dropped = _flood_pings(ws, 1 << 40, deadline_s=5 + SWEEP_S + 4)
        took = time.monotonic() - started
        print(f"after 4001: {sent / 1e6:.1f} MB of pings, dropped after {took:.1f} s")
        assert dropped and took < 5 + SWEEP_S + 1
    finally:
        ws.close()


def test_a_refused_socket_that_never_reads_is_dropped_within_the_grace(start_gateway) -> None:
    """Its close frame unread, a polite pinger is dropped CLOSE_GRACE (5 s)
    after the close frame, not kept (uvicorn would wait 10 s, then close a
    transport whose buffer may never drain)."""
    gw = start_gateway(NODE_ID="gw-a")
    ws = RawWebSocket.connect(gw.port, "not-a-token", rcvbuf=4096)
    started = time.monotonic()
    try:
        dropped = False
        while not dropped and time.monotonic() - started < 5 + SWEEP_S + 4:
            try:
                ws.sock.sendall(_ping_frame(b"slow"))
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            time.sleep(0.25)  # a slow, polite pinger: 4 pings a second
        took = time.monotonic() - started
        assert dropped and 5 - 0.5 <= took < 5 + SWEEP_S + 1, took
    finally:
        ws.close()
