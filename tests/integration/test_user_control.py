"""The user control API (docs/protocol.md "User control") across two real
gateways on real Redis (one server, and a cluster): a command sent to one
gateway reaches the user's connections on both within 1 s; bans refuse
reconnects and re-joins; the active rooms list counts distinct users."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from switchboard.client import Client, ClientClosed

DEADLINE_S = 1.0  # the contract: effective on every gateway within 1 s


async def api(gateway: Any, api_key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        return await http.request(method, path, headers={"Authorization": f"Bearer {api_key}"}, **kwargs)


async def test_disconnect_closes_every_connection_of_the_user_on_every_gateway(two_gateways, api_key, token) -> None:
    a, b = two_gateways
    alice_a = await Client.connect(a.ws_url, token("alice"))
    alice_b = await Client.connect(b.ws_url, token("alice"))
    bob_b = await Client.connect(b.ws_url, token("bob"))
    try:
        response = await api(a, api_key, "POST", "/api/users/alice/disconnect", json={"reason": "spamming"})
        assert response.status_code == 200, response.text
        sent = time.monotonic()
        for client in (alice_a, alice_b):
            code, reason = await client.wait_closed(timeout=5)
            assert (code, reason) == (4003, "spamming")
        assert time.monotonic() - sent < DEADLINE_S
        assert (await bob_b.ping())["type"] == "pong"  # other users are untouched

        # Without a ban, the user may come back at once.
        async with await Client.connect(b.ws_url, token("alice")) as again:
            assert (await again.ping())["type"] == "pong"
    finally:
        for client in (alice_a, alice_b, bob_b):
            await client.close()


async def test_disconnect_with_a_ban_refuses_reconnects_until_it_ends(two_gateways, api_key, token) -> None:
    a, b = two_gateways
    async with await Client.connect(b.ws_url, token("mallory")) as mallory:
        response = await api(a, api_key, "POST", "/api/users/mallory/disconnect", json={"ban_seconds": 2})
        assert response.status_code == 200 and response.json()["ban_seconds"] == 2
        assert await mallory.wait_closed(timeout=5) == (4003, "banned")
    banned_until = time.monotonic() + 2
    for gateway in (a, b):  # refused everywhere: accepted, then closed 4003
        with pytest.raises(ClientClosed) as refused:
            await Client.connect(gateway.ws_url, token("mallory"))
        assert (refused.value.code, refused.value.reason) == (4003, "banned")
    async with await Client.connect(a.ws_url, token("alice")) as alice:  # nobody else is
        assert (await alice.ping())["type"] == "pong"
    # The ban is a Redis TTL: once it is over, the user connects again.
    while time.monotonic() < banned_until + 3:
        try:
            async with await Client.connect(b.ws_url, token("mallory")) as back:
                assert (await back.ping())["type"] == "pong"
                break
        except ClientClosed:
            assert time.monotonic() < banned_until + 3, "the ban did not end"
            await asyncio.sleep(0.2)  # waiting for a TTL to run out: time is what is tested
    else:
        pytest.fail("still refused after the ban")


async def test_remove_from_room_then_rejoin(two_gateways, api_key, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("alice")
    ) as alice2, await Client.connect(b.ws_url, token("bob")) as bob:
        for client in (alice, alice2, bob):
            await client.join("lobby")
        await alice.join("other")

        response = await api(b, api_key, "POST", "/api/rooms/lobby/remove", json={"user": "alice"})
        assert response.status_code == 200, response.text
        sent = time.monotonic()
        for client in (alice, alice2):
            left = await client.recv_type("left", timeout=5)
            assert left == {"type": "left", "room": "lobby", "reason": "removed"}
        assert time.monotonic() - sent < DEADLINE_S
        gone = await bob.recv_type("presence_leave", timeout=5)
        assert gone["user"]["id"] == "alice"

        refused = await alice.publish("lobby", "still here?")
        assert refused["code"] == "not_joined"
        assert (await alice.publish("other", "other rooms are untouched"))["type"] == "ack"
        # No ban: rejoining works.
        assert (await alice.join("lobby"))["type"] == "joined"
        assert (await alice.publish("lobby", "back"))["type"] == "ack"


async def test_remove_with_a_ban_forbids_rejoining_the_room(two_gateways, api_key, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("alice")
    ) as alice2:
        await alice.join("lobby")
        response = await api(
            a, api_key, "POST", "/api/rooms/lobby/remove", json={"user": "alice", "ban_seconds": 60}
        )
        assert response.status_code == 200 and response.json()["ban_seconds"] == 60
        assert (await alice.recv_type("left", timeout=5))["reason"] == "removed"
        for client in (alice, alice2):  # on both gateways
            refused = await client.join("lobby")
            assert refused["type"] == "error" and refused["code"] == "forbidden", refused
            assert "banned" in refused["message"]
        assert (await alice2.join("elsewhere"))["type"] == "joined"  # only that room
    async with await Client.connect(a.ws_url, token("bob")) as bob:
        assert (await bob.join("lobby"))["type"] == "joined"  # only that user


async def test_list_active_rooms_with_distinct_user_counts(two_gateways, api_key, token) -> None:
    a, b = two_gateways
    clients = [
        await Client.connect(a.ws_url, token("alice")),
        await Client.connect(b.ws_url, token("alice")),  # a second connection: still one user
        await Client.connect(b.ws_url, token("bob")),
        await Client.connect(a.ws_url, token("carol")),
    ]
    try:
        for client in clients[:3]:
            await client.join("team-red")
        await clients[3].join("team-blue")
        await clients[3].join("lobby")
        await clients[3].leave("lobby")  # empty again: not listed

        listed = await api(a, api_key, "GET", "/api/rooms")
        assert listed.status_code == 200
        assert listed.json() == {"rooms": [{"room": "team-blue", "count": 1}, {"room": "team-red", "count": 2}]}
        only_red = await api(b, api_key, "GET", "/api/rooms", params={"prefix": "team-r"})
        assert only_red.json() == {"rooms": [{"room": "team-red", "count": 2}]}
        first = await api(b, api_key, "GET", "/api/rooms", params={"limit": 1})
        assert first.json() == {"rooms": [{"room": "team-blue", "count": 1}]}
    finally:
        for client in clients:
            await client.close()
    # Everyone left: no active rooms.
    assert (await api(a, api_key, "GET", "/api/rooms")).json() == {"rooms": []}


async def test_control_api_refuses_bad_requests(start_gateway, api_key) -> None:
    gateway = start_gateway()
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        assert (await http.post("/api/users/alice/disconnect")).status_code == 401
        assert (await http.get("/api/rooms")).status_code == 401
        wrong = {"Authorization": "Bearer wrong"}
        assert (await http.post("/api/rooms/lobby/remove", json={"user": "a"}, headers=wrong)).status_code == 401
    for method, path, kwargs in [
        ("POST", "/api/users/alice/disconnect", {"json": {"ban_seconds": 0}}),
        ("POST", "/api/users/alice/disconnect", {"json": {"ban_seconds": -5}}),
        ("POST", "/api/users/alice/disconnect", {"json": {"ban_seconds": "soon"}}),
        ("POST", "/api/users/alice/disconnect", {"content": b"not json"}),
        ("POST", "/api/rooms/lobby/remove", {"json": {}}),
        ("POST", "/api/rooms/lobby/remove", {"json": {"user": ""}}),
        ("POST", "/api/rooms/-bad-/remove", {"json": {"user": "alice"}}),
        ("GET", "/api/rooms", {"params": {"limit": "0"}}),
        ("GET", "/api/rooms", {"params": {"limit": "many"}}),
        ("GET", "/api/rooms", {"params": {"prefix": "a*"}}),
    ]:
        response = await api(gateway, api_key, method, path, **kwargs)
        assert response.status_code == 400, (path, kwargs, response.text)
        assert response.json()["error"] == "bad_request" and response.json()["message"]
