"""Token refresh without reconnecting (docs/protocol.md "Token refresh"),
against a real gateway: ``welcome`` carries ``exp``; ``refresh`` with a new
token of the same user keeps the socket open past the old token's expiry;
another user's token, or an invalid one, is refused and changes nothing;
rooms the new token no longer allows are left; a guest renews its own token."""

from __future__ import annotations

import time

import httpx

from switchboard.client import Client

SHORT_TTL_S = 2


async def test_refresh_keeps_the_socket_open_past_the_old_expiry(start_gateway, token) -> None:
    gateway = start_gateway()
    # Two sockets with the same short-lived token: one refreshes, one does not.
    short = token("alice", ttl=SHORT_TTL_S)
    async with await Client.connect(gateway.ws_url, short) as kept, await Client.connect(
        gateway.ws_url, short
    ) as expiring:
        assert abs(kept.welcome["exp"] - (time.time() + SHORT_TTL_S)) <= 2
        await kept.join("lobby")
        longer = token("alice", ttl=600)
        refreshed = await kept.request({"type": "refresh", "token": longer})
        assert refreshed["type"] == "refreshed", refreshed
        assert abs(refreshed["exp"] - (time.time() + 600)) <= 2

        # The other socket is closed at the old expiry; the refreshed one lives on.
        code, reason = await expiring.wait_closed(timeout=SHORT_TTL_S + 5)
        assert code == 4001 and "expired" in reason
        assert (await kept.ping())["type"] == "pong"
        assert (await kept.publish("lobby", "still here"))["type"] == "ack"


async def test_welcome_exp_is_null_without_an_expiry(start_gateway, token) -> None:
    gateway = start_gateway(MAX_TOKEN_LIFETIME=0)
    async with await Client.connect(gateway.ws_url, token("alice", ttl=None)) as client:
        assert "exp" in client.welcome and client.welcome["exp"] is None


async def test_refresh_with_another_users_or_a_bad_token_is_refused(start_gateway, token) -> None:
    gateway = start_gateway()
    async with await Client.connect(gateway.ws_url, token("alice", ttl=600)) as alice:
        await alice.join("lobby")
        for bad, says in [
            (token("mallory", ttl=600), "another user"),
            (token("alice", ttl=-5), "expired"),
            ("garbage", "invalid"),
        ]:
            refused = await alice.request({"type": "refresh", "token": bad})
            assert refused["type"] == "error" and refused["code"] == "forbidden", refused
            assert says in refused["message"]
        missing = await alice.request({"type": "refresh"})
        assert missing["code"] == "bad_request"
        # Still alice, still in the room.
        ack = await alice.publish("lobby", "hi")
        assert ack["type"] == "ack"
        assert (await alice.history("lobby"))["messages"][-1]["user"]["id"] == "alice"


async def test_refresh_with_fewer_rooms_leaves_the_others(start_gateway, token) -> None:
    gateway = start_gateway()
    async with await Client.connect(gateway.ws_url, token("alice", rooms=["team-*", "lobby"])) as alice:
        await alice.join("lobby")
        await alice.join("team-red")
        narrower = token("alice", rooms=["team-*"])
        refreshed = await alice.request({"type": "refresh", "token": narrower})
        assert refreshed["type"] == "refreshed"
        left = await alice.recv_type("left")
        assert left == {"type": "left", "room": "lobby", "reason": "forbidden"}
        assert (await alice.join("lobby"))["code"] == "forbidden"
        assert (await alice.publish("team-red", "still in"))["type"] == "ack"


async def test_a_guest_renews_its_token_and_refreshes_its_socket(start_gateway) -> None:
    gateway = start_gateway(ALLOW_GUESTS="true", GUEST_TOKEN_TTL=60)
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        signed_in = (await http.post("/auth/guest", json={"name": "Zoe"})).json()
        async with await Client.connect(gateway.ws_url, signed_in["token"]) as zoe:
            renewed = await http.post("/auth/guest/refresh", headers={"Authorization": f"Bearer {signed_in['token']}"})
            assert renewed.status_code == 200, renewed.text
            body = renewed.json()
            assert body["user"] == signed_in["user"]  # the same guest, not a new one
            refreshed = await zoe.request({"type": "refresh", "token": body["token"]})
            assert refreshed == {"type": "refreshed", "id": refreshed["id"], "exp": body["exp"]}
        refused = await http.post("/auth/guest/refresh", headers={"Authorization": "Bearer garbage"})
        assert refused.status_code == 401
        assert (await http.post("/auth/guest/refresh")).status_code == 401
