"""A real webhook receiver on loopback for tests: a Starlette app under
uvicorn in a thread, recording every delivery with its signature checked.

It can fail on purpose: the next N requests (or all) answered with a status,
or requests held unanswered until the test releases them. Tests wait on its condition variable
(``wait_for``), never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from switchboard_harness import free_port


@dataclass
class Delivery:
    body: bytes
    events: list[dict[str, Any]]
    signature_ok: bool
    timestamp: int | None
    status: int  # what the receiver answered
    received_at: float = field(default_factory=time.time)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.deliveries: list[Delivery] = []
        self.fail_next = 0  # answer the next N requests with fail_status
        self.fail_status = 503
        self.fail_always = False
        self.held = 0  # requests waiting at the closed gate (see hold())
        self._gate = threading.Event()
        self._gate.set()
        self._held_status: int | None = None
        self.cond = threading.Condition()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        signature_ok = verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
        try:
            stamp: int | None = int(request.headers.get(TIMESTAMP_HEADER, ""))
        except ValueError:
            stamp = None
        held_status = None
        if not self._gate.is_set():
            with self.cond:
                self.held += 1
                self.cond.notify_all()
            await asyncio.to_thread(self._gate.wait, 60)
            with self.cond:
                self.held -= 1
                held_status = self._held_status
        with self.cond:
            failing = self.fail_always or self.fail_next > 0
            if self.fail_next > 0:
                self.fail_next -= 1
        status = self.fail_status if failing else (200 if signature_ok else 401)
        if held_status is not None:
            status = held_status
        with self.cond:
            self.deliveries.append(Delivery(body, json.loads(body), signature_ok, stamp, status))
            self.cond.notify_all()
        return JSONResponse({"ok": status == 200}, status_code=status)

    def start(self) -> WebhookReceiver:
        app = Starlette(routes=[Route("/webhooks", self._handle, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="webhook-receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:  # set by uvicorn once it listens
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.01)
        return self

    def hold(self) -> None:
        """Keep every request from now on waiting, unanswered, until release()."""
        self._gate.clear()

    def release(self, status: int | None = None) -> None:
        """Let held requests go on; `status` answers them instead of the
        usual outcome (e.g. 503 for a request whose dispatcher was killed)."""
        with self.cond:
            self._held_status = status
        self._gate.set()

    def stop(self) -> None:
        self._gate.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    # --- what the tests look at ---------------------------------------------

    def accepted_events(self) -> list[dict[str, Any]]:
        with self.cond:
            return [e for d in self.deliveries if d.accepted for e in d.events]

    def wait_for(self, check: Callable[[WebhookReceiver], bool], timeout: float, what: str) -> None:
        """Wait until `check(self)` holds, re-checked on every delivery."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not check(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"receiver: {what} not within {timeout} s ({len(self.deliveries)} requests)")
                self.cond.wait(min(left, 0.5))

    def wait_accepted(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        self.wait_for(lambda r: len(r.accepted_events()) >= count, timeout, f"{count} accepted events")
        return self.accepted_events()
