"""What every ``/api`` route shares: the JSON error body, the API key and
room-name checks, and how backplane and hook failures are answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.names import is_valid_room
from switchboard_gateway.auth import bearer_matches
from switchboard_gateway.broker import BrokerOutcomeUnknown, BrokerUnavailable
from switchboard_gateway.publish_hook import HookRejected, HookUnavailable

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """A request a handler refuses with 400 and this message."""


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def api_route(api_key: str | None) -> Callable[[Handler], Handler]:
    """The decorator of every /api handler. No key configured: the API is closed."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not bearer_matches(request.headers.get("authorization"), api_key):
                return error(401, "unauthorized", "a valid API key is required")
            room = request.path_params.get("room")
            if room is not None and not is_valid_room(room):
                return error(400, str(ErrorCode.BAD_REQUEST), "bad room name")
            try:
                return await handler(request)
            except BadRequest as exc:
                return error(400, str(ErrorCode.BAD_REQUEST), str(exc))
            except HookRejected as exc:
                return error(422, str(ErrorCode.REJECTED), exc.message)
            except HookUnavailable as exc:
                return error(503, str(ErrorCode.UNAVAILABLE), f"{exc}; nothing was stored; retry")
            except BrokerOutcomeUnknown:
                return error(
                    503,
                    str(ErrorCode.OUTCOME_UNKNOWN),
                    "the backplane did not answer: the change may be stored; retry with the same client_msg_id",
                )
            except BrokerUnavailable:
                return error(503, str(ErrorCode.UNAVAILABLE), "the backplane is unavailable; nothing was changed; retry")

        return endpoint

    return wrap
