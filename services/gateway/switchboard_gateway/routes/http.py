"""HTTP routes: health, metrics, the server-side API, guest sign-in, the client."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from switchboard.protocol import codec, frames
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.errors import ProtocolError
from switchboard.protocol.frames import MAX_SAFE_INTEGER
from switchboard_gateway.guests import GuestNameError, GuestPolicy
from switchboard_gateway.limits import TrustedProxies
from switchboard_gateway.node import Node
from switchboard_gateway.routes.api import api_route
from switchboard_gateway.routes.api import error as _error
from switchboard_gateway.routes.tokens import guest_mint_refusal

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PRESENCE_LIMIT_DEFAULT = 1000  # users listed by GET /api/rooms/{room}/presence
PRESENCE_LIMIT_MAX = 10_000


SYSTEM_USER = frames.User("system", "system")
# HTTP status of a refused change (the error code is in the body).
_HTTP_STATUS = {ErrorCode.FORBIDDEN: 403, ErrorCode.LIMIT_EXCEEDED: 400}


class PublishBody(msgspec.Struct, forbid_unknown_fields=False):
    room: frames.Room
    text: frames.Text
    user: frames.User = msgspec.field(default_factory=lambda: SYSTEM_USER)
    client_msg_id: frames.ClientMsgId | None = None


_publish_decoder = msgspec.json.Decoder(PublishBody)


class GuestBody(msgspec.Struct, forbid_unknown_fields=False):
    name: object = None  # checked by GuestPolicy, which explains what is wrong


_guest_decoder = msgspec.json.Decoder(GuestBody)
GUEST_BODY_MAX_BYTES = 1024


class BodyTooLarge(Exception):
    pass


class BodyIncomplete(Exception):
    """The client went away (or was timed out) before sending its body."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (BodyTooLarge) as soon as it is known to be
    over `limit` bytes: from Content-Length before reading anything, else
    while it streams in. Never more than `limit` bytes are held."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyIncomplete from None
    return b"".join(chunks)


def _too_large(limit: int) -> JSONResponse:
    # Connection: close, so the server stops reading the rest of the body.
    response = _error(413, str(ErrorCode.TOO_LARGE), f"body is over {limit} bytes")
    response.headers["connection"] = "close"
    return response




def _raw_json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _int_param(request: Request, name: str, default: int | None, low: int, high: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if len(raw) > 20:
        raise ValueError(f"{name} out of range")
    value = int(raw)  # ValueError -> 400 by the caller
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} out of range")
    return value


def build_routes(node: Node) -> list[BaseRoute]:
    settings = node.settings
    guests = GuestPolicy(
        settings.jwt_secret, settings.guest_token_ttl_s, settings.guest_rooms, settings.guest_reserved_names
    )
    trusted = TrustedProxies(settings.forwarded_allow_ips)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if node.draining:
            return PlainTextResponse("draining", status_code=503)
        if not node.broker.available:
            return PlainTextResponse("backplane unavailable", status_code=503)
        return PlainTextResponse("ready")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    api = api_route(settings.api_key)

    @api
    async def api_publish(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_frame_bytes)
        except BodyTooLarge:
            return _too_large(settings.max_frame_bytes)
        except BodyIncomplete:
            return _error(400, str(ErrorCode.BAD_REQUEST), "incomplete body")
        try:
            payload = _publish_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, str(ErrorCode.BAD_REQUEST), str(exc))
        except RecursionError:
            return _error(400, str(ErrorCode.BAD_REQUEST), "JSON nested too deeply")
        if len(payload.text) > settings.max_text_chars:
            return _error(400, str(ErrorCode.TOO_LARGE), f"text is over {settings.max_text_chars} characters")
        ack = await node.publish(payload.user, payload.room, payload.text, payload.client_msg_id)
        return JSONResponse({"room": ack.room, "offset": ack.offset, "epoch": ack.epoch})

    @api
    async def api_history(request: Request) -> Response:
        room = request.path_params["room"]
        try:
            limit = _int_param(request, "limit", 50, 1, 100)
            before = _int_param(request, "before", None, 1, MAX_SAFE_INTEGER)
        except ValueError:
            return _error(400, str(ErrorCode.BAD_REQUEST), "limit must be 1..100 and before at least 1")
        view = request.query_params.get("view") or "log"
        if view not in ("log", "latest"):
            return _error(400, str(ErrorCode.BAD_REQUEST), "view must be log or latest")
        # ?user= says whose reactions are "me" in the latest view (the API key has no user).
        page = await node.history(room, before, limit or 50, view, request.query_params.get("user"))
        return _raw_json(codec.encode_bytes({"room": room, "epoch": page.epoch, "messages": page.messages}))

    @api
    async def api_delete_message(request: Request) -> Response:
        """A moderator's delete (protocol §11): logged like a member's, by `system`."""
        room = request.path_params["room"]
        raw = request.path_params["offset"]
        if not raw.isdigit() or len(raw) > 16 or not 1 <= int(raw) <= MAX_SAFE_INTEGER:
            return _error(400, str(ErrorCode.BAD_REQUEST), "the offset must be a positive integer")
        target = int(raw)
        body = frames.MessageBody(
            user=SYSTEM_USER, text="", ts=int(time.time() * 1000), kind="delete", target=target
        )
        try:
            ack = await node.append(room, body, None, moderator=True)
        except ProtocolError as exc:
            return _error(_HTTP_STATUS.get(exc.code, 400), str(exc.code), exc.message)
        return JSONResponse({"room": ack.room, "offset": ack.offset, "epoch": ack.epoch})

    @api
    async def api_presence(request: Request) -> Response:
        room = request.path_params["room"]
        try:
            limit = _int_param(request, "limit", PRESENCE_LIMIT_DEFAULT, 1, PRESENCE_LIMIT_MAX)
        except ValueError:
            return _error(400, str(ErrorCode.BAD_REQUEST), f"limit must be 1..{PRESENCE_LIMIT_MAX}")
        listing = await node.presence(room, limit or PRESENCE_LIMIT_DEFAULT)
        return _raw_json(codec.encode_bytes({"room": room, "members": listing.members, "count": listing.count}))

    async def guest(request: Request) -> Response:
        if not settings.allow_guests:
            return _error(404, "not_found", "guest sign-in is disabled")
        refused = await guest_mint_refusal(node, trusted, request)
        if refused is not None:
            return refused
        try:
            body = await read_body(request, GUEST_BODY_MAX_BYTES)
        except BodyTooLarge:
            return _too_large(GUEST_BODY_MAX_BYTES)
        except BodyIncomplete:
            return _error(400, str(ErrorCode.BAD_REQUEST), "incomplete body")
        try:
            name = guests.check_name(_guest_decoder.decode(body).name)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return _error(400, str(ErrorCode.BAD_REQUEST), 'expected a JSON object {"name": "..."}')
        except GuestNameError as exc:
            return _error(400, str(ErrorCode.BAD_REQUEST), str(exc))
        token, principal = guests.mint(name)
        return JSONResponse({"token": token, "user": {"id": principal.user_id, "name": principal.name}})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/publish", api_publish, methods=["POST"]),
        Route("/api/rooms/{room}/history", api_history),
        Route("/api/rooms/{room}/messages/{offset}", api_delete_message, methods=["DELETE"]),
        Route("/api/rooms/{room}/presence", api_presence),
        Route("/auth/guest", guest, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
