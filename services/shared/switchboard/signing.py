"""Signatures of the HTTP requests Switchboard sends to the application
(webhooks, and the publish hook), docs/protocol.md "Webhooks".

``X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed
with WEBHOOK_SECRET, and ``X-Switchboard-Timestamp``: Unix seconds when the
request was sent (a receiver may refuse stale ones).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Switchboard-Signature"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers for `body`, timestamped `now` (default: the clock)."""
    stamp = int(time.time() if now is None else now)
    return {SIGNATURE_HEADER: signature(secret, body), TIMESTAMP_HEADER: str(stamp)}


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body`; constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())
