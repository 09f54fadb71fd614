"""``/ws``: a plain ASGI callable, not Starlette's ``WebSocket`` wrapper (which
costs ~5 KB per connection, see docs/performance.md).

Order of checks (contract): origin (403 before accept), draining (accept,
close 1012), token (accept, close 4001: browsers cannot read a refused
upgrade's status, only 1006).
"""

from __future__ import annotations

import itertools
import logging
import secrets
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from switchboard.protocol import PROTOCOL_VERSION, codec, frames
from switchboard.protocol.codes import CloseCode, ErrorCode
from switchboard.protocol.errors import ProtocolError
from switchboard_gateway.auth import AuthError, verify_token
from switchboard_gateway.connection import Connection
from switchboard_gateway.node import Node
from switchboard_gateway.session import FrameHandler

log = logging.getLogger("switchboard.ws")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            header: str = value.decode("latin-1")
            return header
    return None


def _token(scope: Scope) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        token: str = query["token"][0]
        return token
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


class WebSocketEndpoint:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings = node.settings
        self.handler = FrameHandler(node)
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    def _origin_allowed(self, scope: Scope) -> bool:
        allowed = self.settings.allowed_origins
        origin = _header(scope, b"origin")
        return allowed is None or origin is None or origin.rstrip("/") in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = await receive()
        if event["type"] != "websocket.connect":
            return
        if not self._origin_allowed(scope):
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        if self.node.draining:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CloseCode.SERVICE_RESTART, "reason": "draining"})
            return
        try:
            principal = verify_token(_token(scope), self.settings.jwt_secret)
        except AuthError as exc:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CloseCode.UNAUTHORIZED, "reason": str(exc)[:120]})
            self.node.metrics.closes.labels(code="4001").inc()
            return
        await send({"type": "websocket.accept"})
        await self._serve(principal, receive, send)

    async def _serve(self, principal, receive: Receive, send: Send) -> None:  # type: ignore[no-untyped-def]
        s = self.settings
        node = self.node
        metrics = node.metrics
        conn = Connection(
            f"{self._id_prefix}-{next(self._ids)}",
            principal,
            send,
            rate=s.publish_rate,
            burst=s.publish_burst,
            abuse_errors=s.abuse_errors,
            queue_max=s.send_queue_max,
            queue_max_bytes=s.send_queue_max_bytes,
            on_close=lambda code: metrics.closes.labels(code=str(int(code))).inc(),
            fast_path=s.ws_fast_path,
        )
        node.add_connection(conn)
        try:
            conn.send_text(
                codec.encode(
                    frames.Welcome(session=conn.id, user=conn.user, node=node.name, protocol=PROTOCOL_VERSION)
                )
            )
            max_bytes = s.max_frame_bytes
            handle = self.handler.handle
            while True:
                event = await receive()
                if event["type"] != "websocket.receive":
                    break  # websocket.disconnect
                if conn.closing:
                    continue  # a close is under way: read until the peer's close
                text = event.get("text")
                if text is None:
                    self.handler.refuse(conn, ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not supported"))
                    continue
                # uvicorn enforces this before we see the frame (ws_max_size);
                # this covers servers that do not.
                if len(text) > max_bytes // 4 and len(text.encode()) > max_bytes:
                    await conn.close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
                    continue
                await handle(conn, text)
        finally:
            await node.remove_connection(conn)
