"""Direct rooms (protocol §11): `dm:<a>+<b>`, ids sorted, joined only by
those two users whatever their `rooms` claim says."""

from __future__ import annotations

from switchboard.client import Client

DM = "dm:alice+guest:bob-x1"


async def test_only_the_two_users_join_a_direct_room(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice", rooms=["lobby"])) as alice, await Client.connect(
        b.ws_url, token("guest:bob-x1", rooms=[])
    ) as bob, await Client.connect(b.ws_url, token("carol", rooms=["*"])) as carol:
        # The claims would refuse alice and bob and allow carol: the name decides.
        assert (await alice.join(DM))["type"] == "joined"
        assert (await bob.join(DM))["type"] == "joined"
        for frame in (
            {"type": "join", "room": DM},
            {"type": "history", "room": DM},
            {"type": "presence", "room": DM},
        ):
            refused = await carol.request(frame)
            assert (refused["type"], refused["code"]) == ("error", "forbidden")
        ack = await alice.publish(DM, "just us")
        got = await bob.recv_type("message")
        assert (got["room"], got["offset"], got["text"]) == (DM, ack["offset"], "just us")
        await bob.read(DM, ack["offset"])
        seen = await alice.recv_type("read")  # "seen" in a direct room
        assert (seen["user"]["id"], seen["offset"]) == ("guest:bob-x1", ack["offset"])
        assert (await alice.join("other"))["code"] == "forbidden"  # the claim still rules other rooms


async def test_direct_room_names_must_be_canonical(two_gateways, token) -> None:
    a, _ = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice:
        unsorted = await alice.join("dm:bob+alice")
        assert (unsorted["type"], unsorted["code"]) == ("error", "forbidden")
        for bad in ("dm:alice+", "dm:alice+b c", "dm:a+b+c", "lobby+x"):
            reply = await alice.join(bad)
            assert (reply["type"], reply["code"]) == ("error", "bad_request"), bad
        assert (await alice.join("dm:alice+alice"))["type"] == "joined"  # notes to oneself
