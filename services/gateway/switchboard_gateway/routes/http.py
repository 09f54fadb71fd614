"""HTTP routes: health, metrics, the server-side API, guest sign-in, the client."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from switchboard.protocol import codec, frames
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.names import is_valid_room
from switchboard_gateway.auth import issue_guest_token, valid_guest_name
from switchboard_gateway.broker import BrokerUnavailable
from switchboard_gateway.node import Node

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PRESENCE_LIMIT_DEFAULT = 1000  # users listed by GET /api/rooms/{room}/presence
PRESENCE_LIMIT_MAX = 10_000


class PublishBody(msgspec.Struct, forbid_unknown_fields=False):
    room: frames.Room
    text: frames.Text
    user: frames.User = msgspec.field(default_factory=lambda: frames.User("system", "system"))
    client_msg_id: frames.ClientMsgId | None = None


_publish_decoder = msgspec.json.Decoder(PublishBody)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _raw_json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _int_param(request: Request, name: str, default: int | None, low: int, high: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)  # ValueError -> 400 by the caller
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} out of range")
    return value


def build_routes(node: Node) -> list:
    settings = node.settings

    def authorized(request: Request) -> bool:
        if not settings.api_key:
            return False  # no key configured: the API is closed
        auth = request.headers.get("authorization", "")
        return auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip(), settings.api_key)

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

    def api(handler):  # type: ignore[no-untyped-def]
        """The API key check, room-name check and `unavailable` mapping every
        /api route shares."""

        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return _error(401, "unauthorized", "a valid API key is required")
            room = request.path_params.get("room")
            if room is not None and not is_valid_room(room):
                return _error(400, str(ErrorCode.BAD_REQUEST), "bad room name")
            try:
                return await handler(request)
            except BrokerUnavailable:
                return _error(503, str(ErrorCode.UNAVAILABLE), "the backplane is unavailable; retry")

        return endpoint

    @api
    async def api_publish(request: Request) -> Response:
        body = await request.body()
        if len(body) > settings.max_frame_bytes:
            return _error(413, str(ErrorCode.TOO_LARGE), f"body is over {settings.max_frame_bytes} bytes")
        try:
            payload = _publish_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, str(ErrorCode.BAD_REQUEST), str(exc))
        if len(payload.text) > settings.max_text_chars:
            return _error(400, str(ErrorCode.TOO_LARGE), f"text is over {settings.max_text_chars} characters")
        ack = await node.publish(payload.user, payload.room, payload.text, payload.client_msg_id)
        return JSONResponse({"room": ack.room, "offset": ack.offset, "epoch": ack.epoch})

    @api
    async def api_history(request: Request) -> Response:
        room = request.path_params["room"]
        try:
            limit = _int_param(request, "limit", 50, 1, 100)
            before = _int_param(request, "before", None, 1, None)
        except ValueError:
            return _error(400, str(ErrorCode.BAD_REQUEST), "limit must be 1..100 and before at least 1")
        page = await node.history(room, before, limit or 50)
        return _raw_json(codec.encode_bytes({"room": room, "epoch": page.epoch, "messages": page.messages}))

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
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _error(400, str(ErrorCode.BAD_REQUEST), "expected a JSON body")
        name = payload.get("name") if isinstance(payload, dict) else None
        if not valid_guest_name(name):
            return _error(400, str(ErrorCode.BAD_REQUEST), "name: 1-32 letters, digits, spaces, . ' _ -")
        token, principal = issue_guest_token(name, settings.jwt_secret, settings.guest_token_ttl_s)
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
        Route("/api/rooms/{room}/presence", api_presence),
        Route("/auth/guest", guest, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
