"""Tokens: verify a client's JWT, check room permission, compare API keys.

Pure functions: no I/O, no Starlette. Guest tokens are made in ``guests``.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt

from switchboard.protocol.names import direct_allows, room_allowed

_ALGORITHMS = ["HS256"]
# A `rooms` claim is the app's, but it is matched on every join: bounded.
MAX_ROOM_PATTERNS = 256
MAX_ROOM_PATTERN_CHARS = 256


class AuthError(Exception):
    """The token is missing, malformed, badly signed or expired."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str
    rooms: tuple[str, ...] | None  # glob patterns from the `rooms` claim; None = any room
    expires_at: float | None  # unix seconds

    def may_join(self, room: str) -> bool:
        direct = direct_allows(room, self.user_id)  # a direct room: its two users, whatever the claim
        return room_allowed(room, self.rooms) if direct is None else direct


def verify_token(
    token: str | None, secret: str, now: float | None = None, max_lifetime_s: float = 0.0
) -> Principal:
    """The principal of a valid token. With `max_lifetime_s` > 0 (the
    gateway's MAX_TOKEN_LIFETIME), `exp` is required and may lie at most that
    far in the future: a leaked token is not valid forever."""
    if not token:
        raise AuthError("missing token")
    require = ["sub", "exp"] if max_lifetime_s > 0 else ["sub"]
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=_ALGORITHMS,
            options={"require": require, "verify_exp": False},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    now = time.time() if now is None else now
    exp = claims.get("exp")
    if exp is None and max_lifetime_s > 0:
        raise AuthError('invalid token: the "exp" claim is required')
    if exp is not None:
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise AuthError("invalid token: exp is not a number")
        if exp <= now:
            raise AuthError("token expired")
        if max_lifetime_s > 0 and exp - now > max_lifetime_s:
            raise AuthError("invalid token: exp is further away than MAX_TOKEN_LIFETIME")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token: sub must be a non-empty string")
    name = claims.get("name", sub)
    if not isinstance(name, str) or not name:
        name = sub
    rooms = claims.get("rooms")
    if rooms is not None:
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise AuthError("invalid token: rooms must be a list of strings")
        if len(rooms) > MAX_ROOM_PATTERNS or any(len(r) > MAX_ROOM_PATTERN_CHARS for r in rooms):
            raise AuthError(
                f"invalid token: rooms holds at most {MAX_ROOM_PATTERNS} patterns of {MAX_ROOM_PATTERN_CHARS} characters"
            )
        rooms = tuple(rooms)
    return Principal(sub, name[:64], rooms, float(exp) if exp is not None else None)


def bearer_matches(header: str | None, key: str | None) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <key>``.

    Compared as bytes: ``hmac.compare_digest`` raises TypeError on non-ASCII
    str, and a header may hold any latin-1 byte."""
    if not key or not header or header[:7].lower() != "bearer ":
        return False
    given = header[7:].strip().encode("latin-1", "replace")
    return hmac.compare_digest(given, key.encode())
