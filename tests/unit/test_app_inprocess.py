"""The whole gateway in-process (Starlette's TestClient, memory broker):
the upgrade's checks in their order, guest sign-in, health, metrics and the
API key. Light: the real-process tiers cover the rest."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.websockets import WebSocketDisconnect

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # "install httpx2": not in our pins
    from starlette.testclient import TestClient

from switchboard.client import make_token
from switchboard_gateway.app import create_app
from switchboard_gateway.settings import Settings

SECRET = "inprocess-test-secret-0123456789abcdef"
API_KEY = "inprocess-api-key"
ORIGIN = "https://chat.example"

@contextmanager
def running(**env: str) -> Iterator[TestClient]:
    settings = Settings.from_env({"REDIS_URL": "memory://", "JWT_SECRET": SECRET, "NODE_ID": "unit-node", **env})
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def client() -> Iterator[TestClient]:
    with running(API_KEY=API_KEY, ALLOWED_ORIGINS=f"{ORIGIN},https://other.example") as c:
        yield c


def tok(sub: str = "alice", **kw: Any) -> str:
    return make_token(SECRET, sub, **kw)


def expect_close(client: TestClient, url: str, code: int, **headers: str) -> str:
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect(url, headers=headers) as ws:
            ws.receive_text()  # the very first thing must be the close
    assert closed.value.code == code
    return closed.value.reason


# --- /ws --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing"),
        ("?token=", "missing"),
        ("?token=garbage", "invalid"),
        (f"?token={make_token('another-secret-0123456789abcdef-xyz', 'mallory')}", "invalid"),
        (f"?token={make_token(SECRET, 'alice', ttl=-5)}", "expired"),
        (f"?token={jwt.encode({'name': 'x'}, SECRET, algorithm='HS256')}", "invalid"),
    ],
)
def test_bad_token_closes_4001_before_any_frame(client: TestClient, query: str, reason: str) -> None:
    assert reason in expect_close(client, "/ws" + query, 4001)


def test_bad_bearer_header_closes_4001(client: TestClient) -> None:
    assert "invalid" in expect_close(client, "/ws", 4001, authorization="Bearer nope")


def test_good_token_gets_welcome_then_chat(client: TestClient) -> None:
    with client.websocket_connect(f"/ws?token={tok(name='Alice')}") as ws:
        welcome = ws.receive_json()
        assert welcome["type"] == "welcome" and welcome["protocol"] == 1
        assert welcome["user"] == {"id": "alice", "name": "Alice"} and welcome["node"] == "unit-node"
        assert welcome["session"]
        ws.send_json({"type": "join", "id": 1, "room": "lobby"})
        joined = ws.receive_json()
        assert joined["type"] == "joined" and joined["id"] == 1 and joined["recovered"] is None
        assert joined["offset"] == 0 and joined["messages"] == []
        # A room without history has no epoch yet: the join wrote nothing.
        assert joined["epoch"] is None
        assert joined["presence"] == [{"user": {"id": "alice", "name": "Alice"}, "connections": 1}]
        ws.send_json({"type": "publish", "id": 2, "room": "lobby", "text": "hi"})
        got = {frame["type"]: frame for frame in (ws.receive_json(), ws.receive_json())}
        epoch = got["ack"]["epoch"]
        assert epoch and got["ack"] == {"type": "ack", "id": 2, "room": "lobby", "offset": 1, "epoch": epoch}
        # The first publish created the epoch; the member adopts it, no reset.
        assert got["message"]["text"] == "hi" and got["message"]["offset"] == 1
        assert got["message"]["epoch"] == epoch
        ws.send_text("not json")
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "bad_request" and "id" not in error
        ws.send_json({"type": "ping", "id": "p"})
        assert ws.receive_json() == {"type": "pong", "id": "p"}


def test_bearer_header_is_accepted(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers={"authorization": f"Bearer {tok('bob')}"}) as ws:
        assert ws.receive_json()["user"]["id"] == "bob"


def test_a_blank_query_token_falls_back_to_the_bearer_header(client: TestClient) -> None:
    with client.websocket_connect("/ws?token=&x=1", headers={"authorization": f"Bearer {tok('bob')}"}) as ws:
        assert ws.receive_json()["user"]["id"] == "bob"


def test_foreign_origin_is_refused_before_accept(client: TestClient) -> None:
    # A close before accept is an HTTP 403 on the upgrade (TestClient shows it as 1008).
    expect_close(client, f"/ws?token={tok()}", 1008, origin="https://evil.example")
    expect_close(client, "/ws?token=garbage", 1008, origin="https://evil.example")  # origin is checked first


@pytest.mark.parametrize("origin", [ORIGIN, ORIGIN + "/", "https://other.example", None])
def test_listed_or_missing_origin_is_allowed(client: TestClient, origin: str | None) -> None:
    headers = {} if origin is None else {"origin": origin}
    with client.websocket_connect(f"/ws?token={tok()}", headers=headers) as ws:
        assert ws.receive_json()["type"] == "welcome"


def test_any_origin_when_unset() -> None:
    with running() as client:
        with client.websocket_connect(f"/ws?token={tok()}", headers={"origin": "https://x.example"}) as ws:
            assert ws.receive_json()["type"] == "welcome"


def test_draining_closes_1012_after_the_origin_check(client: TestClient) -> None:
    client.app.node.draining = True  # type: ignore[attr-defined]
    try:
        assert client.get("/readyz").status_code == 503
        expect_close(client, "/ws?token=garbage", 1012)  # draining is checked before the token
        expect_close(client, f"/ws?token={tok()}", 1008, origin="https://evil.example")
    finally:
        client.app.node.draining = False  # type: ignore[attr-defined]
    assert client.get("/readyz").status_code == 200


def test_other_websocket_paths_are_closed(client: TestClient) -> None:
    expect_close(client, f"/nope?token={tok()}", 1008)


# --- HTTP ------------------------------------------------------------------------------------


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "switchboard_connections" in metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")


def test_guest_disabled_is_404(client: TestClient) -> None:
    assert client.post("/auth/guest", json={"name": "ada"}).status_code == 404


def test_guest_enabled() -> None:
    with running(ALLOW_GUESTS="true") as client:
        reply = client.post("/auth/guest", json={"name": "Ada"})
        assert reply.status_code == 200
        body = reply.json()
        assert body["user"]["name"] == "Ada" and body["user"]["id"].startswith("guest:Ada-")
        with client.websocket_connect(f"/ws?token={body['token']}") as ws:
            assert ws.receive_json()["user"] == body["user"]
        for bad in ({"name": ""}, {"name": "<b>"}, {"name": "x" * 33}, {}, {"name": 5}, ["Ada"]):
            reply = client.post("/auth/guest", json=bad)
            assert reply.status_code == 400 and reply.json()["error"] == "bad_request", bad
        assert client.post("/auth/guest", content=b"not json").status_code == 400


API_ROUTES = [
    ("POST", "/api/publish"),
    ("GET", "/api/rooms/lobby/history"),
    ("GET", "/api/rooms/lobby/presence"),
]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", API_KEY, f"Basic {API_KEY}"])
def test_api_needs_the_key(client: TestClient, method: str, path: str, auth: str | None) -> None:
    headers = {} if auth is None else {"authorization": auth}
    reply = client.request(method, path, headers=headers, json={"room": "lobby", "text": "x"})
    assert reply.status_code == 401
    assert reply.json()["error"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_api_closed_without_a_configured_key(method: str, path: str) -> None:
    with running() as client:
        reply = client.request(method, path, headers={"authorization": "Bearer "}, json={"room": "a", "text": "x"})
        assert reply.status_code == 401


def test_api_with_the_key(client: TestClient) -> None:
    auth = {"authorization": f"Bearer {API_KEY}"}
    reply = client.post("/api/publish", headers=auth, json={"room": "lobby", "text": "hello"})
    assert reply.status_code == 200
    assert reply.json()["room"] == "lobby" and reply.json()["offset"] == 1
    history = client.get("/api/rooms/lobby/history", headers=auth).json()
    assert [m["text"] for m in history["messages"]] == ["hello"]
    assert history["messages"][0]["user"] == {"id": "system", "name": "system"}
    assert client.get("/api/rooms/lobby/presence", headers=auth).json() == {"room": "lobby", "members": [], "count": 0}
    assert client.get("/api/rooms/lobby/history?limit=0", headers=auth).status_code == 400
    assert client.get("/api/rooms/-bad/history", headers=auth).status_code == 400
    assert client.get("/api/rooms/lobby%0A/history", headers=auth).status_code == 400
