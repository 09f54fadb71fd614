"""A load-generating client process: many WebSocket connections on one asyncio
loop, speaking the JSON protocol directly.

Each connection is an ``asyncio.Protocol`` driving the ``websockets``
library's Sans-I/O ``ClientProtocol`` (handshake, masking, framing, automatic
pongs): no task, no queue and no future per connection or per frame, so that
thousands of sockets and tens of thousands of frames per second cost the
client as little CPU as possible (the clients share the machine with the
servers they measure). No compression is offered.

A message's ``text`` starts with its send time (``time.time_ns()``) taken
just before the publish frame is written: latency is the receive wall time
minus that, the same measure for every design.

*Probe* connections (``probes`` in the spec) only connect (``welcome``)
during setup; at ``go`` each joins its room once, a few at a time, and the
join round trips (``join`` written -> ``joined`` read) are reported.

The parent (``bench.runner``) talks to each client process over a pipe:
it sends nothing until the process reports ``ready`` (all connected and
joined), then ``go`` with the schedule's start time, then ``exit``. The
process runs on the same event loop as the servers (``spec["loop"]``).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection as Pipe
from typing import Any

import msgspec
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


class _Head(msgspec.Struct):
    type: str = ""
    text: str = ""
    code: str = ""


_decode_head = msgspec.json.Decoder(_Head).decode
_encode = msgspec.json.encode


def raise_nofile(want: int = 1 << 20) -> int:
    """Raise the soft open-file limit as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else want
    target = min(target, want)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stats:
    __slots__ = ("received", "expected", "latencies", "errors", "closes", "close_reasons", "last_recv_ns", "done")

    def __init__(self) -> None:
        self.received = 0
        self.expected = 0
        self.latencies = array("d")  # ms
        self.errors: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.close_reasons: Counter[str] = Counter()  # "1011 keepalive ping timeout"
        self.last_recv_ns = 0
        self.done: asyncio.Event | None = None


class WSConn(asyncio.Protocol):
    """One client WebSocket (see the module docstring)."""

    __slots__ = ("url", "room", "stats", "proto", "transport", "waiting", "waiter", "open", "received", "lost")

    def __init__(self, url: str, room: str, stats: Stats) -> None:
        self.url = url
        self.room = room
        self.stats = stats
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.waiting = ""  # the frame type a setup step waits for
        self.waiter: asyncio.Future[None] | None = None
        self.open = False
        self.received = 0
        self.lost = False

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        proto = self.proto
        proto.receive_data(data)
        events = proto.events_received()
        self._flush()
        for event in events:
            if type(event) is Frame:
                if event.opcode is Opcode.TEXT:
                    self._on_text(event.data, now)
            elif isinstance(event, Response):
                if proto.handshake_exc is not None:
                    self._fail(proto.handshake_exc)
                else:
                    self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.open = False
        close = self.proto.close_rcvd
        code = int(close.code) if close is not None else 1006
        self.stats.closes[code] += 1
        self.stats.close_reasons[f"{code} {close.reason if close is not None else ''}".strip()] += 1
        self._fail(ConnectionError(f"connection lost (close code {code})"))

    # --- frames ----------------------------------------------------------------------

    def _on_text(self, data: bytes, now_ns: int) -> None:
        head = _decode_head(data)
        kind = head.type
        if kind == "message":
            text = head.text
            space = text.find(" ")
            if space > 0 and text[:space].isdigit():
                stats = self.stats
                stats.latencies.append((now_ns - int(text[:space])) / 1e6)
                stats.received += 1
                stats.last_recv_ns = now_ns
                self.received += 1
                if stats.received >= stats.expected and stats.done is not None:
                    stats.done.set()
            return
        if kind == "error":
            self.stats.errors[head.code] += 1
        if kind == self.waiting and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()

    # --- commands ----------------------------------------------------------------------

    async def expect(self, kind: str, timeout: float, send: Any = None) -> None:
        """Send `send` (if given) and wait for the next frame of type `kind`."""
        self.waiting = kind
        self.waiter = asyncio.get_running_loop().create_future()
        if send is not None:
            self.send(send)
        try:
            async with asyncio.timeout(timeout):
                await self.waiter
        finally:
            self.waiting, self.waiter = "", None

    def send(self, frame: Any) -> None:
        if self.open and not self.lost:
            self.proto.send_text(_encode(frame))
            self._flush()

    def publish(self, tag: str, pad: str) -> None:
        if self.open and not self.lost:
            text = f"{time.time_ns()} {tag} {pad}"
            self.proto.send_text(_encode({"type": "publish", "room": self.room, "text": text}))
            self._flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def _connect(conn: WSConn, timeout: float, join: bool = True) -> None:
    loop = asyncio.get_running_loop()
    wsuri = parse_uri(conn.url)
    async with asyncio.timeout(timeout):
        conn.waiting = "welcome"
        conn.waiter = loop.create_future()
        await loop.create_connection(lambda: conn, wsuri.host, wsuri.port)
        await conn.waiter
    if join:
        await conn.expect("joined", timeout, {"type": "join", "room": conn.room, "id": 1})


class Worker:
    """What one client process does; `spec` comes from the runner:

    - ``conns``: [(ws_url, room)], this process's connections;
    - ``token``: the bearer token for every connection (or None);
    - ``expected``: deliveries this process should see in all;
    - ``publish``: [(t_offset_s, conn_index, tag)] publishes, by time;
    - ``deadline_s``: how long after ``go`` to wait for the last delivery;
    - ``stall_s``: ... or how long without a delivery after the last publish;
    - ``concurrency``: handshakes in flight;
    - ``pad``: filler appended to every text;
    - ``probes``: [(ws_url, room)], connections that join only at ``go``;
    - ``probe_concurrency``: probe joins in flight.
    """

    def __init__(self, spec: dict[str, Any], pipe: Pipe) -> None:
        self.spec = spec
        self.pipe = pipe
        self.stats = Stats()
        self.conns: list[WSConn] = []
        self.probes: list[WSConn] = []

    async def _recv_pipe(self) -> Any:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self.pipe.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)
            os.set_blocking(fd, True)  # uvloop's add_reader made it non-blocking; pipe.send needs blocking
        return self.pipe.recv()

    async def run(self) -> None:
        spec = self.spec
        stats = self.stats
        stats.expected = spec["expected"]
        stats.done = asyncio.Event()
        token = spec.get("token")
        sem = asyncio.Semaphore(spec.get("concurrency", 64))
        failures: Counter[str] = Counter()

        async def one(url: str, room: str, probe: bool) -> None:
            full = f"{url}?token={token}" if token else url
            conn = WSConn(full, room, stats)
            (self.probes if probe else self.conns).append(conn)
            async with sem:
                try:
                    await _connect(conn, spec.get("connect_timeout", 30.0), join=not probe)
                except Exception as exc:  # counted; the run reports it
                    failures[type(exc).__name__] += 1
                    conn.abort()

        started = time.monotonic()
        await asyncio.gather(*(one(url, room, False) for url, room in spec["conns"]))
        await asyncio.gather(*(one(url, room, True) for url, room in spec.get("probes", ())))
        connected = sum(1 for c in self.conns + self.probes if c.open and not c.lost)
        self.pipe.send(("ready", {"connected": connected, "failures": dict(failures),
                                  "setup_s": time.monotonic() - started}))
        while True:
            command = await self._recv_pipe()
            if command[0] == "exit":
                break
            if command[0] == "go":
                await self._go(command[1])
            elif command[0] == "probe":
                await self._probe()
        for conn in self.conns + self.probes:
            conn.abort()

    async def _probe(self) -> None:
        """Every probe joins its room once; report the round trips."""
        spec = self.spec
        sem = asyncio.Semaphore(spec.get("probe_concurrency", 8))
        times = array("d")
        failures: Counter[str] = Counter()

        async def join(conn: WSConn) -> None:
            async with sem:
                started = time.perf_counter()
                try:
                    await conn.expect("joined", spec.get("connect_timeout", 30.0),
                                      {"type": "join", "room": conn.room, "id": 2})
                except Exception as exc:
                    failures[type(exc).__name__] += 1
                    return
                times.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(join(c) for c in self.probes if c.open and not c.lost))
        self.pipe.send(("done", {"joins": len(times), "join_ms": times.tobytes(), "failures": dict(failures),
                                 "errors": dict(self.stats.errors), "closes": dict(self.stats.closes),
                                 "close_reasons": dict(self.stats.close_reasons),
                                 "open": sum(1 for c in self.conns + self.probes if c.open and not c.lost)}))

    async def _go(self, t0: float) -> None:
        spec, stats = self.spec, self.stats
        pad = spec.get("pad", "")
        stats.received = 0
        stats.latencies = array("d")
        stats.done = asyncio.Event()
        if stats.received >= stats.expected:
            stats.done.set()

        async def publisher() -> None:
            for offset, index, tag in spec["publish"]:
                delay = t0 + offset - time.time()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                self.conns[index].publish(tag, pad)

        pub = asyncio.create_task(publisher())
        # Wait for every expected delivery; give up at the deadline, or when
        # nothing arrived for `stall_s` after the last publish was written.
        deadline = t0 + spec["deadline_s"]
        stall_s = spec.get("stall_s", 5.0)
        seen, progress_at = -1, time.monotonic()
        while not stats.done.is_set():
            left = deadline - time.time()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(min(0.25, left)):
                    await stats.done.wait()
            except TimeoutError:
                pass
            if stats.received != seen:
                seen, progress_at = stats.received, time.monotonic()
            elif pub.done() and time.monotonic() - progress_at > stall_s:
                break
        if not pub.done():
            pub.cancel()
        await asyncio.gather(pub, return_exceptions=True)
        self.pipe.send(("done", {
            "received": stats.received,
            "expected": stats.expected,
            "latencies": stats.latencies.tobytes(),
            "last_recv": stats.last_recv_ns / 1e9,
            "errors": dict(stats.errors),
            "closes": dict(stats.closes),
            "close_reasons": dict(stats.close_reasons),
            "open": sum(1 for c in self.conns if c.open and not c.lost),
        }))


def worker_main(spec: dict[str, Any], pipe: Pipe) -> None:
    """The client process's entry point (multiprocessing target)."""
    raise_nofile()
    if spec.get("loop", "asyncio") == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(Worker(spec, pipe).run())
    finally:
        pipe.close()
