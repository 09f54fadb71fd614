"""A new direct room reaches its other user (our addition to protocol §11),
over two real gateways and real Redis (one server or a cluster, where the
users' lists live in other slots than the room): ``direct`` once on every
gateway the peer is connected to, the ``directs`` list on a later
connection, nobody else hears of it; and ``joined`` of a direct room
carries the other user's read mark (``peer_read``) across reconnects."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.client import Client

DM = "dm:alice+bob"


async def no_frame(client: Client, type_: str, timeout: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        await client.recv_type(type_, timeout=timeout)


async def test_the_peer_hears_of_a_new_direct_room_once_on_every_gateway(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice", name="Alice")) as alice, await Client.connect(
        b.ws_url, token("alice", name="Alice")
    ) as alice_on_b, await Client.connect(b.ws_url, token("bob")) as bob_on_b, await Client.connect(
        a.ws_url, token("bob")
    ) as bob_on_a, await Client.connect(b.ws_url, token("carol")) as carol:
        await alice.join(DM)
        await alice.publish(DM, "hi bob")
        for bob in (bob_on_b, bob_on_a):
            notice = await bob.recv_type("direct")
            assert notice == {"type": "direct", "room": DM, "user": {"id": "alice", "name": "Alice"}}
        # From the other gateway (which records the room afresh): bob has it already.
        await alice_on_b.join(DM)
        await alice_on_b.publish(DM, "still there?")
        # Bob answers: alice started the room, so she has it already too.
        await bob_on_b.join(DM)
        await bob_on_b.publish(DM, "yes")
        await asyncio.gather(
            no_frame(bob_on_b, "direct"), no_frame(bob_on_a, "direct"), no_frame(carol, "direct"),
            no_frame(alice, "direct"), no_frame(alice_on_b, "direct"),
        )


async def test_a_later_connection_lists_its_direct_rooms(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice", name="Alice")) as alice:
        for room in (DM, "dm:alice+carol"):
            await alice.join(room)
            await alice.publish(room, "hello")
    async with await Client.connect(b.ws_url, token("bob", name="Bob")) as bob:
        listing = await bob.directs()
        assert listing["type"] == "directs"
        assert [(r["room"], r["user"]) for r in listing["rooms"]] == [(DM, {"id": "alice", "name": "Alice"})]
        assert isinstance(listing["rooms"][0]["ts"], int)
        await bob.join(DM)
        await bob.publish(DM, "hi alice")  # now alice's list knows bob's name
    async with await Client.connect(b.ws_url, token("alice")) as alice:
        rooms = (await alice.directs())["rooms"]
        assert [(r["room"], r["user"]["id"]) for r in rooms] == [(DM, "bob"), ("dm:alice+carol", "carol")]
        assert rooms[0]["user"]["name"] == "Bob"
        assert rooms[1]["user"]["name"] == "carol"  # carol never wrote: her id stands for her name
        assert [r["room"] for r in (await alice.directs(limit=1))["rooms"]] == [DM]
        bad = await alice.request({"type": "directs", "limit": 0})
        assert (bad["type"], bad["code"]) == ("error", "bad_request")
    async with await Client.connect(a.ws_url, token("dave")) as dave:
        assert (await dave.directs())["rooms"] == []  # a third user never hears of it


async def test_joined_carries_the_peers_read_mark_after_a_reconnect(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        joined = await alice.join(DM)
        assert joined["peer_read"] == 0
        await bob.join(DM)
        ack = await alice.publish(DM, "did you read this?")
        assert (await bob.recv_type("message"))["offset"] == ack["offset"]
        await bob.read(DM, ack["offset"])
        assert (await alice.recv_type("read"))["offset"] == ack["offset"]  # stored by now
        assert "peer_read" not in await alice.join("lobby")  # only direct rooms have a peer
    async with await Client.connect(b.ws_url, token("alice")) as alice:
        joined = await alice.join(DM)
        assert (joined["peer_read"], joined["last_read"]) == (ack["offset"], 0)
    async with await Client.connect(a.ws_url, token("bob")) as bob:
        joined = await bob.join(DM)
        assert (joined["peer_read"], joined["last_read"], joined["unread"]) == (0, ack["offset"], 0)
