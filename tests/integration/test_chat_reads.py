"""Read state (protocol §11) over two real gateways and real Redis: `read`
frames move a per-user, per-room mark that is shared by every gateway,
never goes back, is written at most once a second (the last value always),
and is announced to the other members; `joined` carries `last_read` and
`unread` across gateways and reconnects."""

from __future__ import annotations

import time
from typing import Any

import pytest

from switchboard.client import Client

ROOM = "reads"


async def read_events(client: Client, timeout: float = 5.0) -> dict[str, Any]:
    return await client.recv_type("read", timeout=timeout)


async def seen(client: Client, offset: int) -> None:
    """Wait until `client` got the entry at `offset` (a client marks read
    what it has shown; its gateway caps a mark at what it delivered)."""
    while (await client.recv_type("message"))["offset"] < offset:
        pass


async def post(client: Client, *texts: str) -> list[int]:
    return [(await client.publish(ROOM, text))["offset"] for text in texts]


async def test_unread_counts_across_gateways_and_reconnects(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice:
        joined = await alice.join(ROOM)
        assert (joined["last_read"], joined["unread"]) == (0, 0)  # an empty room
        await post(alice, "mine 1", "mine 2")  # one's own messages are never unread
        async with await Client.connect(b.ws_url, token("bob")) as bob:
            joined = await bob.join(ROOM)
            assert (joined["last_read"], joined["unread"]) == (0, 2)
            bob_posts = await post(bob, "bob 1", "bob 2", "bob 3")
            await bob.edit(ROOM, bob_posts[0], "edits and reactions are not messages")
            await bob.react(ROOM, 1, "👍")
            await bob.delete(ROOM, bob_posts[2])  # deleted: not unread
            await bob.read(ROOM, 2)
            await seen(alice, bob_posts[0])
            await alice.read(ROOM, bob_posts[0])
            receipt = await read_events(bob)  # alice's read reaches bob on the other gateway
            assert receipt == {"type": "read", "room": ROOM, "user": {"id": "alice", "name": "alice"}, "offset": 3}
        # Alice reconnects to the other gateway: her mark was stored cluster-wide.
        async with await Client.connect(b.ws_url, token("alice")) as again:
            joined = await again.join(ROOM)
            assert (joined["last_read"], joined["unread"]) == (3, 1)  # bob 2 only
        async with await Client.connect(a.ws_url, token("bob")) as bob:
            joined = await bob.join(ROOM)
            assert (joined["last_read"], joined["unread"]) == (2, 0)  # his own three, the rest changes


async def test_read_never_moves_back_and_is_capped_at_the_newest_message(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        offsets = await post(bob, *(f"m{n}" for n in range(4)))
        await seen(alice, offsets[-1])
        await alice.read(ROOM, 10_000)  # beyond the newest: marks what exists
        assert (await read_events(bob))["offset"] == offsets[-1]
        await alice.read(ROOM, 1)  # backwards: ignored (and not announced)
        with pytest.raises(TimeoutError):
            await read_events(bob, timeout=1.5)
        (last,) = await post(bob, "after")
        joined = await alice.join(ROOM)  # joining a joined room answers again, with the read state
        assert (joined["last_read"], joined["unread"]) == (offsets[-1], 1)
        assert last == offsets[-1] + 1
        with pytest.raises(TimeoutError):  # the reader does not get its own read events
            await alice.recv_type("read", timeout=0.5)


async def test_reads_are_coalesced_to_one_write_a_second_and_the_last_wins(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await alice.join(ROOM)
        await bob.join(ROOM)
        offsets = await post(bob, *(f"m{n}" for n in range(10)))
        await seen(alice, offsets[-1])
        started = time.monotonic()
        for offset in offsets:  # a client marking each message as it shows it
            await alice.read(ROOM, offset)
        first = await read_events(bob)
        assert first["offset"] == offsets[0]  # written at once
        second = await read_events(bob)
        elapsed = time.monotonic() - started
        assert second["offset"] == offsets[-1]  # then only the last one, a second later
        assert 0.8 <= elapsed < 3.0
        with pytest.raises(TimeoutError):
            await read_events(bob, timeout=1.5)
        async with await Client.connect(b.ws_url, token("alice")) as again:
            assert (await again.join(ROOM))["last_read"] == offsets[-1]


async def test_read_state_is_per_room(two_gateways, token) -> None:
    a, b = two_gateways
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        for room in (ROOM, "other"):
            await alice.join(room)
            await bob.join(room)
            await bob.publish(room, "hello")
        await seen(alice, 1)
        await alice.read(ROOM, 1)
        assert (await read_events(bob))["room"] == ROOM
    async with await Client.connect(b.ws_url, token("alice")) as again:
        assert (await again.join(ROOM))["unread"] == 0
        assert (await again.join("other"))["unread"] == 1
