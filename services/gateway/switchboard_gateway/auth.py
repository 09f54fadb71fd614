"""Tokens: verify a client's JWT, check room permission, compare API keys.

Pure functions: no I/O, no Starlette. Guest tokens are made in ``guests``.

`verify_token` is a dedicated HS256 verifier, not PyJWT's ``jwt.decode``,
whose generic path (options merging, deprecation checks, the key scanned
for PEM/SSH/JWK shapes on every call, stdlib json) made it ~5x slower
(~29 against ~6 µs a call; ~10% of a connect's CPU). It accepts exactly
the tokens the former ``jwt.decode(token, secret, algorithms=["HS256"],
options={"require": ..., "verify_exp": False})`` accepted, with the same
claim checks (PyJWT 2.15.1, listed in `_check_header` and `_claims`);
tests/unit/test_auth_parity.py keeps PyJWT as the oracle. PyJWT still
prepares the key (once per secret) and mints tokens.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from switchboard.protocol.names import direct_allows, room_allowed

# A `rooms` claim is the app's, but it is matched on every join: bounded.
MAX_ROOM_PATTERNS = 256
MAX_ROOM_PATTERN_CHARS = 256

# Compact JWS: three base64url segments, each optionally '='-padded (PyJWT
# accepts the padding some issuers add). An explicit ASCII class: a str
# token's non-ASCII letters or digits are no base64url.
_COMPACT = re.compile(r"([A-Za-z0-9_-]*)(=*)\.([A-Za-z0-9_-]*)(=*)\.([A-Za-z0-9_-]*)(=*)")
# base64url to the standard alphabet, for binascii (the token is checked
# against the base64url alphabet first: nothing else is left to translate).
_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")
# The last character of an unpadded segment of length 4n+2 / 4n+3 carries
# 4 / 2 unused bits, which must be zero: one encoding per value, as PyJWT
# checks by re-encoding.
_CANONICAL_LAST = {2: b"AQgw", 3: b"AEIMQUYcgkosw048"}
_json_decode = msgspec.json.Decoder().decode


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


@functools.lru_cache(maxsize=8)
def _hmac_key(secret: str) -> hmac.HMAC | str:
    """A keyed HMAC-SHA256 to ``copy()``, or the reason (str) the secret is
    no HMAC key. PyJWT's own ``prepare_key`` decides (empty, PEM, SSH or
    JWK-shaped secrets are refused), but once per secret, not per token.
    (PyJWT's per-call warning about keys under 32 bytes is not repeated:
    settings refuse such a JWT_SECRET at startup.)"""
    try:
        key = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except InvalidKeyError:
        return "JWT_SECRET is not usable as an HMAC key"
    return hmac.new(key, digestmod=hashlib.sha256)


def _segment(standard: bytes, padding: int) -> bytes:
    """A base64url segment (already in the standard alphabet), checked as
    PyJWT checks it: at most two '=' and only completing a multiple of 4,
    no length 4n+1, a canonical last character."""
    size = len(standard)
    rem = size % 4
    if padding > 2 or (padding and (size + padding) % 4) or rem == 1:
        raise AuthError("invalid token: bad base64url padding")
    if rem and standard[-1] not in _CANONICAL_LAST[rem]:
        raise AuthError("invalid token: bad base64url padding")
    return binascii.a2b_base64(standard + b"=" * (-size % 4))


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = _json_decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # msgspec takes strict UTF-8 JSON only. PyJWT (stdlib json) also
        # took NaN, Infinity, 1e400, lone surrogates, a BOM, UTF-16/32: ask
        # stdlib before refusing, so the accepted set stays PyJWT's. Every
        # input msgspec accepts, stdlib accepts with the same value.
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise AuthError(f"invalid token: {what} is not JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"invalid token: {what} is not a JSON object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    """PyJWT's header rules for this call. `typ` is not looked at (PyJWT
    does not either; RFC 7519 §5.1 makes it optional)."""
    if header.get("alg") != "HS256":  # also "none", absent, any other alg
        raise AuthError("invalid token: alg must be HS256")
    if "kid" in header and not isinstance(header["kid"], str):
        raise AuthError("invalid token: kid must be a string")
    if "crit" in header:
        # RFC 7515 §4.1.11: refuse extensions not understood. PyJWT
        # understands only b64 (RFC 7797), and b64=true is the default.
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or any(ext != "b64" for ext in crit) or "b64" not in header:
            raise AuthError("invalid token: unsupported crit header")
    if header.get("b64", True) is False:  # a detached payload: never ours
        raise AuthError("invalid token: b64=false is not supported")


def _int_time(claims: dict[str, Any], claim: str) -> int:
    """`iat` and `nbf` as PyJWT reads them: ``int()`` of the value (so a
    float is truncated and a numeric string is taken)."""
    try:
        return int(claims[claim])
    except (ValueError, TypeError, OverflowError):
        raise AuthError(f"invalid token: {claim} must be an integer") from None


def _claims(claims: dict[str, Any], now: float, exp_required: bool) -> None:
    """PyJWT's claim checks for the former call (require sub [+ exp],
    verify_exp off, no audience, issuer or subject expected, leeway 0)."""
    if claims.get("sub") is None:
        raise AuthError('invalid token: the "sub" claim is required')
    if exp_required and claims.get("exp") is None:
        raise AuthError('invalid token: the "exp" claim is required')
    if "iat" in claims and _int_time(claims, "iat") > now:
        raise AuthError("invalid token: not yet valid (iat)")
    if "nbf" in claims and _int_time(claims, "nbf") > now:
        raise AuthError("invalid token: not yet valid (nbf)")
    if claims.get("aud"):  # an audience while none is expected (an empty one is ignored)
        raise AuthError("invalid token: unexpected audience")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise AuthError("invalid token: jti must be a string")


def _split(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    """The decoded header, payload and signature of a compact token, and its
    signing input (everything before the last '.', padding included)."""
    match = _COMPACT.fullmatch(token)
    if match is None:
        raise AuthError("invalid token: not three base64url segments")
    raw = token.encode("ascii")  # ASCII: the pattern matched
    standard = raw.translate(_STANDARD_ALPHABET)
    start, end = match.start, match.end
    return (
        _segment(standard[: end(1)], end(2) - start(2)),
        _segment(standard[start(3) : end(3)], end(4) - start(4)),
        _segment(standard[start(5) : end(5)], end(6) - start(6)),
        raw[: end(4)],
    )


def _decode(token: str, secret: str) -> dict[str, Any]:
    """The claims of a well-formed HS256 token signed with `secret`."""
    header_raw, payload_raw, signature, signing_input = _split(token)
    keyed = _hmac_key(secret)
    if isinstance(keyed, str):
        raise AuthError(f"invalid token: {keyed}")
    mac = keyed.copy()
    mac.update(signing_input)
    # The signature first: nothing of an unsigned token is parsed as JSON.
    if not hmac.compare_digest(signature, mac.digest()):
        raise AuthError("invalid token: signature verification failed")
    _check_header(_json_object(header_raw, "header"))
    return _json_object(payload_raw, "payload")


def verify_token(
    token: str | None, secret: str, now: float | None = None, max_lifetime_s: float = 0.0
) -> Principal:
    """The principal of a valid token. With `max_lifetime_s` > 0 (the
    gateway's MAX_TOKEN_LIFETIME), `exp` is required and may lie at most that
    far in the future: a leaked token is not valid forever. `now` is the
    clock of every time claim (exp, nbf, iat)."""
    if not token:
        raise AuthError("missing token")
    claims = _decode(token, secret)
    now = time.time() if now is None else now
    _claims(claims, now, max_lifetime_s > 0)
    exp = claims.get("exp")
    expires_at: float | None = None
    if exp is not None:
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise AuthError("invalid token: exp is not a number")
        if isinstance(exp, float) and not math.isfinite(exp):  # NaN passes every comparison below
            raise AuthError("invalid token: exp is not a finite number")
        if exp <= now:
            raise AuthError("token expired")
        try:
            if max_lifetime_s > 0 and exp - now > max_lifetime_s:
                raise AuthError("invalid token: exp is further away than MAX_TOKEN_LIFETIME")
            expires_at = float(exp)
        except OverflowError:  # an integer beyond any float (the former code let this escape)
            raise AuthError("invalid token: exp is out of range") from None
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
    return Principal(sub, name[:64], rooms, expires_at)


def bearer_matches(header: str | None, key: str | None) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <key>``.

    Compared as bytes: ``hmac.compare_digest`` raises TypeError on non-ASCII
    str, and a header may hold any latin-1 byte."""
    if not key or not header or header[:7].lower() != "bearer ":
        return False
    given = header[7:].strip().encode("latin-1", "replace")
    return hmac.compare_digest(given, key.encode())
