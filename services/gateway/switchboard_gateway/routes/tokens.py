"""``POST /auth/guest/refresh``: a guest's fresh token, for the same user.

A guest token is short-lived (GUEST_TOKEN_TTL); signing in again would make
a new guest (a new user id), which a connection's ``refresh`` refuses. With
``Authorization: Bearer <the current, still valid guest token>`` this route
answers ``{"token","user","exp"}`` for the same id and name, and the browser
client sends it in a ``refresh`` frame before the old one expires. Only while
ALLOW_GUESTS=true (else 404), rate-limited per address like sign-in.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from switchboard.protocol.codes import ErrorCode
from switchboard_gateway.auth import AuthError, verify_token
from switchboard_gateway.broker import BrokerUnavailable
from switchboard_gateway.guests import GuestNameError, GuestPolicy
from switchboard_gateway.limits import TrustedProxies
from switchboard_gateway.node import Node
from switchboard_gateway.routes.api import error as _error


async def guest_mint_refusal(node: Node, trusted: TrustedProxies, request: Request) -> Response | None:
    """The answer refusing a guest token to this address (over its per-minute
    budget, or the backplane holding it is down), or None to go on. Every
    guest is a new user id, so per-user limits alone would not stop one
    address from minting its way around them."""
    address = request.client.host if request.client else None
    if trusted.exempt(address):
        return None
    per_minute = node.settings.guest_mints_per_minute
    try:
        _, wait_s = await node.broker.take_tokens(f"ip:{address}", "guest", per_minute / 60, per_minute)
    except BrokerUnavailable:
        return _error(503, str(ErrorCode.UNAVAILABLE), "the backplane is unavailable; retry")
    if not wait_s:
        return None
    response = _error(429, str(ErrorCode.RATE_LIMITED), "too many guest sign-ins from your address")
    response.headers["retry-after"] = str(max(1, round(wait_s)))
    return response


def build_token_routes(node: Node) -> list[BaseRoute]:
    settings = node.settings
    guests = GuestPolicy(
        settings.jwt_secret, settings.guest_token_ttl_s, settings.guest_rooms, settings.guest_reserved_names
    )
    trusted = TrustedProxies(settings.forwarded_allow_ips)

    async def refresh_guest(request: Request) -> Response:
        if not settings.allow_guests:
            return _error(404, "not_found", "guest sign-in is disabled")
        refused = await guest_mint_refusal(node, trusted, request)
        if refused is not None:
            return refused
        header = request.headers.get("authorization") or ""
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        try:
            principal = verify_token(token, settings.jwt_secret, max_lifetime_s=settings.max_token_lifetime_s)
            fresh, renewed = guests.renew(principal)
        except (AuthError, GuestNameError) as exc:
            return _error(401, "unauthorized", f"a valid guest token is required ({exc})")
        assert renewed.expires_at is not None
        return JSONResponse(
            {
                "token": fresh,
                "user": {"id": renewed.user_id, "name": renewed.name},
                "exp": int(renewed.expires_at),
            }
        )

    return [Route("/auth/guest/refresh", refresh_guest, methods=["POST"])]
