"""One WebSocket connection: who it is, where its frames go, how it closes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from switchboard.protocol import codec
from switchboard.protocol.codes import CloseCode
from switchboard.protocol.frames import User
from switchboard_gateway.auth import Principal
from switchboard_gateway.outbound import Outbound, Send
from switchboard_gateway.ratelimit import ErrorWindow, TokenBucket
from switchboard_gateway.supervision import run_detached

log = logging.getLogger("switchboard.connection")

# A close frame the peer does not read for this long is given up on and the
# transport aborted (the protocol's "transport closed within 5 s").
CLOSE_GRACE_S = 5.0


def _abort_transport(send: Send) -> None:
    """Drop the TCP connection at once. ASGI has no verb for it; uvicorn's
    send is a method of its protocol object, which owns the transport."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()


class Connection:
    __slots__ = (
        "id",
        "principal",
        "user",
        "user_json",
        "rooms",
        "out",
        "bucket",
        "frame_bucket",
        "typing_bucket",
        "errors",
        "closing",
        "_send",
        "_on_close",
        "_expiry",
        "spawn",
        "__weakref__",
    )

    def __init__(
        self,
        conn_id: str,
        principal: Principal,
        send: Send,
        *,
        rate: float,
        burst: int,
        frame_rate: float,
        frame_burst: int,
        typing_rate: float,
        typing_burst: int,
        abuse_errors: int,
        queue_max: int,
        queue_max_bytes: int,
        on_close: Callable[[int], None],
        fast_path: bool = False,
    ) -> None:
        self.id = conn_id
        self.principal = principal
        self.user = User(principal.user_id, principal.name)
        self.user_json = codec.encode_bytes(self.user)
        self.rooms: set[str] = set()
        self.out = Outbound(send, self._slow, queue_max, queue_max_bytes, fast_path)
        now = time.monotonic()
        self.bucket = TokenBucket(rate, burst, now)  # publishes (and, cluster-wide, per user)
        # Every frame, whatever its type, costs one token; never tighter
        # than the publish budget, or PUBLISH_RATE could not be reached.
        self.frame_bucket = TokenBucket(max(frame_rate, rate), max(frame_burst, burst), now)
        self.typing_bucket = TokenBucket(typing_rate, typing_burst, now)
        self.errors = ErrorWindow(abuse_errors)
        self.closing = False
        self._send = send
        self._on_close = on_close
        self._expiry: asyncio.TimerHandle | None = None
        # Runs its background close; the node supervises it (Node.add_connection).
        self.spawn: Callable[[str, Coroutine[Any, Any, None]], object] = run_detached
        if principal.expires_at is not None:
            delay = max(0.0, principal.expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def send_text(self, text: str) -> None:
        self.out.send({"type": "websocket.send", "text": text})

    def _slow(self) -> None:
        log.info("closing slow consumer %s (outbound queue full)", self.id)
        self.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    def _expired(self) -> None:
        self.close_soon(CloseCode.UNAUTHORIZED, "token expired")

    def close_soon(self, code: int, reason: str) -> None:
        if not self.closing:
            self.spawn("close", self.close(code, reason))

    async def close(self, code: int, reason: str = "", flush_s: float = 1.0) -> None:
        """Close with `code`: what is queued gets `flush_s` to go out first
        (nothing for a slow consumer), the close frame `CLOSE_GRACE_S`, then
        the transport is aborted."""
        if self.closing:
            return
        self.closing = True
        self._on_close(code)
        self.cancel_expiry()
        if code != CloseCode.TRY_AGAIN_LATER:
            await self.out.flush(flush_s)
        self.out.stop()
        # Whatever the peer does with the close frame, the socket is gone soon.
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, _abort_transport, self._send)
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await self._send({"type": "websocket.close", "code": int(code), "reason": reason})
        except Exception:
            pass  # already gone, or never writable again: the abort above ends it

    def abort(self) -> None:
        """Drop the TCP connection now, whatever is queued or awaited."""
        self.closing = True
        self.out.stop()
        _abort_transport(self._send)

    def renew(self, principal: Principal) -> None:
        """A refreshed token of the same user: its expiry and rooms apply from
        now on. The display name stays the one the connection started with
        (presence and messages show one name per connection)."""
        assert principal.user_id == self.principal.user_id
        self.principal = Principal(principal.user_id, self.principal.name, principal.rooms, principal.expires_at)
        self.cancel_expiry()
        if principal.expires_at is not None and not self.closing:
            delay = max(0.0, principal.expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
