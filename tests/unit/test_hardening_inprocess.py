"""Issue 10's findings that need no real socket, against the whole gateway
in-process (Starlette's TestClient, memory broker): each test fails on the
code before the fix."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.websockets import WebSocketDisconnect

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from switchboard.client import make_token
from switchboard_gateway.app import create_app
from switchboard_gateway.settings import Settings

SECRET = "inprocess-hardening-secret-0123456789abcdef"
API_KEY = "inprocess-hardening-api-key"


@contextmanager
def running(**env: str) -> Iterator[TestClient]:
    base = {"REDIS_URL": "memory://", "JWT_SECRET": SECRET, "NODE_ID": "unit", "API_KEY": API_KEY}
    settings = Settings.from_env({**base, **env})
    with TestClient(create_app(settings)) as client:
        yield client


def tok(sub: str = "alice", **kw: Any) -> str:
    return make_token(SECRET, sub, **kw)


def closed_with(client: TestClient, url: str, **headers: str) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect(url, headers=headers) as ws:
            ws.receive_text()
    return closed.value.code, closed.value.reason


def request(ws: Any, frame: dict[str, Any]) -> dict[str, Any]:
    ws.send_json(frame)
    while True:
        reply = ws.receive_json()
        if reply.get("id") == frame.get("id") or reply["type"] == "error":
            return reply


# --- 13. security headers, no Host-derived redirect ---------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/healthz", "/auth/guest"])
def test_security_headers(path: str) -> None:
    with running() as client:
        response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_no_redirect_built_from_the_host_header() -> None:
    with running() as client:
        response = client.get("/static", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers


# --- 11. no 500s ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"Bearer k\xe9y", b"Bearer \xff\xfe", "Bearer " + API_KEY[:-1] + "\xe9"])
def test_non_ascii_authorization_is_401_not_500(value: bytes | str) -> None:
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    with running() as client:
        response = client.post("/api/publish", headers={"authorization": raw}, json={"room": "r", "text": "x"})
    assert response.status_code == 401


@pytest.mark.parametrize(("depth", "status"), [(100, 400), (500, 400), (1000, 413), (100_000, 413)])
def test_deep_json_to_guest_sign_in_is_a_4xx(depth: int, status: int) -> None:
    """A RecursionError made this a 500. Now: 400, or 413 once the body is
    over the 1 KiB a guest sign-in may send."""
    with running(ALLOW_GUESTS="true") as client:
        response = client.post("/auth/guest", content=b'{"name":' + b"[" * depth + b"]" * depth + b"}")
    assert response.status_code == status


def test_deep_json_to_the_api_is_400() -> None:
    with running() as client:
        response = client.post(
            "/api/publish",
            headers={"authorization": f"Bearer {API_KEY}"},
            content=b'{"room":"r","text":"x","extra":' + b"[" * 8000 + b"]" * 8000 + b"}",
        )
    assert response.status_code == 400


def test_deep_frames_are_bad_request_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with running() as client, client.websocket_connect(f"/ws?token={tok()}") as ws:
        ws.receive_json()  # welcome
        with caplog.at_level(logging.INFO):
            for frame in (
                '{"type":"ping","x":' + "[" * 8000 + "]" * 8000 + "}",
                "[" * 8000 + "]" * 8000,
                '{"type":"join","room":"a","since":' + "{" * 3000 + "}" * 3000 + "}",
            ):
                ws.send_text(frame)
                reply = ws.receive_json()
                assert reply["type"] == "error" and reply["code"] == "bad_request", reply
            assert request(ws, {"type": "ping", "id": 1})["type"] == "pong"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.records


# --- 12. integers within 2^53 ----------------------------------------------------------------------------


def test_offsets_beyond_2_53_are_bad_request_and_large_ones_work() -> None:
    with running() as client, client.websocket_connect(f"/ws?token={tok()}") as ws:
        ws.receive_json()
        for field, frame in (
            ("before", {"type": "history", "id": 1, "room": "r", "before": 2**53}),
            ("since", {"type": "join", "id": 2, "room": "r", "since": {"offset": 2**53, "epoch": "e"}}),
            ("id", {"type": "ping", "id": 2**63}),
        ):
            reply = request(ws, frame)
            assert reply["type"] == "error" and reply["code"] == "bad_request", (field, reply)
        assert request(ws, {"type": "history", "id": 3, "room": "r", "before": 10**14})["type"] == "history"
        assert request(ws, {"type": "history", "id": 4, "room": "r", "before": 2**53 - 1})["type"] == "history"
        auth = {"authorization": f"Bearer {API_KEY}"}
        assert client.get(f"/api/rooms/r/history?before={2**53}", headers=auth).status_code == 400
        assert client.get(f"/api/rooms/r/history?before={10**14}", headers=auth).status_code == 200


# --- 7. read-only frames create nothing ------------------------------------------------------------------


def test_history_presence_and_join_of_unknown_rooms_create_no_epoch() -> None:
    with running() as client, client.websocket_connect(f"/ws?token={tok()}") as ws:
        ws.receive_json()
        for n in range(5):
            assert request(ws, {"type": "history", "id": n, "room": f"h{n}"})["epoch"] is None
            assert request(ws, {"type": "presence", "id": n, "room": f"p{n}"})["type"] == "presence"
            assert request(ws, {"type": "join", "id": n, "room": f"j{n}"})["epoch"] is None
            assert request(ws, {"type": "leave", "id": n, "room": f"j{n}"})["type"] == "left"
        hub = client.app.node.broker.hub  # type: ignore[attr-defined]
        assert not [name for name, room in hub.rooms.items() if room.epoch], hub.rooms


# --- 17. exp required; 15. origins normalised -----------------------------------------------------------


def test_tokens_without_exp_or_with_a_far_exp_are_refused() -> None:
    with running(MAX_TOKEN_LIFETIME="3600") as client:
        no_exp = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
        code, reason = closed_with(client, f"/ws?token={no_exp}")
        assert code == 4001 and "exp" in reason
        code, reason = closed_with(client, f"/ws?token={tok(ttl=7200)}")
        assert code == 4001 and "MAX_TOKEN_LIFETIME" in reason
        with client.websocket_connect(f"/ws?token={tok(ttl=3500)}") as ws:
            assert ws.receive_json()["type"] == "welcome"
    with running(MAX_TOKEN_LIFETIME="0") as client:  # the opt-out
        with client.websocket_connect(f"/ws?token={jwt.encode({'sub': 'a'}, SECRET, algorithm='HS256')}") as ws:
            assert ws.receive_json()["type"] == "welcome"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://chat.example", True),
        ("HTTPS://CHAT.EXAMPLE", True),
        ("https://chat.example:443", True),
        ("https://chat.example/", True),
        ("http://localhost:8080", True),
        ("http://LOCALHOST:8080/", True),
        ("https://chat.example:8443", False),
        ("http://chat.example", False),
        ("https://chat.example.evil", False),
        ("null", False),
    ],
)
def test_origins_are_compared_normalised(origin: str, allowed: bool) -> None:
    with running(ALLOWED_ORIGINS="https://Chat.Example:443/,http://localhost:8080") as client:
        if allowed:
            with client.websocket_connect(f"/ws?token={tok()}", headers={"origin": origin}) as ws:
                assert ws.receive_json()["type"] == "welcome"
        else:
            assert closed_with(client, f"/ws?token={tok()}", origin=origin)[0] == 1008  # HTTP 403


# --- 4, 5, 10. guests -------------------------------------------------------------------------------------


def test_guests_are_held_to_guest_rooms() -> None:
    with running(ALLOW_GUESTS="true", GUEST_ROOMS="lobby,guest-*") as client:
        body = client.post("/auth/guest", json={"name": "Ada"}).json()
        claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
        assert claims["rooms"] == ["lobby", "guest-*"] and claims["exp"]
        with client.websocket_connect(f"/ws?token={body['token']}") as ws:
            ws.receive_json()
            assert request(ws, {"type": "join", "id": 1, "room": "lobby"})["type"] == "joined"
            assert request(ws, {"type": "join", "id": 2, "room": "guest-7"})["type"] == "joined"
            for room in ("ops", "admins", "general"):
                reply = request(ws, {"type": "join", "id": 3, "room": room})
                assert reply["type"] == "error" and reply["code"] == "forbidden", reply


@pytest.mark.parametrize("name", ["system", "Admin", "adm1n", "аdmin", "Mod\u200berator", "moderator bob"])
def test_reserved_and_look_alike_guest_names_are_refused(name: str) -> None:
    with running(ALLOW_GUESTS="true") as client:
        response = client.post("/auth/guest", json={"name": name})
    assert response.status_code == 400 and response.json()["error"] == "bad_request"


def test_guest_sign_ins_are_rate_limited_per_address() -> None:
    with running(ALLOW_GUESTS="true", GUEST_MINTS_PER_MINUTE="3") as client:
        statuses = [client.post("/auth/guest", json={"name": f"g{n}"}).status_code for n in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = client.post("/auth/guest", json={"name": "late"})
        assert 1 <= int(limited.headers["retry-after"]) <= 20 and limited.json()["error"] == "rate_limited"


def test_guest_body_over_1_kb_is_413() -> None:
    with running(ALLOW_GUESTS="true") as client:
        response = client.post("/auth/guest", content=json.dumps({"name": "a" * 2000}).encode())
    assert response.status_code == 413 and response.headers["connection"] == "close"


# --- 8. every frame type costs; limits per user -------------------------------------------------------------


def test_every_frame_type_has_a_budget() -> None:
    with running(FRAME_RATE="1", FRAME_BURST="3", PUBLISH_RATE="1", PUBLISH_BURST="1") as client:
        with client.websocket_connect(f"/ws?token={tok()}") as ws:
            ws.receive_json()
            replies = [request(ws, {"type": "presence", "id": n, "room": "r"}) for n in range(5)]
    assert [r["type"] for r in replies] == ["presence"] * 3 + ["error"] * 2
    assert replies[3]["code"] == "rate_limited" and replies[3]["retry_after"] > 0


def test_publish_rate_is_per_user_and_reconnecting_refills_nothing() -> None:
    with running(PUBLISH_RATE="0.01", PUBLISH_BURST="2") as client:
        with client.websocket_connect(f"/ws?token={tok()}") as a, client.websocket_connect(f"/ws?token={tok()}") as b:
            for ws in (a, b):
                ws.receive_json()
                request(ws, {"type": "join", "id": "j", "room": "r"})
            assert request(a, {"type": "publish", "id": 1, "room": "r", "text": "1"})["type"] == "ack"
            assert request(b, {"type": "publish", "id": 2, "room": "r", "text": "2"})["type"] == "ack"
            reply = request(b, {"type": "publish", "id": 3, "room": "r", "text": "3"})
            assert reply["type"] == "error" and reply["code"] == "rate_limited"
        with client.websocket_connect(f"/ws?token={tok()}") as c:
            c.receive_json()
            request(c, {"type": "join", "id": "j", "room": "r"})
            reply = request(c, {"type": "publish", "id": 4, "room": "r", "text": "4"})
            assert reply["type"] == "error" and reply["code"] == "rate_limited"
        with client.websocket_connect(f"/ws?token={tok('bob')}") as other:  # another user: a budget of their own
            other.receive_json()
            request(other, {"type": "join", "id": "j", "room": "r"})
            assert request(other, {"type": "publish", "id": 5, "room": "r", "text": "5"})["type"] == "ack"


def test_typing_is_rate_limited_per_user() -> None:
    with running(TYPING_RATE="0.01", TYPING_BURST="2") as client:
        with client.websocket_connect(f"/ws?token={tok()}") as ws:
            ws.receive_json()
            request(ws, {"type": "join", "id": "j", "room": "r"})
            for n in range(3):
                ws.send_json({"type": "typing", "id": n, "room": "r"})
            reply = request(ws, {"type": "ping", "id": 9})  # the refusal of the third comes first
            assert reply["type"] == "error" and reply["code"] == "rate_limited" and reply["id"] == 2, reply


def test_connections_per_user_are_limited() -> None:
    with running(MAX_CONNECTIONS_PER_USER="2") as client:
        with client.websocket_connect(f"/ws?token={tok()}") as a, client.websocket_connect(f"/ws?token={tok()}") as b:
            a.receive_json()
            b.receive_json()
            code, reason = closed_with(client, f"/ws?token={tok()}")
            assert code == 1013 and "user" in reason
            with client.websocket_connect(f"/ws?token={tok('bob')}") as other:
                assert other.receive_json()["type"] == "welcome"
        with client.websocket_connect(f"/ws?token={tok()}") as again:  # places were freed
            assert again.receive_json()["type"] == "welcome"


def test_publishes_that_may_be_stored_are_not_called_unavailable() -> None:
    """A publish whose outcome is unknown gets its own code (outcome_unknown)."""
    from switchboard_gateway.broker import BrokerOutcomeUnknown, BrokerUnavailable

    with running() as client:
        broker = client.app.node.broker  # type: ignore[attr-defined]
        original = broker.publish

        async def fail(exc: Exception) -> None:
            raise exc

        with client.websocket_connect(f"/ws?token={tok()}") as ws:
            ws.receive_json()
            request(ws, {"type": "join", "id": "j", "room": "r"})
            for exc, code in ((BrokerOutcomeUnknown("hung"), "outcome_unknown"), (BrokerUnavailable("down"), "unavailable")):
                broker.publish = lambda *a, exc=exc, **k: fail(exc)
                reply = request(ws, {"type": "publish", "id": 1, "room": "r", "text": "x", "client_msg_id": "k"})
                assert reply["code"] == code and reply["id"] == 1, reply
            broker.publish = original
            assert request(ws, {"type": "publish", "id": 2, "room": "r", "text": "x", "client_msg_id": "k"})["type"] == "ack"
