"""Tokens: verify a client's JWT, issue guest tokens, check room permission.

Pure functions: no I/O, no Starlette.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import jwt

from switchboard.protocol.names import room_allowed

_ALGORITHMS = ["HS256"]
_GUEST_NAME = re.compile(r"^[\w .'-]{1,32}$")


class AuthError(Exception):
    """The token is missing, malformed, badly signed or expired."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str
    rooms: tuple[str, ...] | None  # glob patterns from the `rooms` claim; None = any room
    expires_at: float | None  # unix seconds

    def may_join(self, room: str) -> bool:
        return room_allowed(room, self.rooms)


def verify_token(token: str | None, secret: str, now: float | None = None) -> Principal:
    if not token:
        raise AuthError("missing token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=_ALGORITHMS,
            options={"require": ["sub"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    exp = claims.get("exp")
    if exp is not None:
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise AuthError("invalid token: exp is not a number")
        if exp <= (time.time() if now is None else now):
            raise AuthError("token expired")
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
        rooms = tuple(rooms)
    return Principal(sub, name[:64], rooms, float(exp) if exp is not None else None)


def valid_guest_name(name: object) -> bool:
    return isinstance(name, str) and _GUEST_NAME.match(name.strip()) is not None


def issue_guest_token(name: str, secret: str, ttl_s: float) -> tuple[str, Principal]:
    """A short-lived token for a guest; the id is ``guest:<name>-<random>``."""
    name = name.strip()
    user_id = f"guest:{name}-{secrets.token_hex(3)}"
    expires_at = int(time.time() + ttl_s)
    token = jwt.encode({"sub": user_id, "name": name, "exp": expires_at}, secret, algorithm="HS256")
    return token, Principal(user_id, name, None, float(expires_at))
