"""Where /ws finds the token: the first non-empty ``token`` query value,
decoded as ``parse_qs`` decodes it (the former code, kept as the oracle),
else ``Authorization: Bearer``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard_gateway.routes.websocket import _token, query_token


def former(query_string: bytes) -> str | None:
    values = parse_qs(query_string.decode("latin-1"))
    return values["token"][0] if values.get("token") else None


# Pieces a query is made of, odd ones included: escapes (valid, partial,
# invalid UTF-8), '+', ';' (no separator since Python 3.10), latin-1 bytes.
PIECES = ["token", "tok", "en", "%74oken", "tok%65n", "%74", "=", "&", "&&", "+", "%2B", "%20", "%", "%zz", "%C3%A9", "%C3", "%ff", ";", "a", "eyJ.x-_", "\xe9", "\x00"]


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(PIECES), max_size=10).map("".join))
def test_query_token_agrees_with_parse_qs(query: str) -> None:
    raw = query.encode("latin-1")
    assert query_token(raw) == former(raw)


@given(st.binary(max_size=30))
def test_query_token_agrees_with_parse_qs_on_any_bytes(raw: bytes) -> None:
    assert query_token(raw) == former(raw)


@pytest.mark.parametrize(
    ("query", "token"),
    [
        (b"", None),
        (b"token=abc", "abc"),
        (b"x=1&token=abc&token=def", "abc"),  # the first one
        (b"token=&token=def", "def"),  # a blank value is no value
        (b"token", None),
        (b"token=a+b%2Bc", "a b+c"),
        (b"%74oken=abc", "abc"),
        (b"to+ken=abc", None),
        (b"token=abc;x=1", "abc;x=1"),  # ';' separates nothing
        (b"token=%C3%A9%ff", "\xe9\ufffd"),
    ],
)
def test_query_token(query: bytes, token: str | None) -> None:
    assert query_token(query) == token


def scope(query: bytes, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "websocket", "query_string": query, "headers": list(headers)}


def test_the_query_wins_over_the_header() -> None:
    assert _token(scope(b"token=q", (b"authorization", b"Bearer h"))) == "q"


@pytest.mark.parametrize("query", [b"", b"token=", b"token", b"other=1"])
def test_no_query_token_falls_back_to_the_bearer_header(query: bytes) -> None:
    assert _token(scope(query, (b"authorization", b"Bearer  h "))) == "h"
    assert _token(scope(query, (b"authorization", b"Basic h"))) is None
    assert _token(scope(query)) is None
