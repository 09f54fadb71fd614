"""Signatures of webhook (and hook) requests."""

from __future__ import annotations

import hashlib
import hmac

from switchboard.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, signed_headers, verify

SECRET = "signing-test-secret-0123456789abcdef"


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'[{"id":"1-0"}]'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature(SECRET, body) == f"sha256={expected}"


def test_headers() -> None:
    headers = signed_headers(SECRET, b"[]", now=1700000000.9)
    assert headers == {SIGNATURE_HEADER: signature(SECRET, b"[]"), TIMESTAMP_HEADER: "1700000000"}


def test_verify() -> None:
    body = b'[{"id":"1-0"}]'
    good = signature(SECRET, body)
    assert verify(SECRET, body, good) and verify(SECRET, body, f" {good} ")
    assert not verify(SECRET, body + b" ", good)
    assert not verify("another-secret-0123456789abcdef0123", body, good)
    assert not verify(SECRET, body, None) and not verify(SECRET, body, "") and not verify(SECRET, body, "sha256=00")
    assert not verify(SECRET, body, "sha256=é")
