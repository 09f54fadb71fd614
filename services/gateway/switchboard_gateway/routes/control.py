"""The user control API (docs/protocol.md "User control"), API key required:

- ``POST /api/users/{user}/disconnect`` ``{"reason"?, "ban_seconds"?}``
- ``POST /api/rooms/{room}/remove`` ``{"user", "ban_seconds"?}``
- ``GET /api/rooms?prefix=&limit=`` -> ``{"rooms": [{"room", "count"}]}``

A command is published on the backplane's control channel and applied by
every gateway (``switchboard_gateway.control``); a ban is stored first.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from switchboard.protocol.names import is_valid_room
from switchboard_gateway import control
from switchboard_gateway.node import Node
from switchboard_gateway.routes.api import BadRequest, api_route
from switchboard_gateway.routes.http import BodyIncomplete, BodyTooLarge, read_body

T = TypeVar("T")

BODY_MAX_BYTES = 4096
USER_ID_MAX_CHARS = 1024
BAN_MAX_S = 10 * 366 * 86400  # ten years: "for good", without overflowing a TTL
ROOMS_LIMIT_DEFAULT = 100
ROOMS_LIMIT_MAX = 1000



class DisconnectBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None
    ban_seconds: float | None = None


class RemoveBody(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    ban_seconds: float | None = None


_disconnect_decoder = msgspec.json.Decoder(DisconnectBody)
_remove_decoder = msgspec.json.Decoder(RemoveBody)


def _check_user(user: str) -> str:
    if not user or len(user) > USER_ID_MAX_CHARS:
        raise BadRequest(f"user must be a user id of 1-{USER_ID_MAX_CHARS} characters")
    return user


def _check_ban(seconds: float | None) -> float | None:
    if seconds is not None and not 0 < seconds <= BAN_MAX_S:
        raise BadRequest(f"ban_seconds must be above 0 and at most {BAN_MAX_S}")
    return seconds


async def _decode(request: Request, decoder: msgspec.json.Decoder[T]) -> T:
    try:
        body = await read_body(request, BODY_MAX_BYTES)
    except BodyTooLarge:
        raise BadRequest(f"body is over {BODY_MAX_BYTES} bytes") from None
    except BodyIncomplete:
        raise BadRequest("incomplete body") from None
    try:
        return decoder.decode(body or b"{}")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadRequest(str(exc)) from None
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None


def build_control_routes(node: Node) -> list[BaseRoute]:
    settings = node.settings
    broker = node.broker

    api = api_route(settings.api_key)

    @api
    async def disconnect(request: Request) -> Response:
        user = _check_user(request.path_params["user"])
        body = await _decode(request, _disconnect_decoder)
        ban_seconds = _check_ban(body.ban_seconds)
        reason = body.reason or (control.BANNED_REASON if ban_seconds else control.DEFAULT_DISCONNECT_REASON)
        if ban_seconds:  # first: a reconnect racing the command is refused too
            await broker.ban(user, ban_seconds)
        await broker.publish_control(control.encode(control.Disconnect(user=user, reason=control.close_reason(reason))))
        return JSONResponse({"user": user, "ban_seconds": ban_seconds or 0})

    @api
    async def remove(request: Request) -> Response:
        room = request.path_params["room"]
        body = await _decode(request, _remove_decoder)
        user = _check_user(body.user)
        ban_seconds = _check_ban(body.ban_seconds)
        if ban_seconds:
            await broker.ban(user, ban_seconds, room=room)
        await broker.publish_control(control.encode(control.Remove(user=user, room=room)))
        return JSONResponse({"room": room, "user": user, "ban_seconds": ban_seconds or 0})

    @api
    async def rooms(request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        if prefix and not is_valid_room(prefix):
            raise BadRequest("prefix must be the start of a room name (letters, digits, _ . : -)")
        raw_limit = request.query_params.get("limit", "")
        try:
            limit = int(raw_limit) if raw_limit else ROOMS_LIMIT_DEFAULT
        except ValueError:
            limit = 0
        if not 1 <= limit <= ROOMS_LIMIT_MAX:
            raise BadRequest(f"limit must be 1..{ROOMS_LIMIT_MAX}")
        listing = await broker.active_rooms(prefix, limit)
        return JSONResponse({"rooms": [{"room": room, "count": count} for room, count in listing]})

    return [
        Route("/api/users/{user}/disconnect", disconnect, methods=["POST"]),
        Route("/api/rooms/{room}/remove", remove, methods=["POST"]),
        Route("/api/rooms", rooms, methods=["GET"]),
    ]
