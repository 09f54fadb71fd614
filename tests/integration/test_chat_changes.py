"""Protocol §11 over two real gateways and real Redis: edits, deletions and
reactions are log entries every member sees in the one order, with the
rules checked by the backplane; the latest view; recovery with `since`."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from switchboard.client import Client

ROOM = "chat"


@pytest.fixture
def gateways(start_gateway):  # type: ignore[no-untyped-def]
    # A burst big enough for the 20-emoji test; the rate-limit test starts its own.
    return start_gateway(NODE_ID="gw-a", PUBLISH_BURST=60), start_gateway(NODE_ID="gw-b", PUBLISH_BURST=60)


async def messages(client: Client, count: int, room: str = ROOM) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await client.recv_type("message")
        if frame["room"] == room:
            got.append(frame)
    return got


async def no_more_messages(client: Client) -> None:
    with pytest.raises(TimeoutError):
        await client.recv_type("message", timeout=0.5)


def error_code(reply: dict[str, Any]) -> str:
    assert reply["type"] == "error", reply
    return str(reply["code"])


async def test_edit_delete_react_reach_every_member_in_order(gateways, token) -> None:
    a, b = gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        posted = await alice.publish(ROOM, "helo")
        target = posted["offset"]
        edit = await alice.edit(ROOM, target, "hello")
        react = await bob.react(ROOM, target, "👍")
        unreact = await bob.unreact(ROOM, target, "👍")
        delete = await alice.delete(ROOM, target)
        acks = [edit, react, unreact, delete]
        assert [x["type"] for x in acks] == ["ack"] * 4
        assert [x["offset"] for x in acks] == [2, 3, 4, 5]
        for client in (alice, bob):
            frames = await messages(client, 5)
            assert [f["offset"] for f in frames] == [1, 2, 3, 4, 5]
            assert [(f["kind"], f.get("target"), f["text"], f.get("emoji")) for f in frames] == [
                ("message", None, "helo", None),
                ("edit", 1, "hello", None),
                ("react", 1, "", "👍"),
                ("unreact", 1, "", "👍"),
                ("delete", 1, "", None),
            ]
            assert [f["user"]["id"] for f in frames] == ["alice", "alice", "bob", "bob", "alice"]
            await no_more_messages(client)
        logged = await bob.history(ROOM)  # history returns the entries as they are
        assert [m["kind"] for m in logged["messages"]] == ["message", "edit", "react", "unreact", "delete"]


async def test_only_the_author_edits_or_deletes(gateways, token) -> None:
    a, b = gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        target = (await alice.publish(ROOM, "mine"))["offset"]
        assert error_code(await bob.edit(ROOM, target, "yours now")) == "forbidden"
        assert error_code(await bob.delete(ROOM, target)) == "forbidden"
        assert (await bob.react(ROOM, target, "😮"))["type"] == "ack"  # anyone may react
        assert (await alice.edit(ROOM, target, "still mine"))["type"] == "ack"
        assert [f["kind"] for f in await messages(bob, 3)] == ["message", "react", "edit"]
        await no_more_messages(bob)


async def test_bad_targets_are_bad_requests_and_nothing_is_logged(gateways, token) -> None:
    a, _ = gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice:
        await alice.join(ROOM)
        assert error_code(await alice.edit(ROOM, 1, "no history yet")) == "bad_request"
        first = (await alice.publish(ROOM, "one"))["offset"]
        edit = (await alice.edit(ROOM, first, "uno"))["offset"]
        assert error_code(await alice.edit(ROOM, edit, "an edit is no message")) == "bad_request"
        assert error_code(await alice.react(ROOM, 999, "👍")) == "bad_request"
        assert error_code(await alice.request({"type": "react", "room": ROOM, "target": first, "emoji": "a b"})) == (
            "bad_request"
        )
        assert error_code(await alice.request({"type": "delete", "room": ROOM, "target": 0})) == "bad_request"
        assert (await alice.delete(ROOM, first))["type"] == "ack"
        for reply in (
            await alice.edit(ROOM, first, "after delete"),
            await alice.delete(ROOM, first),
            await alice.react(ROOM, first, "👍"),
        ):
            assert error_code(reply) == "bad_request"
        assert [m["offset"] for m in (await alice.history(ROOM))["messages"]] == [1, 2, 3]


async def test_changes_need_membership(gateways, token) -> None:
    a, _ = gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        a.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        target = (await alice.publish(ROOM, "hi"))["offset"]
        for reply in (
            await bob.edit(ROOM, target, "x"),
            await bob.delete(ROOM, target),
            await bob.react(ROOM, target, "👍"),
            await bob.unreact(ROOM, target, "👍"),
        ):
            assert error_code(reply) == "not_joined"
        await bob.read(ROOM, target)
        assert error_code(await bob.recv_type("error")) == "not_joined"


async def test_reactions_once_per_user_and_emoji_and_at_most_20_emoji(gateways, token) -> None:
    a, b = gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        target = (await alice.publish(ROOM, "vote"))["offset"]
        first = await bob.react(ROOM, target, "👍")
        again = await bob.react(ROOM, target, "👍")
        assert first["offset"] == 2
        assert again["type"] == "ack" and again["offset"] is None and again["epoch"] == first["epoch"]
        missing = await bob.unreact(ROOM, target, "🎉")
        assert missing["type"] == "ack" and missing["offset"] is None
        for n in range(19):  # 👍 plus 19 more: 20 distinct
            assert (await alice.react(ROOM, target, f"e{n}"))["type"] == "ack"
        assert error_code(await alice.react(ROOM, target, "e-over")) == "limit_exceeded"
        assert (await bob.react(ROOM, target, "e3"))["offset"] is not None  # a known emoji still counts up
        latest = await bob.history(ROOM, view="latest")
        (vote,) = latest["messages"]
        assert len(vote["reactions"]) == 20
        assert vote["reactions"]["👍"] == {"count": 1, "me": True}
        assert vote["reactions"]["e3"] == {"count": 2, "me": True}
        assert vote["reactions"]["e4"] == {"count": 1, "me": False}


async def test_changes_are_idempotent_and_rate_limited_like_publish(start_gateway, token) -> None:
    gateway = start_gateway(PUBLISH_BURST=3, PUBLISH_RATE=0.5)
    async with await Client.connect(gateway.ws_url, token("alice")) as alice:
        await alice.join(ROOM)
        target = (await alice.publish(ROOM, "x"))["offset"]
        first = await alice.delete(ROOM, target, client_msg_id="d1")
        retry = await alice.delete(ROOM, target, client_msg_id="d1")  # a second delete would be refused
        assert retry["type"] == "ack" and retry["offset"] == first["offset"] == 2
        limited = await alice.react(ROOM, target, "👍")  # the fourth frame that logs: the burst is spent
        assert error_code(limited) == "rate_limited" and limited["retry_after"] > 0
        assert [m["offset"] for m in (await alice.history(ROOM))["messages"]] == [1, 2]


async def test_moderator_delete_over_http(gateways, token, api_key) -> None:
    a, b = gateways
    async with await Client.connect(b.ws_url, token("bob")) as bob:
        await bob.join(ROOM)
        target = (await bob.publish(ROOM, "spam"))["offset"]
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(base_url=a.http_url, headers=headers) as http:
            deleted = await http.delete(f"/api/rooms/{ROOM}/messages/{target}")
            assert deleted.status_code == 200, deleted.text
            body = deleted.json()
            assert body["room"] == ROOM and body["offset"] == 2 and body["epoch"]
            assert (await http.delete(f"/api/rooms/{ROOM}/messages/{target}")).json()["error"] == "bad_request"
            assert (await http.delete(f"/api/rooms/{ROOM}/messages/99")).status_code == 400
            assert (await http.delete(f"/api/rooms/{ROOM}/messages/abc")).status_code == 400
            assert (await http.delete(f"/api/rooms/{ROOM}/messages/1", headers={"Authorization": ""})).status_code == 401
            latest = (await http.get(f"/api/rooms/{ROOM}/history", params={"view": "latest"})).json()
            assert (await http.get(f"/api/rooms/{ROOM}/history", params={"view": "x"})).status_code == 400
        delete = (await messages(bob, 2))[1]
        assert (delete["kind"], delete["target"], delete["user"]["id"]) == ("delete", target, "system")
        assert latest["messages"] == [
            {
                "offset": target,
                "user": {"id": "bob", "name": "bob"},
                "text": "",
                "ts": latest["messages"][0]["ts"],
                "edited": False,
                "deleted": True,
                "reactions": {},
            }
        ]


async def test_latest_view_limits_messages_and_pages_back(gateways, token, api_key) -> None:
    a, b = gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        offsets = [(await alice.publish(ROOM, f"m{n}"))["offset"] for n in range(6)]
        await alice.edit(ROOM, offsets[0], "m0 edited")  # long after m0: the view still applies it
        await bob.react(ROOM, offsets[0], "🎉")
        for n in range(3):  # entries that are not messages do not count against limit
            await bob.react(ROOM, offsets[5], f"r{n}")
        page = await bob.history(ROOM, view="latest", limit=2)
        assert [m["offset"] for m in page["messages"]] == offsets[4:6]
        assert page["messages"][1]["reactions"] == {f"r{n}": {"count": 1, "me": True} for n in range(3)}
        older = await alice.history(ROOM, view="latest", limit=3, before=offsets[3])
        assert [m["offset"] for m in older["messages"]] == offsets[0:3]
        first = older["messages"][0]
        assert (first["text"], first["edited"], first["deleted"]) == ("m0 edited", True, False)
        assert first["reactions"] == {"🎉": {"count": 1, "me": False}}
        assert set(first) == {"offset", "user", "text", "ts", "edited", "deleted", "reactions"}
        async with httpx.AsyncClient(base_url=a.http_url, headers={"Authorization": f"Bearer {api_key}"}) as http:
            over_http = (
                await http.get(f"/api/rooms/{ROOM}/history", params={"view": "latest", "limit": 1, "user": "bob"})
            ).json()
        assert [m["offset"] for m in over_http["messages"]] == [offsets[5]]
        assert over_http["messages"][0]["reactions"]["r0"] == {"count": 1, "me": True}


async def test_latest_view_of_a_full_history_stays_bounded(start_gateway, token) -> None:
    """A room whose whole history is reactions to its oldest message: the
    view reads all of history (HISTORY_SIZE entries, in pages) and no more,
    and a message that left history leaves the view too."""
    size = 300
    gateway = start_gateway(HISTORY_SIZE=size, PUBLISH_BURST=1000, PUBLISH_RATE=1000)
    async with await Client.connect(gateway.ws_url, token("alice")) as alice:
        await alice.join(ROOM)
        target = (await alice.publish(ROOM, "popular"))["offset"]
        for _ in range((size - 2) // 2):
            assert (await alice.react(ROOM, target, "👍"))["offset"]
            assert (await alice.unreact(ROOM, target, "👍"))["offset"]
        last = await alice.react(ROOM, target, "🎉")
        assert last["offset"] == size  # history is exactly full; the message is its oldest entry
        page = await alice.history(ROOM, view="latest", limit=50)
        assert [(m["offset"], m["reactions"]) for m in page["messages"]] == [
            (target, {"🎉": {"count": 1, "me": True}})
        ]
        fresh = (await alice.publish(ROOM, "new"))["offset"]  # trims the message out of history
        page = await alice.history(ROOM, view="latest", limit=50)
        assert [m["offset"] for m in page["messages"]] == [fresh]
        assert error_code(await alice.react(ROOM, target, "👍")) == "bad_request"


async def test_since_recovers_edits_and_reactions_on_the_other_gateway(gateways, token) -> None:
    a, b = gateways
    alice = await Client.connect(a.ws_url, token("alice"))
    async with await Client.connect(b.ws_url, token("bob")) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        target = (await alice.publish(ROOM, "before"))["offset"]
        seen = await messages(alice, 1)
        position = {"offset": seen[-1]["offset"], "epoch": seen[-1]["epoch"]}
        await alice.close()  # alice drops; bob keeps changing things
        await bob.edit(ROOM, (await bob.publish(ROOM, "bob's"))["offset"], "bob's, edited")
        await bob.react(ROOM, target, "👍")
        await bob.unreact(ROOM, target, "👍")
        await bob.react(ROOM, target, "❤️")
        async with await Client.connect(b.ws_url, token("alice")) as again:  # the other gateway
            joined = await again.join(ROOM, since=position)
            assert joined["recovered"] is True
            got = [(m["offset"], m["kind"], m.get("target"), m.get("emoji")) for m in joined["messages"]]
            assert got == [
                (2, "message", None, None),
                (3, "edit", 2, None),
                (4, "react", 1, "👍"),
                (5, "unreact", 1, "👍"),
                (6, "react", 1, "❤️"),
            ]
            assert joined["offset"] == 6
            await bob.delete(ROOM, 2)  # live after the recovered ones, no gap, no duplicate
            live = await messages(again, 1)
            assert (live[0]["offset"], live[0]["kind"]) == (7, "delete")
            view = await again.history(ROOM, view="latest")
            assert [(m["offset"], m["text"], m["deleted"]) for m in view["messages"]] == [
                (1, "before", False),
                (2, "", True),
            ]
            assert view["messages"][0]["reactions"] == {"❤️": {"count": 1, "me": False}}


async def test_concurrent_reactions_from_two_gateways_count_once_each(gateways, token) -> None:
    a, b = gateways
    clients = [await Client.connect((a, b)[n % 2].ws_url, token(f"user{n}")) for n in range(6)]
    try:
        for client in clients:
            await client.join(ROOM)
        target = (await clients[0].publish(ROOM, "race"))["offset"]
        # Each user reacts twice at once: exactly one of each pair is logged.
        replies = await asyncio.gather(*(c.react(ROOM, target, "🔥") for c in clients for _ in range(2)))
        logged = [r["offset"] for r in replies if r["offset"] is not None]
        assert len(logged) == 6 and len(set(logged)) == 6
        view = await clients[1].history(ROOM, view="latest")
        assert view["messages"][0]["reactions"] == {"🔥": {"count": 6, "me": True}}
    finally:
        for client in clients:
            await client.close()
