"""``/ws``: a plain ASGI callable, not Starlette's ``WebSocket`` wrapper (which
costs ~5 KB per connection, see docs/performance.md).

Order of checks (contract): origin (403 before accept), draining (accept,
close 1012), token (accept, close 4001: browsers cannot read a refused
upgrade's status, only 1006). Limits (docs/security.md) refuse politely,
accept then close 1013 "try again later": MAX_CONNECTIONS_PER_IP before the
token is even verified, MAX_CONNECTIONS_PER_USER (cluster-wide) after it.
A user banned by the user control API is accepted, then closed 4003, right
after the token check.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from switchboard.protocol import PROTOCOL_VERSION, codec, frames
from switchboard.protocol.codes import CloseCode, ErrorCode
from switchboard.protocol.errors import ProtocolError
from switchboard_gateway.auth import AuthError, Principal, verify_token
from switchboard_gateway.broker import BrokerUnavailable
from switchboard_gateway.connection import Connection
from switchboard_gateway.control import BANNED_REASON
from switchboard_gateway.limits import AddressCounter, TrustedProxies
from switchboard_gateway.node import Node
from switchboard_gateway.origins import normalize_origin
from switchboard_gateway.session import FrameHandler
from switchboard_gateway.userlimits import UserLimits

log = logging.getLogger("switchboard.ws")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            header: str = value.decode("latin-1")
            return header
    return None


def query_token(query_string: bytes) -> str | None:
    """The first non-empty ``token`` value of a query string, decoded as
    ``parse_qs`` decodes it ('+' a space, %-escapes as UTF-8 with
    replacement), without building the dict of every field: parse_qs cost
    ~4% of a connect."""
    if not query_string:
        return None
    for field in query_string.decode("latin-1").split("&"):
        name, eq, value = field.partition("=")
        if not eq or not value:  # parse_qs drops fields without '=' and blank values
            continue
        # parse_qs reads a name as unquote(name.replace("+", " ")): a '+'
        # leaves a '+' or ' ' either way, never "token", so it is not replaced.
        if name == "token" or ("%" in name and unquote(name) == "token"):
            return unquote(value.replace("+", " "))
    return None


def _token(scope: Scope) -> str | None:
    token = query_token(scope.get("query_string", b""))
    if token:
        return token
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


async def _refuse(send: Send, code: int, reason: str) -> None:
    """Accept, then close at once: a browser sees the code and the reason."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": int(code), "reason": reason})


class WebSocketEndpoint:
    def __init__(self, node: Node, limits: UserLimits) -> None:
        self.node = node
        self.settings = node.settings
        self.limits = limits
        self.handler = FrameHandler(node, limits)
        self.addresses = AddressCounter(
            self.settings.max_connections_per_ip, TrustedProxies(self.settings.forwarded_allow_ips).exempt
        )
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    def _origin_allowed(self, scope: Scope) -> bool:
        allowed = self.settings.allowed_origins
        origin = _header(scope, b"origin")
        return allowed is None or origin is None or normalize_origin(origin) in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = await receive()
        if event["type"] != "websocket.connect":
            return
        if not self._origin_allowed(scope):
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        if self.node.draining:
            await _refuse(send, CloseCode.SERVICE_RESTART, "draining")
            return
        client = scope.get("client")
        address = client[0] if client else None
        if not self.addresses.acquire(address):
            await _refuse(send, CloseCode.TRY_AGAIN_LATER, "too many connections from your address")
            self.node.metrics.refused.labels(reason="address").inc()
            return
        try:
            await self._authenticate(scope, receive, send)
        finally:
            self.addresses.release(address)

    async def _authenticate(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = verify_token(
                _token(scope), self.settings.jwt_secret, max_lifetime_s=self.settings.max_token_lifetime_s
            )
        except AuthError as exc:
            await _refuse(send, CloseCode.UNAUTHORIZED, str(exc)[:120])
            self.node.metrics.closes.labels(code="4001").inc()
            return
        if await self._banned(principal.user_id):
            await _refuse(send, CloseCode.KICKED, BANNED_REASON)
            self.node.metrics.refused.labels(reason="banned").inc()
            return
        conn_id = f"{self._id_prefix}-{next(self._ids)}"
        if not await self.limits.claim_connection(principal.user_id, conn_id):
            await _refuse(send, CloseCode.TRY_AGAIN_LATER, "too many connections for this user")
            self.node.metrics.refused.labels(reason="user").inc()
            return
        try:
            await send({"type": "websocket.accept"})
            await self._serve(conn_id, principal, receive, send)
        finally:
            await self.limits.release_connection(principal.user_id, conn_id)

    async def _banned(self, user_id: str) -> bool:
        """Banned by the user control API. Without the backplane nobody is
        refused for it (nothing else would work either)."""
        try:
            return await self.node.broker.banned(user_id) > 0
        except BrokerUnavailable:
            return False

    async def _serve(self, conn_id: str, principal: Principal, receive: Receive, send: Send) -> None:
        s = self.settings
        node = self.node
        metrics = node.metrics
        conn = Connection(
            conn_id,
            principal,
            send,
            rate=s.publish_rate,
            burst=s.publish_burst,
            frame_rate=s.frame_rate,
            frame_burst=s.frame_burst,
            typing_rate=s.typing_rate,
            typing_burst=s.typing_burst,
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
                    frames.Welcome(
                        session=conn.id,
                        user=conn.user,
                        node=node.name,
                        protocol=PROTOCOL_VERSION,
                        exp=int(principal.expires_at) if principal.expires_at is not None else None,
                    )
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
