"""Running the gateway under uvicorn, and draining it on SIGTERM.

Drain order (each step is the contract's), all against ONE deadline taken
when the signal arrives: DRAIN_TIMEOUT from then.
1. ``/readyz`` answers 503 at once, so the load balancer stops sending new
   sockets here; new upgrades that still arrive are closed with 1012.
2. For DRAIN_NOTICE the open sockets stay, while the balancer notices.
3. Every socket is closed with 1012 (clients reconnect elsewhere and resume
   with ``since``); closing removes their presence at once. Sockets whose
   peer does not take the close (it never reads) are aborted when only
   ``SHUTDOWN_RESERVE_S`` is left.
4. uvicorn shuts down and the app stops, within what is left; whatever is
   still running at the deadline is abandoned, and the process exits.
A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import re
import socket
import time
from types import FrameType
from urllib.parse import unquote_plus

import uvicorn
from starlette.types import ASGIApp

from switchboard.protocol.codes import CloseCode
from switchboard_gateway.app import Gateway
from switchboard_gateway.keepalive import GatewayWebSocketProtocol
from switchboard_gateway.protocols import ServerGuard, protocol_classes
from switchboard_gateway.settings import Settings

log = logging.getLogger("switchboard.lifecycle")

# The collector's thresholds (see ``tune_gc``).
GC_THRESHOLDS = (50_000, 20, 10)

# Kept for step 4 (uvicorn's shutdown, the app's lifespan end) out of DRAIN_TIMEOUT.
SHUTDOWN_RESERVE_S = 1.0
# Interpreter teardown after the event loop ends: kept out of DRAIN_TIMEOUT too.
EXIT_MARGIN_S = 0.2


# A query string in a log line (a request target); a JWT anywhere.
_QUERY = re.compile(r"\?([^\s\"']*)")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def _redact_query(match: re.Match[str]) -> str:
    pairs = []
    for pair in match.group(1).split("&"):
        key, sep, _ = pair.partition("=")
        # The gateway reads the token after percent-decoding the key
        # (?tok%65n= is ?token=), so the redaction decodes it too.
        if sep and unquote_plus(key).strip().lower() == "token":
            pair = f"{key}=[redacted]"
        pairs.append(pair)
    return "?" + "&".join(pairs)


def redact(text: str) -> str:
    """`text` without tokens: the value of any query key that decodes to
    ``token``, and anything shaped like a JWT."""
    if "?" in text:
        text = _QUERY.sub(_redact_query, text)
    return _JWT.sub("[redacted]", text)


class RedactTokens(logging.Filter):
    """uvicorn logs the WebSocket path with its query string, and browsers
    pass the token there: never let it reach a log. Installed on the
    handlers, so every logger's records pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway
        self._drain_task: asyncio.Task[None] | None = None
        self._deadline: float | None = None  # time.monotonic() by which the process is gone

    # uvicorn's own handler re-raises the signal after shutdown, so the
    # process would die "killed by SIGTERM" (143); a completed drain is a
    # clean exit, status 0. So the flags are set here, not through super().

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        node = self.gateway.node
        if node.draining:  # a second signal: stop now
            self.should_exit = self.force_exit = True
            return
        node.draining = True
        self._deadline = time.monotonic() + self.gateway.settings.drain_timeout_s - EXIT_MARGIN_S
        log.info("signal %s: draining (notice %.1fs)", sig, self.gateway.settings.drain_notice_s)
        asyncio.get_event_loop().call_soon_threadsafe(self._start_drain)

    def _left(self) -> float:
        assert self._deadline is not None
        return self._deadline - time.monotonic()

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        settings = self.gateway.settings
        node = self.gateway.node
        try:
            await asyncio.sleep(min(settings.drain_notice_s, max(0.0, self._left() - SHUTDOWN_RESERVE_S)))
            async with asyncio.timeout(max(0.0, self._left() - SHUTDOWN_RESERVE_S)):
                await node.close_all(CloseCode.SERVICE_RESTART, "server restart")
        except TimeoutError:
            log.warning("drain: %d sockets did not take their close in time; aborting them", len(node.connections))
            node.abort_all()
        finally:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._deadline is None:  # not a drain (e.g. the app failed to start)
            await super().shutdown(sockets)
            return
        # uvicorn waits for connections and tasks this long (whole seconds),
        # then cancels them; the lifespan end (node.stop) follows within the rest.
        self.config.timeout_graceful_shutdown = max(0, int(self._left() - SHUTDOWN_RESERVE_S / 2))
        try:
            async with asyncio.timeout(max(0.0, self._left())):
                await super().shutdown(sockets)
        except TimeoutError:
            log.error("drain: shutdown still running at DRAIN_TIMEOUT; exiting anyway")


def install_redaction() -> None:
    """Put RedactTokens on every handler that may print a request line."""
    redactor = RedactTokens()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactTokens) for f in handler.filters):
                handler.addFilter(redactor)


def make_config(app: ASGIApp, settings: Settings, guard: ServerGuard | None = None) -> uvicorn.Config:
    """uvicorn's configuration for the gateway (the fast path in ``wire``
    relies on the WebSocket implementation chosen here). With a `guard`,
    the protocols carry the limits uvicorn lacks (protocols.py)."""
    if guard is not None:
        http_protocol, ws_protocol = protocol_classes(guard)
        extra: dict[str, object] = {"http": http_protocol, "ws": ws_protocol}
    else:
        extra = {"ws": GatewayWebSocketProtocol}
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # uvicorn's websockets-sansio (measured cheapest per connection and per
        # delivery) with a pong deadline that tolerates busy peers (keepalive.py).
        **extra,  # type: ignore[arg-type]
        ws_max_size=settings.max_frame_bytes,  # larger frames: close 1009
        ws_per_message_deflate=False,  # per-connection zlib state costs more than chat saves
        ws_ping_interval=settings.ws_ping_interval_s or None,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        lifespan="on",
        log_level=settings.log_level,
        # Outside a drain (which sets its own from the deadline, see DrainingServer.shutdown).
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s - settings.drain_notice_s)),
        proxy_headers=True,
        forwarded_allow_ips=[
            e if e == "*" else str(ipaddress.ip_network(e, strict=False)) for e in settings.forwarded_allow_ips
        ],
        server_header=False,
    )


def tune_gc() -> None:
    """A gateway holds tens of thousands of long-lived objects per thousand
    sockets, and CPython's default thresholds (700, 10, 10) walk them over
    and over: measured on 5,000 connect+joins, 1.2 s of the 4.3 s CPU went
    to the collector (9 full collections), 0.2 s with GC_THRESHOLDS. That is
    affordable because a socket leaves no cycle behind, opened or closed
    (``protocols``, ``Outbound.stop``): its objects are freed by reference
    counting, not by the collector. The objects of startup (modules,
    settings, the app) are frozen out of every collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(gateway: Gateway) -> None:
    config = make_config(gateway, gateway.settings, ServerGuard(gateway.settings, gateway.node.metrics))
    install_redaction()  # after Config: it installs uvicorn's handlers
    tune_gc()
    DrainingServer(config, gateway).run()
