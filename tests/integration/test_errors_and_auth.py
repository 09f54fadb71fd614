"""Every refusal of the contract, against a real gateway process: each bad
input gets its error code and the connection keeps working; each auth
failure closes 4001 before any other frame; an oversized frame closes 1009."""

from __future__ import annotations

import json

import jwt
import pytest
import websockets

from switchboard.client import Client, make_token
from switchboard_harness import TEST_JWT_SECRET


@pytest.fixture
def gateway(start_gateway):  # type: ignore[no-untyped-def]
    return start_gateway(MAX_ROOMS_PER_CONNECTION=2, MAX_TEXT_CHARS=10)


async def expect_4001(url: str, **headers: str) -> str:
    async with websockets.connect(url, additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()  # no frame may come before the close
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        return closed.value.rcvd.reason


async def test_auth_failures_close_4001(gateway) -> None:
    url = gateway.ws_url
    assert "missing" in await expect_4001(url)
    assert "invalid" in await expect_4001(url + "?token=garbage")
    wrong = make_token("another-secret-that-is-long-enough-xx", "mallory")
    assert "invalid" in await expect_4001(f"{url}?token={wrong}")
    expired = make_token(TEST_JWT_SECRET, "alice", ttl=-10)
    assert "expired" in await expect_4001(f"{url}?token={expired}")
    no_sub = jwt.encode({"name": "x"}, TEST_JWT_SECRET, algorithm="HS256")
    assert "invalid" in await expect_4001(f"{url}?token={no_sub}")
    none_alg = jwt.encode({"sub": "alice"}, None, algorithm="none")
    assert "invalid" in await expect_4001(f"{url}?token={none_alg}")
    assert "invalid" in await expect_4001(url, Authorization="Bearer garbage")


async def test_bearer_header_is_accepted(gateway, token) -> None:
    async with await Client.connect(gateway.ws_url, token("alice"), bearer=True) as client:
        assert client.welcome["user"] == {"id": "alice", "name": "alice"}
        assert client.welcome["protocol"] == 1 and client.welcome["session"]


async def test_each_error_code_and_the_connection_survives(gateway, token) -> None:
    restricted = token("carol", rooms=["team-*", "lobby"])
    async with await Client.connect(gateway.ws_url, restricted) as c:

        async def expect(frame: dict | str | bytes, code: str, with_id: bool = True) -> dict:
            if isinstance(frame, dict):
                reply = await c.request(frame)
                assert reply["id"] is not None
            else:
                await c.send(frame)
                reply = await c.recv_type("error")
                assert "id" not in reply
            assert reply["type"] == "error" and reply["code"] == code, reply
            assert reply["message"]
            return reply

        await expect("not json", "bad_request")
        await expect(b"\x00binary", "bad_request")
        await expect(json.dumps([1, 2]), "bad_request")
        await expect({"type": "dance"}, "bad_request")
        await expect({"type": "join"}, "bad_request")
        await expect({"type": "join", "room": "-starts-with-dash"}, "bad_request")
        await expect({"type": "join", "room": "x" * 65}, "bad_request")
        await expect({"type": "join", "room": "lobby", "history": 101}, "bad_request")
        await expect({"type": "history", "room": "lobby", "limit": 0}, "bad_request")
        await expect({"type": "history", "room": "lobby", "before": 0}, "bad_request")
        await expect({"type": "publish", "room": "lobby", "text": ""}, "bad_request")
        await expect({"type": "publish", "room": "lobby", "text": "x", "client_msg_id": "k" * 65}, "bad_request")
        await expect({"type": "join", "room": "secret"}, "forbidden")
        await expect({"type": "history", "room": "secret"}, "forbidden")
        await expect({"type": "presence", "room": "secret"}, "forbidden")
        await expect({"type": "publish", "room": "lobby", "text": "hi"}, "not_joined")
        await expect({"type": "typing", "room": "lobby"}, "not_joined")
        await expect({"type": "leave", "room": "lobby"}, "not_joined")
        assert (await c.join("lobby"))["type"] == "joined"
        assert (await c.join("team-a"))["type"] == "joined"
        await expect({"type": "join", "room": "team-b"}, "limit_exceeded")
        again = await c.join("lobby")  # joining a joined room answers joined again
        assert again["type"] == "joined"
        assert [m["connections"] for m in again["presence"]] == [1]
        await expect({"type": "publish", "room": "lobby", "text": "x" * 11}, "too_large")
        # code points, not bytes: 10 emoji are within MAX_TEXT_CHARS=10
        assert (await c.publish("lobby", "\N{GRINNING FACE}" * 10))["type"] == "ack"
        # history needs permission, not membership
        assert (await c.history("team-zzz"))["type"] == "history"
        # and after all that, the connection still works
        assert (await c.ping())["type"] == "pong"
        assert (await c.publish("lobby", "still here"))["offset"] == 2


async def test_rate_limit_answers_retry_after(start_gateway, token) -> None:
    gateway = start_gateway(PUBLISH_RATE=1, PUBLISH_BURST=3)
    async with await Client.connect(gateway.ws_url, token("alice")) as c:
        await c.join("r")
        replies = [await c.publish("r", f"m{n}") for n in range(5)]
        assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error", "error"]
        assert replies[3]["code"] == "rate_limited" and 0 < replies[3]["retry_after"] <= 1000


async def test_frame_over_the_limit_closes_1009(start_gateway, token) -> None:
    gateway = start_gateway(MAX_FRAME_BYTES=1024)
    async with await Client.connect(gateway.ws_url, token("alice")) as c:
        await c.join("big")
        await c.send(json.dumps({"type": "publish", "room": "big", "text": "x" * 2000}))
        code, _ = await c.wait_closed()
        assert code == 1009


async def test_unknown_websocket_path_is_refused(gateway, token) -> None:
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(gateway.ws_url.replace("/ws", "/nope")):
            pass


async def test_allowed_origins(start_gateway, token) -> None:
    gateway = start_gateway(ALLOWED_ORIGINS="https://chat.example")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.connect(gateway.ws_url, token("alice"), origin="https://evil.example")
    assert refused.value.response.status_code == 403
    async with await Client.connect(gateway.ws_url, token("alice"), origin="https://chat.example"):
        pass
    async with await Client.connect(gateway.ws_url, token("alice")):  # no Origin: not a browser
        pass


async def test_guest_tokens(start_gateway) -> None:
    import httpx

    closed = start_gateway(NODE_ID="closed")
    async with httpx.AsyncClient(base_url=closed.http_url) as http:
        assert (await http.post("/auth/guest", json={"name": "x"})).status_code == 404
    open_ = start_gateway(NODE_ID="open", ALLOW_GUESTS="true", GUEST_TOKEN_TTL=60)
    async with httpx.AsyncClient(base_url=open_.http_url) as http:
        assert (await http.post("/auth/guest", json={"name": "<script>"})).status_code == 400
        response = await http.post("/auth/guest", json={"name": "Ada"})
        assert response.status_code == 200
        body = response.json()
        assert body["user"]["name"] == "Ada" and body["user"]["id"].startswith("guest:Ada-")
    async with await Client.connect(open_.ws_url, body["token"]) as c:
        assert c.welcome["user"] == body["user"]


def test_token_never_reaches_the_log(start_gateway, token) -> None:
    import asyncio

    gateway = start_gateway(LOG_LEVEL="info")
    secret_token = token("alice")

    async def connect() -> None:
        async with await Client.connect(gateway.ws_url, secret_token):
            pass

    asyncio.run(connect())
    gateway.stop()
    log = gateway.output()
    assert "WebSocket /ws" in log and secret_token not in log and "[redacted]" in log
