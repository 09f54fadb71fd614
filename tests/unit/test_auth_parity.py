"""verify_token against PyJWT: the former implementation (``jwt.decode``,
kept here verbatim as the oracle) and the dedicated HS256 verifier must
accept and refuse the same tokens, with the same Principal.

Tokens are built by hand (not with ``jwt.encode``, which fixes up headers) so
that headers, payload bytes, padding and signatures can be anything. Both
sides see the same clock: PyJWT's (``datetime.now`` in ``jwt.api_jwt``, which
the former code used for iat/nbf) is pinned to the `now` both are given.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import hmac
import json
import math
import time
import warnings
from datetime import datetime, tzinfo
from typing import Any
from unittest import mock

import jwt
import jwt.api_jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from switchboard_gateway import auth
from switchboard_gateway.auth import AuthError, Principal, verify_token

SECRET = "parity-test-secret-0123456789abcdef-xyz"
KEY = SECRET.encode()
NOW = 1_800_000_000.0
DAY = 86400.0


# --- the oracle: the former verify_token, unchanged but for the pinned clock -------------


def _former_verify_token(token: str | None, secret: str, now: float | None = None, max_lifetime_s: float = 0.0) -> Principal:
    if not token:
        raise AuthError("missing token")
    require = ["sub", "exp"] if max_lifetime_s > 0 else ["sub"]
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
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
        # The one deliberate change: the former code took a NaN or infinite
        # exp (a NaN passed MAX_TOKEN_LIFETIME and broke `refresh`).
        if isinstance(exp, float) and not math.isfinite(exp):
            raise AuthError("invalid token: exp is not a finite number")
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
        if len(rooms) > auth.MAX_ROOM_PATTERNS or any(len(r) > auth.MAX_ROOM_PATTERN_CHARS for r in rooms):
            raise AuthError("invalid token: rooms holds too many or too long patterns")
        rooms = tuple(rooms)
    return Principal(sub, name[:64], rooms, float(exp) if exp is not None else None)


def _pinned(now: float) -> type[datetime]:
    class Pinned(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Pinned:
            return cls.fromtimestamp(now, tz)

    return Pinned


# What the former code did with inputs it did not turn into an AuthError:
# a str token with a lone surrogate (UnicodeEncodeError in PyJWT; no such
# token reaches it: the query is decoded with errors="replace", the header as
# latin-1, frames by msgspec which refuses lone surrogates) and an integer
# exp beyond any float (OverflowError). The new verifier refuses both.
FORMER_CRASHES = (UnicodeEncodeError, OverflowError)


def former(token: str | None, secret: str, now: float, max_lifetime_s: float) -> Principal | str:
    """The former verdict: a Principal, "refused", or the crash's name."""
    try:
        with mock.patch.object(jwt.api_jwt, "datetime", _pinned(now)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyJWT warns about short keys on every call
            return _former_verify_token(token, secret, now=now, max_lifetime_s=max_lifetime_s)
    except AuthError:
        return "refused"
    except FORMER_CRASHES as exc:
        return type(exc).__name__


def current(token: str | None, secret: str, now: float, max_lifetime_s: float) -> Principal | str:
    try:
        return verify_token(token, secret, now=now, max_lifetime_s=max_lifetime_s)
    except AuthError as exc:
        assert str(exc) and len(str(exc)) <= 120, exc  # a short reason for the 4001 close
        return "refused"


def same(a: Principal | str, b: Principal | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    nan = a.expires_at is not None and b.expires_at is not None and math.isnan(a.expires_at)
    return (a.user_id, a.name, a.rooms) == (b.user_id, b.name, b.rooms) and (
        (nan and math.isnan(b.expires_at or 0.0)) or (a.expires_at == b.expires_at and type(a.expires_at) is type(b.expires_at))
    )


def assert_parity(token: str | None, secret: str, now: float, max_lifetime_s: float) -> Principal | str:
    expected = former(token, secret, now, max_lifetime_s)
    got = current(token, secret, now, max_lifetime_s)
    if expected in {cls.__name__ for cls in FORMER_CRASHES}:
        assert got == "refused", (token, expected, got)
    else:
        assert same(expected, got), (token, expected, got)
    return got


# --- building tokens by hand --------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def signed(header: bytes, payload: bytes, key: bytes, pad: tuple[bool, bool, bool] = (False, False, False)) -> str:
    head = padded(b64(header)) if pad[0] else b64(header)
    body = padded(b64(payload)) if pad[1] else b64(payload)
    signing_input = f"{head}.{body}"
    sig = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{padded(sig) if pad[2] else sig}"


def dumps(value: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


# --- strategies ---------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5
)
clocks = st.one_of(st.integers(1_000_000_000, 2_000_000_000), st.integers(1_000_000_000, 2_000_000_000).map(lambda t: t + 0.5))
lifetimes = st.sampled_from([0.0, DAY, 60.0])
ABSENT = object()


def times(now: float) -> st.SearchStrategy[Any]:
    """Time claim values around `now` and of every odd kind PyJWT meets."""
    offsets = st.sampled_from([-DAY, -1, -0.5, 0, 0.25, 0.5, 1, 59, 60, 61, DAY - 1, DAY, DAY + 1, 10 * DAY])
    return st.one_of(
        offsets.map(lambda d: now + d),
        offsets.map(lambda d: int(now + d)),
        offsets.map(lambda d: str(int(now + d))),  # PyJWT's int() takes a numeric string for iat/nbf
        st.sampled_from([None, "soon", " 12 ", "1_000", "1e3", "", "nan", 10**400, -(10**400), 2**63, 2**64 + 1]),
        st.floats(),  # nan and inf too: json.dumps writes NaN / Infinity, stdlib json reads them
        json_values,
    )


@st.composite
def claim_sets(draw: st.DrawFn, now: float) -> dict[str, Any]:
    """Each claim absent, sound (most often) or odd."""
    short_text = st.text(min_size=1, max_size=8)
    ahead = st.sampled_from([1, 60, 3600, DAY - 1]).map(lambda d: now + d)
    behind = st.sampled_from([0, 1, 0.5, 3600]).map(lambda d: int(now - d))
    pools: dict[str, tuple[float, st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
        # claim: (how often present, sound values, odd values)
        "sub": (0.97, short_text, st.one_of(st.sampled_from(["", "\ud800", "a\x00b"]), json_values)),
        "name": (0.5, short_text, st.one_of(st.text(min_size=60, max_size=70), json_values)),
        "exp": (0.8, ahead, times(now)),
        "iat": (0.3, behind, times(now)),
        "nbf": (0.3, behind, times(now)),
        "aud": (0.2, st.sampled_from(["", [], 0, False, None, {}]), st.one_of(st.sampled_from(["app", ["app"], 1]), json_values)),
        "iss": (0.2, short_text, json_values),
        "jti": (0.2, short_text, json_values),
        "rooms": (
            0.3,
            st.lists(st.text(max_size=6), max_size=4),
            st.one_of(st.sampled_from([["r"] * 256, ["r"] * 257, ["r" * 256], ["r" * 257], "lobby", ["a", None]]), json_values),
        ),
        "extra": (0.2, json_values, json_values),
    }
    claims: dict[str, Any] = {}
    for key, (present, sound, odd) in pools.items():
        if draw(st.floats(0, 1)) < present:
            claims[key] = draw(sound if draw(st.floats(0, 1)) < 0.7 else odd)
    return claims


@st.composite
def headers(draw: st.DrawFn) -> dict[str, Any]:
    header: dict[str, Any] = {}
    alg = draw(
        st.one_of(
            st.just("HS256"),
            st.just("HS256"),
            st.just("HS256"),
            st.sampled_from([ABSENT, "none", "None", "NONE", "", "HS384", "HS512", "RS256", "ES256", "hs256", "HS256 ", None]),
            json_values,
        )
    )
    if alg is not ABSENT:
        header["alg"] = alg
    extras: dict[str, st.SearchStrategy[Any]] = {
        "typ": st.sampled_from(["JWT", "jwt", "at+jwt", "", 1, None]),
        "kid": st.one_of(st.text(max_size=4), json_values),
        "crit": st.sampled_from([["b64"], ["b64", "b64"], [], ["exp"], ["b64", "exp"], "b64", [1], None]),
        "b64": st.sampled_from([True, False, 1, 0, "false", None]),
        "jku": st.text(max_size=6),
    }
    for key, pool in extras.items():
        if draw(st.floats(0, 1)) < 0.3:
            header[key] = draw(pool)
    return header


def encodings(value: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """The JSON bytes of a header or payload, now and then in a form only a
    lenient reader takes (BOM, UTF-16, non-ASCII raw) or no object at all."""
    plain = dumps(value)
    return st.one_of(
        st.just(plain),
        st.just(plain),
        st.just(plain),
        st.just(dumps(value, ascii_only=False)),
        st.just(codecs.BOM_UTF8 + plain),
        st.just(plain.decode().encode("utf-16")),
        st.just(b" \t" + plain + b"\r\n"),
        st.just(plain + b"x"),
        st.just(plain.replace(b"{", b"{ \"sub\": \"first\",", 1)),  # a duplicate key: the last one wins
        st.sampled_from([b"[]", b"1", b'"x"', b"null", b"", b"{", b"\xff{}", b'{"a":NaN}']),
        st.binary(max_size=12),
    )


SECRETS = st.one_of(
    st.just(SECRET),
    st.just(SECRET),
    st.text(min_size=32, max_size=40),
    st.sampled_from(
        [
            "",
            "short",
            '{"kty": "oct", "k": "c2VjcmV0"}',  # a JWK as a secret: PyJWT refuses it
            "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----",
            "ssh-rsa AAAAB3NzaC1yc2E",
            "é-secret-0123456789abcdef-0123456789",
        ]
    ),
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@st.composite
def tampered(draw: st.DrawFn, token: str) -> str:
    """The token, or the token changed the way a client or attacker might."""
    kind = draw(
        st.sampled_from(
            ["none", "none", "none", "flip", "flip_sig", "insert", "delete", "pad", "dots", "space", "newline", "swap"]
        )
    )
    if kind == "none" or not token:
        return token
    at = draw(st.integers(0, len(token) - 1))
    odd = st.sampled_from(list(ALPHABET) + list("=.+/ \t\n!é\x00") + ["\ud800"])
    if kind == "flip":
        return token[:at] + draw(odd) + token[at + 1 :]
    if kind == "flip_sig":  # one signature character
        head, _, sig = token.rpartition(".")
        if not sig:
            return token
        i = draw(st.integers(0, len(sig) - 1))
        return f"{head}.{sig[:i]}{draw(st.sampled_from(ALPHABET))}{sig[i + 1:]}"
    if kind == "insert":
        return token[:at] + draw(odd) + token[at:]
    if kind == "delete":
        return token[:at] + token[at + 1 :]
    if kind == "pad":  # '=' after one segment, as many as it needs or not
        parts = token.split(".")
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] += "=" * draw(st.integers(1, 4))
        return ".".join(parts)
    if kind == "dots":
        return draw(st.sampled_from([token + ".", token + "." + token.split(".")[0], "." + token, token.replace(".", "..", 1)]))
    if kind == "space":
        return draw(st.sampled_from([" " + token, token + " ", token.replace(".", " .", 1)]))
    if kind == "newline":
        return token + "\n"
    head, _, sig = token.rpartition(".")  # swap: another payload under this signature
    first, _, _ = head.partition(".")
    return f"{first}.{b64(dumps({'sub': 'mallory'}))}.{sig}"


PLAIN_HEADER = {"alg": "HS256", "typ": "JWT"}
AXES = ("claims", "claims", "claims", "header", "encoding", "secret", "tamper", "all")


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, float, float]:
    """A token varied mostly along one axis (claims, header, encoding,
    secret or tampering), the others kept sound, so that every check is
    reached rather than the first one refusing nearly everything."""
    axis = draw(st.sampled_from(AXES))
    vary = {name: axis in (name, "all") for name in ("header", "encoding", "secret", "tamper")}
    now = draw(clocks)
    secret = draw(SECRETS) if vary["secret"] else SECRET
    key = draw(SECRETS).encode() if vary["secret"] and draw(st.booleans()) else secret.encode()
    header = draw(headers()) if vary["header"] else PLAIN_HEADER
    payload = draw(claim_sets(now))
    header_raw = draw(encodings(header)) if vary["encoding"] else dumps(header)
    payload_raw = draw(encodings(payload)) if vary["encoding"] else dumps(payload)
    pad = (draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    token = signed(header_raw, payload_raw, key, pad)
    if vary["tamper"]:
        token = draw(tampered(token))
    return token, secret, float(now), draw(lifetimes)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_verify_token_agrees_with_pyjwt(case: tuple[str, str, float, float]) -> None:
    assert_parity(*case)


def segments() -> st.SearchStrategy[str]:
    """One base64url segment: canonical, with a changed last character,
    with 0-3 '=', or any text near the alphabet."""
    encoded = st.binary(max_size=9).map(b64)
    last_changed = st.tuples(encoded.filter(bool), st.sampled_from(ALPHABET)).map(lambda t: t[0][:-1] + t[1])
    return st.one_of(
        st.tuples(st.one_of(encoded, last_changed), st.integers(0, 3)).map(lambda t: t[0] + "=" * t[1]),
        st.text(alphabet=st.sampled_from(list(ALPHABET) + list("==+/ é\n")), max_size=8),
    )


@settings(max_examples=1000, deadline=None)
@given(st.lists(segments(), min_size=1, max_size=4).map(".".join))
def test_segments_are_read_as_pyjwt_reads_them(token: str) -> None:
    """Splitting and base64url (padding, alphabet, canonical last
    character) against PyJWT's own segment reader."""
    raw = token.encode()
    try:
        signing_input, crypto = raw.rsplit(b".", 1)
        head, body = signing_input.split(b".", 1)
        read = PyJWS._decode_base64url_segment
        expected: object = (read(head, "h"), read(body, "p"), read(crypto, "s"), signing_input)
    except (ValueError, jwt.DecodeError):
        expected = "refused"
    try:
        got: object = auth._split(token)
    except AuthError:
        got = "refused"
    assert got == expected


@pytest.mark.parametrize("where", [0, 1, 2])
@pytest.mark.parametrize("count", [0, 1, 2, 3])
@pytest.mark.parametrize("claims", [{"sub": "a"}, {"sub": "ab"}, {"sub": "abc"}])  # three lengths mod 4
def test_padding_of_a_signed_token(where: int, count: int, claims: dict[str, Any]) -> None:
    """'=' on one segment (signed over, when before the signature):
    accepted exactly when it completes the segment to a multiple of 4."""
    parts = [b64(dumps({"alg": "HS256"})), b64(dumps(claims))]
    if where < 2:
        parts[where] += "=" * count
    signing_input = ".".join(parts)
    sig = b64(hmac.new(KEY, signing_input.encode(), hashlib.sha256).digest()) + ("=" * count if where == 2 else "")
    token = f"{signing_input}.{sig}"
    got = assert_parity(token, SECRET, NOW, 0.0)
    completes = count == 0 or (len(token.split(".")[where]) % 4 == 0 and count <= 2)
    assert isinstance(got, Principal) is completes, (token, got)


# --- the corners, named (each also in the property's reach) -------------------------------

def hs256(claims: dict[str, Any], **header: Any) -> str:
    return signed(dumps({"alg": "HS256", "typ": "JWT", **header}), dumps(claims), KEY)


@pytest.mark.parametrize(
    ("token", "accepted"),
    [
        (hs256({"sub": "a"}), True),
        (hs256({"sub": "a"}, typ="anything"), True),  # typ is not checked (PyJWT does not either)
        (hs256({"sub": "a"}, crit=["b64"], b64=True), True),  # b64 is understood, true its default
        (hs256({"sub": "a"}, crit=["exp"], exp=1), False),
        (hs256({"sub": "a"}, crit=["b64", "exp"], b64=True, exp=1), False),
        (hs256({"sub": "a"}, crit=[1], b64=True), False),
        (hs256({"sub": "a"}, crit=["b64"]), False),  # listed but absent
        (hs256({"sub": "a"}, crit=[]), False),
        (hs256({"sub": "a"}, b64=False), False),
        (hs256({"sub": "a"}, kid=7), False),
        (hs256({"sub": "a"}, alg="none"), False),
        (hs256({"sub": "a"}, alg="HS512"), False),
        (signed(dumps({"typ": "JWT"}), dumps({"sub": "a"}), KEY), False),  # no alg
        (hs256({"sub": "a", "nbf": NOW + 1}), False),
        (hs256({"sub": "a", "nbf": NOW}), True),
        (hs256({"sub": "a", "iat": NOW + 1}), False),
        (hs256({"sub": "a", "iat": NOW + 0.5}), True),  # PyJWT truncates with int()
        (hs256({"sub": "a", "iat": str(int(NOW))}), True),  # ... and takes a numeric string
        (hs256({"sub": "a", "iat": "yesterday"}), False),
        (hs256({"sub": "a", "iat": "1_000"}), True),  # int("1_000") == 1000
        (hs256({"sub": "a", "iat": "1e3"}), False),  # but int("1e3") fails
        (hs256({"sub": "a", "iat": None}), False),
        (hs256({"sub": "a", "aud": "app"}), False),  # an audience while none is expected
        (hs256({"sub": "a", "aud": ""}), True),
        (hs256({"sub": "a", "jti": 5}), False),
        (hs256({"sub": "a", "jti": "id"}), True),
        (hs256({"sub": 5}), False),
        (hs256({"sub": "a", "exp": None}), True),  # null is absent, and exp is optional here
        (hs256({"sub": None}), False),
        (hs256({"sub": "a", "exp": 10**400}), False),  # the former code raised OverflowError here
        (hs256({"sub": "a", "exp": float("nan")}), False),  # the former code accepted these two
        (hs256({"sub": "a", "exp": float("inf")}), False),
        (signed(dumps({"alg": "HS256"}), b"[]", KEY), False),
        (signed(dumps({"alg": "HS256"}), codecs.BOM_UTF8 + dumps({"sub": "a"}), KEY), True),  # stdlib json took it
        (signed(dumps({"alg": "HS256"}), b'{"sub":"a","x":NaN}', KEY), True),
        (signed(dumps({"alg": "HS256"}), dumps({"sub": "a"}), KEY, pad=(True, True, True)), True),
        (signed(dumps({"alg": "HS256"}), dumps({"sub": "a"}), b"another-secret-0123456789abcdef-xyz"), False),
    ],
)
def test_named_corners(token: str, accepted: bool) -> None:
    got = assert_parity(token, SECRET, NOW, 0.0)
    assert isinstance(got, Principal) is accepted, got


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"sub": "a", "exp": NOW + DAY}, True),
        ({"sub": "a", "exp": NOW + DAY + 1}, False),
        ({"sub": "a", "exp": None}, False),  # required: null is not there
        ({"sub": "a"}, False),
        ({"sub": "a", "exp": 10**400}, False),  # the former code raised OverflowError here
    ],
)
def test_named_corners_with_a_max_lifetime(claims: dict[str, Any], accepted: bool) -> None:
    got = assert_parity(hs256(claims), SECRET, NOW, DAY)
    assert isinstance(got, Principal) is accepted, got


def test_real_clock_for_every_time_claim() -> None:
    """Without `now`, nbf and iat are checked against the real clock, as exp."""
    soon = time.time() + 3600
    assert verify_token(hs256({"sub": "a", "iat": int(time.time()) - 5, "exp": soon}), SECRET)
    for claim in ("nbf", "iat"):
        with pytest.raises(AuthError, match=claim):
            verify_token(hs256({"sub": "a", claim: soon}), SECRET)


def test_the_key_is_prepared_once_per_secret() -> None:
    auth._hmac_key.cache_clear()
    token = hs256({"sub": "a"})
    for _ in range(3):
        verify_token(token, SECRET, now=NOW)
    assert auth._hmac_key.cache_info().misses == 1


@pytest.mark.parametrize("secret", ["", '{"kty": "oct", "k": "c2VjcmV0"}', "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"])
def test_a_secret_pyjwt_refuses_refuses_every_token(secret: str) -> None:
    token = signed(dumps({"alg": "HS256"}), dumps({"sub": "a"}), secret.encode())
    assert assert_parity(token, secret, NOW, 0.0) == "refused"
