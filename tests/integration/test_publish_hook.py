"""The publish hook (docs/protocol.md "Publish hook") against a real gateway
and a real HTTP hook: a tiny Starlette app under uvicorn, started by the
test, that verifies each request's signature and decides by the text:

    "bad ..."      4xx {"error","message"}  -> error `rejected` with that message
    "rewrite ..."  200 {"text": "..."}      -> stored with the new text
    "slow ..."     answers after HOOK_TIMEOUT -> `unavailable`
    "boom ..."     500                      -> `unavailable`
    anything else  200 {}                   -> stored as is

Nothing refused or unanswered is stored: history shows exactly the accepted
messages. Plus an unreachable hook, and settings that stop the gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.client import Client
from switchboard.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from switchboard_harness import TEST_JWT_SECRET, free_port

HOOK_SECRET = "publish-hook-test-secret-0123456789abcdef"
HOOK_TIMEOUT_S = 0.5


class Hook:
    """The application's hook: a real HTTP server in a thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        ok = verify(HOOK_SECRET, body, request.headers.get(SIGNATURE_HEADER))
        stamp = int(request.headers.get(TIMESTAMP_HEADER, "0"))
        payload = json.loads(body)
        with self._lock:
            self.requests.append(payload)
            self.signatures_ok.append(ok and abs(time.time() - stamp) < 60)
        if not ok:
            return JSONResponse({"error": "unauthorized", "message": "bad signature"}, status_code=401)
        text: str = payload["text"]
        if text.startswith("bad"):
            return JSONResponse({"error": "profanity", "message": "mind your language"}, status_code=403)
        if text.startswith("rewrite"):
            return JSONResponse({"text": text.replace("rewrite", "REWRITTEN", 1)})
        if text.startswith("slow"):
            await asyncio.sleep(HOOK_TIMEOUT_S * 4)  # the behaviour under test: an answer too late
            return JSONResponse({})
        if text.startswith("boom"):
            return JSONResponse({"error": "internal"}, status_code=500)
        return JSONResponse({})

    def start(self) -> Hook:
        app = Starlette(routes=[Route("/hook", self._handle, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="publish-hook", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the hook did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def texts(self) -> list[str]:
        with self._lock:
            return [r["text"] for r in self.requests]


@pytest.fixture
def hook():  # type: ignore[no-untyped-def]
    running = Hook().start()
    yield running
    running.stop()


@pytest.fixture
def gateway(start_gateway, hook):  # type: ignore[no-untyped-def]
    return start_gateway(PUBLISH_HOOK_URL=hook.url, WEBHOOK_SECRET=HOOK_SECRET, HOOK_TIMEOUT=HOOK_TIMEOUT_S)


def texts_of(history: dict[str, Any]) -> list[str]:
    return [m["text"] for m in history["messages"]]


async def test_accept_rewrite_reject_timeout_and_5xx_over_websocket(gateway, hook, token) -> None:
    async with await Client.connect(gateway.ws_url, token("alice", name="Alice")) as alice, await Client.connect(
        gateway.ws_url, token("bob")
    ) as bob:
        await alice.join("lobby")
        await bob.join("lobby")

        ack = await alice.publish("lobby", "hello", client_msg_id="m1")
        assert ack["type"] == "ack" and ack["offset"] == 1
        assert (await bob.recv_type("message"))["text"] == "hello"

        ack = await alice.publish("lobby", "rewrite me")
        assert ack["type"] == "ack" and ack["offset"] == 2
        seen = await bob.recv_type("message")
        assert seen["text"] == "REWRITTEN me" and seen["offset"] == 2

        rejected = await alice.publish("lobby", "bad word")
        assert rejected["type"] == "error" and rejected["code"] == "rejected", rejected
        assert rejected["message"] == "mind your language"

        started = time.monotonic()
        late = await alice.publish("lobby", "slow one", client_msg_id="m-slow")
        assert late["type"] == "error" and late["code"] == "unavailable", late
        assert time.monotonic() - started < HOOK_TIMEOUT_S + 1.5  # the timeout bounds the wait

        failed = await alice.publish("lobby", "boom")
        assert failed["type"] == "error" and failed["code"] == "unavailable", failed

        # The connection is still usable, and nothing refused was stored.
        ack = await alice.publish("lobby", "after")
        assert ack["type"] == "ack" and ack["offset"] == 3
        assert texts_of(await bob.history("lobby")) == ["hello", "REWRITTEN me", "after"]

    first = hook.requests[0]
    assert first == {
        "action": "publish",
        "room": "lobby",
        "user": {"id": "alice", "name": "Alice"},
        "text": "hello",
        "client_msg_id": "m1",
    }
    assert hook.texts() == ["hello", "rewrite me", "bad word", "slow one", "boom", "after"]
    assert all(hook.signatures_ok)


async def test_accept_rewrite_reject_timeout_and_5xx_over_http(gateway, hook, api_key, token) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=gateway.http_url, headers=headers, timeout=10) as http:

        async def publish(text: str) -> httpx.Response:
            return await http.post("/api/publish", json={"room": "news", "text": text})

        accepted = await publish("hello")
        assert accepted.status_code == 200 and accepted.json()["offset"] == 1
        rewritten = await publish("rewrite this")
        assert rewritten.status_code == 200 and rewritten.json()["offset"] == 2
        rejected = await publish("bad news")
        assert rejected.status_code == 422
        assert rejected.json() == {"error": "rejected", "message": "mind your language"}
        late = await publish("slow news")
        assert late.status_code == 503 and late.json()["error"] == "unavailable"
        failed = await publish("boom")
        assert failed.status_code == 503 and failed.json()["error"] == "unavailable"

        history = (await http.get("/api/rooms/news/history")).json()
        assert texts_of(history) == ["hello", "REWRITTEN this"]

    assert hook.requests[0]["user"] == {"id": "system", "name": "system"}
    assert all(hook.signatures_ok)


async def test_unreachable_hook_stores_nothing(start_gateway, api_key, token) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    gateway = start_gateway(PUBLISH_HOOK_URL=nobody, WEBHOOK_SECRET=HOOK_SECRET, HOOK_TIMEOUT=HOOK_TIMEOUT_S)
    async with await Client.connect(gateway.ws_url, token("alice")) as alice:
        await alice.join("lobby")
        refused = await alice.publish("lobby", "hello?")
        assert refused["type"] == "error" and refused["code"] == "unavailable", refused
        assert "unreachable" in refused["message"]
        async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
            headers = {"Authorization": f"Bearer {api_key}"}
            response = await http.post("/api/publish", json={"room": "lobby", "text": "hi"}, headers=headers)
            assert response.status_code == 503 and response.json()["error"] == "unavailable"
        assert (await alice.history("lobby"))["messages"] == []


def run_gateway_with(**env: str) -> subprocess.CompletedProcess[str]:
    """``python -m switchboard_gateway`` with `env` on top of a valid base: it
    must refuse to start (before touching Redis)."""
    full = {
        **os.environ,
        "JWT_SECRET": TEST_JWT_SECRET,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "switchboard_gateway"], env=full, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PUBLISH_HOOK_URL": "ftp://app.example/hook", "WEBHOOK_SECRET": HOOK_SECRET}, "PUBLISH_HOOK_URL"),
        ({"PUBLISH_HOOK_URL": "http://", "WEBHOOK_SECRET": HOOK_SECRET}, "PUBLISH_HOOK_URL"),
        ({"PUBLISH_HOOK_URL": "http://app:99999/hook", "WEBHOOK_SECRET": HOOK_SECRET}, "PUBLISH_HOOK_URL"),
        ({"PUBLISH_HOOK_URL": "http://app/hook"}, "WEBHOOK_SECRET"),
        ({"PUBLISH_HOOK_URL": "http://app/hook", "WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET"),
        ({"PUBLISH_HOOK_URL": "http://app/hook", "WEBHOOK_SECRET": HOOK_SECRET, "HOOK_TIMEOUT": "0"}, "HOOK_TIMEOUT"),
        ({"PUBLISH_HOOK_URL": "http://app/hook", "WEBHOOK_SECRET": HOOK_SECRET, "HOOK_TIMEOUT": "600"}, "HOOK_TIMEOUT"),
    ],
)
def test_bad_hook_settings_stop_the_gateway_with_a_clear_message(env: dict[str, str], says: str) -> None:
    result = run_gateway_with(**env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("switchboard: configuration error:") and says in last, result.stderr
    assert "short" not in last  # a secret's value is never printed


async def test_an_edit_goes_through_the_hook_too(gateway, hook, token) -> None:
    """Protocol §11 + §12: an edit is moderated like a publish (action "edit",
    with its target); a rejected edit logs nothing."""
    async with await Client.connect(gateway.ws_url, token("alice", name="Alice")) as alice:
        await alice.join("lobby")
        target = (await alice.publish("lobby", "helo"))["offset"]
        rewritten = await alice.edit("lobby", target, "rewrite hello", client_msg_id="e1")
        assert rewritten["type"] == "ack" and rewritten["offset"] == 2
        rejected = await alice.edit("lobby", target, "bad hello")
        assert (rejected["type"], rejected["code"]) == ("error", "rejected")
        entries = (await alice.history("lobby"))["messages"]
        assert [(m["kind"], m["text"]) for m in entries] == [("message", "helo"), ("edit", "REWRITTEN hello")]
    edit = hook.requests[1]
    assert (edit["action"], edit["target"], edit["text"], edit["client_msg_id"]) == ("edit", 1, "rewrite hello", "e1")
