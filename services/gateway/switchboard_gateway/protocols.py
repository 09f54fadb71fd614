"""The server layer's guard: limits uvicorn's protocols do not have.

uvicorn's httptools protocol reads a request head of any size, waits for it
forever, and hands a socket that never sends a byte nothing but patience;
its WebSocket protocol answers every ping at once, into a write buffer that
grows without bound when the peer does not read, and a closed transport
whose buffer never drains lingers forever. So, by subclassing both protocols
(uvicorn takes protocol classes in its Config; see ``protocol_classes``):

- Admission: at most MAX_CONNECTIONS sockets per gateway, and at most
  MAX_CONNECTIONS_PER_IP not-yet-upgraded HTTP connections per peer (trusted
  proxies exempt: see ``limits``). Over either, the socket gets ``503`` and
  is closed before a byte is parsed. (WebSockets are counted per client
  address once upgraded, in ``routes.websocket``: refused with 1013.)
- Request heads: at most MAX_HEADER_BYTES in all, lines under 8 KB (what the
  WebSocket handshake parser accepts) and 100 header fields; over it
  ``414``/``431`` is sent and the socket closed. The bytes are counted as
  they arrive, so a 50 MB header never gets buffered.
- Time: a request (head and body) must be complete within
  HTTP_REQUEST_TIMEOUT of the connection's start or of its first byte; a
  WebSocket handshake too. Idle, dripping or partial requests get ``408``.
  An HTTP response the peer stops reading for that long is dropped.
- Writes: a pong is not queued while the transport is over its high-water
  mark (the peer is not reading; RFC 6455 lets an endpoint answer only the
  latest ping), more than MAX_PINGS_PER_S pings fail the connection (1008),
  and a transport whose write buffer exceeds SEND_QUEUE_MAX_BYTES is aborted.
- Closing: every transport closed by anyone (uvicorn, the app, a timeout),
  and every WebSocket that sent its close frame, is aborted if it is still
  there CLOSE_GRACE_S later, so an unread close frame or response cannot pin
  a socket.

All deadlines are checked by one sweep per second over the live sockets, not
by a timer per socket.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

from switchboard_gateway import wire
from switchboard_gateway.connection import CLOSE_GRACE_S
from switchboard_gateway.keepalive import GatewayWebSocketProtocol
from switchboard_gateway.limits import AddressCounter, TrustedProxies
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.settings import Settings

log = logging.getLogger("switchboard.guard")

SWEEP_INTERVAL_S = 1.0
# After a refusal (414, 431, 408) the socket reads and drops what the client
# still sends for this long before it closes: closing with unread input
# sends a TCP reset, which can destroy the response before it is read.
LINGER_S = 2.0
# The WebSocket handshake is parsed again by `websockets`, which allows 8192
# bytes per line and 128 header fields; beyond that it would fail silently.
MAX_LINE_BYTES = 8000
MAX_HEADER_FIELDS = 100
_PONG = 0x8A  # first byte of an unmasked, final pong frame
# Pings a client may send per second (keepalives need one per few seconds;
# browsers send none). A flood is parsed at ~200,000 pings/s per socket: a
# CPU cost, so over this the connection is failed with 1008.
MAX_PINGS_PER_S = 20


def _response(status: int, reason: str) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    body = reason.encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _HeadRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ServerGuard:
    """State shared by every socket of one gateway process."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        trusted = TrustedProxies(settings.forwarded_allow_ips)
        self.max_connections = settings.max_connections
        self.http_per_peer = AddressCounter(settings.max_connections_per_ip, trusted.__contains__)
        self.total = 0
        self.request_timeout_s = settings.http_request_timeout_s
        self.max_head_bytes = settings.max_header_bytes
        self.write_buffer_max = settings.send_queue_max_bytes
        self.metrics = metrics
        self.sockets: set[_Guarded] = set()
        self._sweeping: asyncio.TimerHandle | None = None

    def admit(self, peer: str | None) -> str | None:
        """Count a new socket, or say why it is refused."""
        if self.total >= self.max_connections:
            return "total"
        if not self.http_per_peer.acquire(peer):
            return "address"
        self.total += 1
        return None

    def watch(self, socket: _Guarded) -> None:
        self.sockets.add(socket)
        if self._sweeping is None:
            loop = asyncio.get_running_loop()
            self._sweeping = loop.call_later(SWEEP_INTERVAL_S, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        try:
            for socket in list(self.sockets):
                try:
                    self._check(socket, now)
                except Exception:  # one odd socket must not stop the sweep
                    log.exception("guard: checking a socket failed; dropping it")
                    self.sockets.discard(socket)
                    socket.transport.abort()
        finally:
            self._sweeping = loop.call_later(SWEEP_INTERVAL_S, self._sweep, loop)

    def _check(self, socket: _Guarded, now: float) -> None:
        transport = socket.transport
        if transport is None:
            return
        if socket.closing():
            if socket.closing_since is None:
                socket.closing_since = now
            elif now - socket.closing_since >= CLOSE_GRACE_S:
                self.metrics.aborted.labels(reason="close_grace").inc()
                transport.abort()
        elif socket.overdue(now):
            socket.timed_out()


class _Guarded:
    """What the sweep needs of a socket (both protocols below)."""

    transport: Any
    closing_since: float | None

    def closing(self) -> bool:
        return bool(self.transport.is_closing())

    def overdue(self, now: float) -> bool:
        raise NotImplementedError

    def timed_out(self) -> None:
        raise NotImplementedError


class GuardedHttpProtocol(HttpToolsProtocol, _Guarded):
    guard: ClassVar[ServerGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer: str | None = None
        self.admitted = False  # counted in the guard (total and per peer)
        self.closing_since: float | None = None
        self.deadline: float | None = None  # the current request must be in by then
        self.stalled_since: float | None = None  # a response the peer does not read
        self.head_bytes: int | None = 0  # bytes of the request head so far; None past it
        self.lingering = False  # refused: input is dropped until the close
        self.line_done = False  # the request line of the current head has ended

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = get_remote_addr(transport)
        self.peer = client[0] if client else None
        refusal = self.guard.admit(self.peer)
        if refusal is not None:
            self.guard.metrics.refused.labels(reason=refusal).inc()
            transport.write(_response(503, "too many connections; retry later"))
            transport.close()
            return
        self.admitted = True
        self.deadline = self.loop.time() + self.guard.request_timeout_s
        self.guard.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave(upgraded=False)
        super().connection_lost(exc)

    def _leave(self, upgraded: bool) -> None:
        self.guard.sockets.discard(self)
        if self.admitted:
            self.admitted = False
            self.guard.http_per_peer.release(self.peer)
            if not upgraded:  # an upgraded socket stays counted until the WebSocket ends
                self.guard.total -= 1

    def handle_websocket_upgrade(self) -> None:
        self._leave(upgraded=True)
        super().handle_websocket_upgrade()
        # This protocol is done with the socket, but its parser holds its
        # callbacks (bound methods of this object): a reference cycle that only
        # the garbage collector would free, ~2 KB per WebSocket ever opened.
        self.parser = None  # type: ignore[assignment]

    # --- the request head, counted as it arrives ---------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if self.head_bytes is not None:
            self.head_bytes += len(data)
            if not self.line_done and b"\n" in data:
                self.line_done = True
        # uvicorn's own data_received, except that a refused head is answered
        # with its status instead of 400.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse_head(exc.__context__)
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.head_bytes is not None and self.head_bytes > self.guard.max_head_bytes:
            if not self.line_done:
                self._refuse_head(_HeadRefused(414, "request line too long"))
            else:
                self._refuse_head(_HeadRefused(431, "request header fields too large"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:
            self.deadline = self.loop.time() + self.guard.request_timeout_s

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_LINE_BYTES:
            raise _HeadRefused(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 4 > MAX_LINE_BYTES:
            raise _HeadRefused(431, "a header field is too long")
        if len(self.headers) >= MAX_HEADER_FIELDS:
            raise _HeadRefused(431, "too many header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.guard.max_head_bytes:
            raise _HeadRefused(431, "request header fields too large")
        self.head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.deadline = None
        self.head_bytes = 0  # what comes next is the next request's head
        self.line_done = False

    def _refuse_head(self, refusal: _HeadRefused) -> None:
        self.guard.metrics.aborted.labels(reason="header_size").inc()
        self._answer_and_close(refusal.status, refusal.reason)

    def _answer_and_close(self, status: int, reason: str) -> None:
        """A last response, then a lingering close (see LINGER_S)."""
        if self.transport.is_closing() or self.lingering:
            return
        self.transport.write(_response(status, reason))
        self.lingering = True
        self.head_bytes = self.stalled_since = None
        if self.cycle is not None and not self.cycle.response_complete:
            # The app (waiting for a body that will not come) sees a
            # disconnect now, and whatever it answers is dropped.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self.deadline = self.loop.time() + LINGER_S

    # --- time ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self.stalled_since = self.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.stalled_since = None

    def overdue(self, now: float) -> bool:
        if self.stalled_since is not None and now - self.stalled_since >= self.guard.request_timeout_s:
            return True
        return self.deadline is not None and now >= self.deadline

    def timed_out(self) -> None:
        if self.lingering:
            self.deadline = None
            self.transport.close()
            return
        self.guard.metrics.aborted.labels(reason="request_timeout").inc()
        if self.cycle is None or not self.cycle.response_started:
            self._answer_and_close(408, "request not received in time")
            return
        self.deadline = self.stalled_since = None
        self.cycle.keep_alive = False
        self.transport.close()


class GuardedWebSocketProtocol(GatewayWebSocketProtocol, _Guarded):
    """The keepalive protocol (keepalive.py) with the guard's limits."""

    guard: ClassVar[ServerGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets logs every header (Authorization: Bearer ...) and every
        # frame's text at DEBUG: never, whatever LOG_LEVEL says.
        self.conn.debug = False
        self.closing_since: float | None = None
        self.deadline: float | None = None  # the handshake must be answered by then
        self.pings = 0  # in the current second
        self.pings_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.deadline = self.loop.time() + self.guard.request_timeout_s
        self.guard.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.guard.sockets:
            self.guard.sockets.discard(self)
            self.guard.total -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.transport.is_closing():
            # websockets refused the request (it queued a 414/431, or found
            # garbage) but uvicorn only sends responses for requests it got.
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
        if self.transport.get_write_buffer_size() > self.guard.write_buffer_max:
            self.guard.metrics.aborted.labels(reason="write_buffer").inc()
            self.transport.abort()

    def handle_ping(self) -> None:
        now = self.loop.time()
        if now - self.pings_since >= 1.0:
            self.pings, self.pings_since = 0, now
        self.pings += 1
        if self.close_sent:
            self.conn.data_to_send()  # closing: no pong owed
            if self.pings > MAX_PINGS_PER_S:  # told to go, and still flooding
                self.guard.metrics.aborted.labels(reason="ping_flood").inc()
                self.transport.abort()
            return
        if self.pings > MAX_PINGS_PER_S:
            self.guard.metrics.aborted.labels(reason="ping_flood").inc()
            self.conn.data_to_send()
            self.conn.fail(1008, "too many pings")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.closing_since = now
            self.transport.close()
            return
        if self.writable.is_set():
            super().handle_ping()
            return
        # The peer is not reading: answer no ping until it does (a pong per
        # ping would grow the buffer with every ping it sends).
        kept = [chunk for chunk in self.conn.data_to_send() if chunk[:1] != bytes((_PONG,))]
        if kept:
            self.transport.write(b"".join(kept))

    def closing(self) -> bool:
        # From the close frame on: uvicorn would wait 10 s for the peer's
        # close, then close a transport that may never drain.
        return self.close_sent or bool(self.transport.is_closing())

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.close_sent and self.closing_since is None:
            self.closing_since = self.loop.time()  # the grace counts from the close frame

    def overdue(self, now: float) -> bool:
        if self.handshake_complete:
            self.deadline = None
        return self.deadline is not None and now >= self.deadline

    def timed_out(self) -> None:
        self.guard.metrics.aborted.labels(reason="request_timeout").inc()
        self.deadline = None
        self.transport.close()


def protocol_classes(guard: ServerGuard) -> tuple[type[GuardedHttpProtocol], type[GuardedWebSocketProtocol]]:
    """The HTTP and WebSocket protocol classes for uvicorn's Config, bound to `guard`."""
    http_class = type("GatewayHttpProtocol", (GuardedHttpProtocol,), {"guard": guard})
    ws_class = type("GuardedGatewayWebSocketProtocol", (GuardedWebSocketProtocol,), {"guard": guard})
    # Its sends are uvicorn's (only close frames are watched): the fan-out
    # fast path (wire.py) may write to it like to the plain protocol.
    wire.SUPPORTED.add(ws_class)
    return http_class, ws_class
