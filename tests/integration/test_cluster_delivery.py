"""Messages cross gateways through Redis: exactly once, one order for all."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from switchboard.client import Client


async def collect(client: Client, room: str, count: int, timeout: float = 15.0) -> list[dict]:
    got: list[dict] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            frame = await client.recv_type("message", timeout=timeout)
            if frame["room"] == room:
                got.append(frame)
    return got


async def test_message_crosses_gateways_exactly_once(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        assert (alice.node, bob.node) == ("gw-a", "gw-b")
        await alice.join("lobby")
        await bob.join("lobby")
        ack = await alice.publish("lobby", "hello from a")
        assert ack["type"] == "ack" and ack["offset"] == 1
        for client in (alice, bob):  # the sender gets its own message too
            message = await client.recv_type("message")
            assert message["text"] == "hello from a" and message["offset"] == 1
            assert message["user"] == {"id": "alice", "name": "alice"}
            assert message["msg_id"] and message["epoch"] == ack["epoch"]
            with pytest.raises(TimeoutError):  # exactly once
                await client.recv_type("message", timeout=0.5)


async def test_concurrent_publishers_one_order_everywhere(start_gateway, token) -> None:
    gateways = [start_gateway(NODE_ID=f"gw-{n}", PUBLISH_BURST=100) for n in "ab"]
    per_publisher = 50
    listeners = [await Client.connect(gateways[i % 2].ws_url, token(f"listener{i}")) for i in range(4)]
    publishers = [await Client.connect(gateways[i % 2].ws_url, token(f"pub{i}")) for i in range(4)]
    try:
        for client in listeners + publishers:
            await client.join("race")

        async def publish_all(client: Client, index: int) -> None:
            for n in range(per_publisher):
                ack = await client.publish("race", f"p{index}-{n}")
                assert ack["type"] == "ack", ack

        total = 4 * per_publisher
        collectors = [asyncio.create_task(collect(c, "race", total)) for c in listeners]
        await asyncio.gather(*(publish_all(c, i) for i, c in enumerate(publishers)))
        sequences = await asyncio.gather(*collectors)
        offsets = [[m["offset"] for m in seq] for seq in sequences]
        assert offsets[0] == list(range(1, total + 1))
        texts = [[m["text"] for m in seq] for seq in sequences]
        assert all(t == texts[0] for t in texts), "listeners saw different orders"
        for index in range(4):  # each publisher's messages are stored in the order sent
            mine = [t for t in texts[0] if t.startswith(f"p{index}-")]
            assert mine == [f"p{index}-{n}" for n in range(per_publisher)]
    finally:
        for client in listeners + publishers:
            await client.close()


async def test_history_and_join_with_history(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice:
        await alice.join("hist")
        for n in range(1, 8):
            await alice.publish("hist", f"m{n}")
        page = await alice.history("hist", limit=3)
        assert [m["offset"] for m in page["messages"]] == [5, 6, 7]
        page = await alice.history("hist", before=5, limit=2)
        assert [m["text"] for m in page["messages"]] == ["m3", "m4"]
        assert (await alice.history("hist", before=1))["messages"] == []
    async with await Client.connect(b.ws_url, token("bob")) as bob:
        joined = await bob.join("hist", history=4)
        assert joined["offset"] == 7 and joined["recovered"] is None
        assert [m["offset"] for m in joined["messages"]] == [4, 5, 6, 7]
        plain = await bob.join("other")
        assert plain["messages"] == [] and plain["offset"] == 0 and plain["recovered"] is None


async def test_presence_across_gateways(two_gateways, token) -> None:
    a, b = two_gateways
    alice = await Client.connect(a.ws_url, token("alice", name="Alice"))
    bob = await Client.connect(b.ws_url, token("bob", name="Bob"))
    try:
        joined = await alice.join("room1")
        assert joined["presence"] == [{"user": {"id": "alice", "name": "Alice"}, "connections": 1}]
        assert joined["presence_count"] == 1
        joined = await bob.join("room1")
        assert {m["user"]["id"] for m in joined["presence"]} == {"alice", "bob"}
        assert joined["presence_count"] == 2
        event = await alice.recv_type("presence_join")
        assert event == {"type": "presence_join", "room": "room1", "user": {"id": "bob", "name": "Bob"}, "count": 2}
        listing = await alice.presence("room1")
        assert sorted(m["user"]["id"] for m in listing["members"]) == ["alice", "bob"] and listing["count"] == 2
        left = await bob.leave("room1")
        assert left["type"] == "left"
        event = await alice.recv_type("presence_leave")
        assert event["user"]["id"] == "bob" and event["count"] == 1
        await bob.join("room1")
        await alice.recv_type("presence_join")
        await bob.close()  # a disconnect leaves too
        assert (await alice.recv_type("presence_leave"))["user"]["id"] == "bob"
    finally:
        await alice.close()
        await bob.close()


async def test_typing_reaches_the_others_only(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join("t")
        await bob.join("t")
        await bob.typing("t")
        assert (await alice.recv_type("typing")) == {"type": "typing", "room": "t", "user": {"id": "bob", "name": "bob"}}
        with pytest.raises(TimeoutError):
            await bob.recv_type("typing", timeout=0.5)


async def test_idempotent_publish_stores_once(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as first, await Client.connect(
        b.ws_url, token("alice")
    ) as retry:
        await first.join("idem")
        await retry.join("idem")
        ack1 = await first.publish("idem", "once", client_msg_id="c-1")
        ack2 = await retry.publish("idem", "ignored text", client_msg_id="c-1")
        assert (ack2["offset"], ack2["epoch"]) == (ack1["offset"], ack1["epoch"])
        history = await first.history("idem")
        assert [m["text"] for m in history["messages"]] == ["once"]
        other = await first.publish("idem", "new", client_msg_id="c-2")
        assert other["offset"] == ack1["offset"] + 1


async def test_http_api(two_gateways, token, api_key) -> None:
    a, b = two_gateways
    async with await Client.connect(b.ws_url, token("bob")) as bob, httpx.AsyncClient(base_url=a.http_url) as http:
        await bob.join("news")
        body = {"room": "news", "text": "from the backend"}
        assert (await http.post("/api/publish", json=body)).status_code == 401
        wrong = await http.post("/api/publish", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {api_key}"}
        response = await http.post("/api/publish", json=body, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["offset"] == 1 and response.json()["room"] == "news"
        message = await bob.recv_type("message")
        assert message["user"] == {"id": "system", "name": "system"} and message["text"] == "from the backend"
        custom = {**body, "user": {"id": "bot", "name": "Bot"}, "client_msg_id": "k"}
        assert (await http.post("/api/publish", json=custom, headers=auth)).json()["offset"] == 2
        assert (await http.post("/api/publish", json=custom, headers=auth)).json()["offset"] == 2
        bad = await http.post("/api/publish", json={"room": "bad room!", "text": "x"}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
        long = await http.post("/api/publish", json={"room": "news", "text": "x" * 2001}, headers=auth)
        assert long.status_code == 400 and long.json()["error"] == "too_large"
        huge = await http.post("/api/publish", content=b"{" + b" " * 20000 + b"}", headers=auth)
        assert huge.status_code == 413
        history = await http.get("/api/rooms/news/history", params={"limit": 1}, headers=auth)
        assert [m["offset"] for m in history.json()["messages"]] == [2]
        assert (await http.get("/api/rooms/news/history", params={"limit": 0}, headers=auth)).status_code == 400
        assert (await http.get("/api/rooms/news/history", params={"before": 0}, headers=auth)).status_code == 400
        assert (await http.get("/api/rooms/news/history")).status_code == 401
        presence = await http.get("/api/rooms/news/presence", headers=auth)
        assert presence.json() == {
            "room": "news",
            "members": [{"user": {"id": "bob", "name": "bob"}, "connections": 1}],
            "count": 1,
        }
