"""One signed POST of a batch of events to WEBHOOK_URL.

One pooled ``httpx.AsyncClient`` for the process (connections are reused
across batches), every request bounded by WEBHOOK_TIMEOUT as a whole, not
only per read: a receiver that trickles its answer is a timeout too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from switchboard.signing import signed_headers


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    label: str  # 2xx, 3xx, 4xx, 5xx, timeout or error: the metric's outcome
    detail: str  # for logs and the dead-letter stream
    seconds: float


def batch_body(events: list[bytes]) -> bytes:
    """The request body: a JSON array of event objects."""
    return b"[" + b",".join(events) + b"]"


class Poster:
    def __init__(self, url: str, secret: str, timeout_s: float, connections: int) -> None:
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            follow_redirects=False,  # a redirect is a misconfigured WEBHOOK_URL: retried, then dead-lettered
            headers={"Content-Type": "application/json", "User-Agent": "switchboard-webhooks"},
        )

    async def post(self, body: bytes) -> Outcome:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(self.url, content=body, headers=signed_headers(self._secret, body))
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(False, "timeout", f"no answer within {self._timeout_s:g} s", time.monotonic() - started)
        except httpx.HTTPError as exc:
            return Outcome(False, "error", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        elapsed = time.monotonic() - started
        status = response.status_code
        label = f"{status // 100}xx"
        if 200 <= status < 300:
            return Outcome(True, label, str(status), elapsed)
        return Outcome(False, label, f"HTTP {status}", elapsed)

    async def close(self) -> None:
        await self._client.aclose()
