"""The gateways' own events: real gateway processes write the events stream
(EVENTS_MAXLEN > 0) from the scripts that make each change, a real
dispatcher posts them to a real receiver. Runs on both topologies: on a
cluster the room's events go to the stream of its slot.

"Exactly once" is checked where it is decided: in the events streams
themselves (every stream under the test's prefix), then at the receiver.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from switchboard.backplane.events import EventsLayout
from switchboard.backplane.keys import RoomKeys
from switchboard.backplane.slots import key_slot
from switchboard.client import Client
from switchboard.protocol.events import MessageEvent, decode_batch, decode_event
from switchboard_harness.keyspace import keys_with_prefix
from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory

EVENTS = {"EVENTS_MAXLEN": "10000"}
# Short presence lifetime: a killed gateway's entries expire in about a second.
FAST_PRESENCE = {"PRESENCE_TTL": "2"}


class Streams:
    """Every events stream under the test's prefix, read straight from Redis."""

    def __init__(self, redis_url: str, prefix: str, cluster: bool) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.layout = EventsLayout(prefix, cluster=cluster)
        self.client: Redis | RedisCluster = (
            RedisCluster.from_url(redis_url.split(",")[0]) if cluster else Redis.from_url(redis_url)
        )

    async def keys(self) -> list[str]:
        names = [k.decode() for k in await keys_with_prefix(self.redis_url, self.prefix)]
        not_streams = (self.layout.dead_letter, self.layout.janitor_lock, self.layout.room_index)
        return sorted(k for k in names if k.startswith(f"{self.prefix}:events") and k not in not_streams)

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(stream, event) of every stored event, each stream in its order."""
        out = []
        for stream in await self.keys():
            for entry_id, fields in await self.client.xrange(stream):
                event = decode_event(fields[b"e"])
                out.append((stream, {"id": self.layout.event_id(stream, entry_id.decode()), "event": event}))
        return out

    async def summary(self, room: str) -> list[tuple[str, str]]:
        """(type, user id) of the room's events, in stream order."""
        return [(_type_name(e["event"]), e["event"].user.id) for _, e in await self.events() if e["event"].room == room]

    async def wait(self, room: str, count: int, timeout: float = 15.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while len(got := await self.summary(room)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} events of {room} not within {timeout} s: {got}")
            await asyncio.sleep(0.05)
        return got

    async def close(self) -> None:
        await self.client.aclose()


def _type_name(event: Any) -> str:
    """The ``type`` of a decoded event (its Struct tag)."""
    return str(type(event).__struct_config__.tag)


@pytest.fixture
async def streams(redis_url: str, redis_prefix: str, topology: str) -> AsyncIterator[Streams]:
    reader = Streams(redis_url, redis_prefix, cluster=topology == "cluster")
    yield reader
    await reader.close()


async def _joined(client: Client, room: str) -> None:
    reply = await client.join(room)
    assert reply["type"] == "joined", reply


async def test_each_event_once_across_two_gateways(
    start_gateway: Callable[..., Any],
    start_dispatcher: DispatcherFactory,
    receiver: WebhookReceiver,
    streams: Streams,
    token: Callable[..., str],
    redis_url: str,
    redis_prefix: str,
    topology: str,
) -> None:
    a = start_gateway(NODE_ID="gw-a", **EVENTS)
    b = start_gateway(NODE_ID="gw-b", **EVENTS)
    start_dispatcher(REDIS_URL=redis_url, WEBHOOK_DISCOVERY_INTERVAL="0.3")
    room = "ev-lobby"
    alice_a = await Client.connect(a.ws_url, token("alice"))
    alice_b = await Client.connect(b.ws_url, token("alice"))
    bob_b = await Client.connect(b.ws_url, token("bob"))
    try:
        await _joined(alice_a, room)
        assert await streams.wait(room, 2) == [("room_occupied", "alice"), ("user_joined", "alice")]
        await _joined(alice_b, room)  # alice's second connection, on the other gateway: no event
        await _joined(bob_b, room)
        assert (await streams.wait(room, 3))[2:] == [("user_joined", "bob")]
        ack = await alice_a.publish(room, 'hello "world" é', client_msg_id="m1")
        again = await alice_b.publish(room, 'hello "world" é', client_msg_id="m1")  # a retry: same entry
        assert again["offset"] == ack["offset"]
        plain = await bob_b.publish(room, "no client_msg_id")  # no idempotency key: stored all the same
        assert plain["type"] == "ack", plain
        assert (await streams.wait(room, 5))[3:] == [("message", "alice"), ("message", "bob")]
        await bob_b.leave(room)
        assert (await streams.wait(room, 6))[5:] == [("user_left", "bob")]
        await alice_a.leave(room)  # alice is still there on gw-b: no event
        await alice_b.close()  # her last connection: she leaves, the room is empty
        assert (await streams.wait(room, 8))[6:] == [("user_left", "alice"), ("room_vacated", "alice")]
    finally:
        for client in (alice_a, alice_b, bob_b):
            await client.close()

    stored = [e for _, e in await streams.events() if e["event"].room == room]
    assert len(stored) == 8  # a few presence refreshes later: still nothing more
    message = stored[3]["event"]
    assert isinstance(message, MessageEvent)
    assert (message.offset, message.epoch, message.text, message.kind) == (ack["offset"], ack["epoch"], 'hello "world" é', "message")
    assert message.user.id == "alice" and message.ts > 1_600_000_000_000
    second = stored[4]["event"]
    assert isinstance(second, MessageEvent) and (second.offset, second.text) == (ack["offset"] + 1, "no client_msg_id")
    if topology == "cluster":  # the stream of the room's own slot
        (stream,) = {s for s, e in await streams.events() if e["event"].room == room}
        assert key_slot(stream) == key_slot(RoomKeys(redis_prefix, room).log)

    accepted = receiver.wait_accepted(8, timeout=30)
    assert all(d.signature_ok for d in receiver.deliveries)
    assert sorted(e["id"] for e in accepted) == sorted(e["id"] for e in stored)
    typed = [e for d in receiver.deliveries for e in decode_batch(d.body)]
    assert Counter(_type_name(e) for e in typed) == Counter(
        {"room_occupied": 1, "user_joined": 2, "message": 2, "user_left": 2, "room_vacated": 1}
    )


async def test_every_kind_of_logged_entry_is_one_message_event(
    start_gateway: Callable[..., Any], streams: Streams, token: Callable[..., str]
) -> None:
    # The publish script appends the entry's frame whatever its kind: edits,
    # reactions and deletions need no events code of their own. A change
    # that stores nothing (a repeated reaction) appends nothing.
    a = start_gateway(NODE_ID="gw-a", **EVENTS)
    b = start_gateway(NODE_ID="gw-b", **EVENTS)
    room = "ev-kinds"
    async with await Client.connect(a.ws_url, token("alice")) as alice, await Client.connect(
        b.ws_url, token("bob")
    ) as bob:
        await _joined(alice, room)
        await _joined(bob, room)
        first = await alice.publish(room, "hello")
        assert (await alice.edit(room, first["offset"], "hello, edited"))["type"] == "ack"
        assert (await bob.react(room, first["offset"], "👍"))["type"] == "ack"
        repeat = await bob.react(room, first["offset"], "👍")
        assert repeat["type"] == "ack" and repeat.get("offset") is None, repeat
        assert (await alice.delete(room, first["offset"]))["type"] == "ack"
        await streams.wait(room, 7)
    entries = [e["event"] for _, e in await streams.events() if e["event"].room == room]
    logged = [e for e in entries if isinstance(e, MessageEvent)]
    assert [(e.kind, e.target, e.emoji, e.user.id) for e in logged] == [
        ("message", None, None, "alice"),
        ("edit", first["offset"], None, "alice"),
        ("react", first["offset"], "👍", "bob"),
        ("delete", first["offset"], None, "alice"),
    ]
    assert [e.offset for e in logged] == list(range(first["offset"], first["offset"] + 4))
    assert logged[1].text == "hello, edited"


async def test_a_killed_gateways_members_leave_once(
    start_gateway: Callable[..., Any],
    streams: Streams,
    token: Callable[..., str],
) -> None:
    # gw-a dies with alice in two rooms: "shared" (bob stays, on gw-b) and
    # "alone" (nobody else). Both gateways' refreshes and sweeps run all along.
    a = start_gateway(NODE_ID="gw-a", **EVENTS, **FAST_PRESENCE)
    b = start_gateway(NODE_ID="gw-b", **EVENTS, **FAST_PRESENCE)
    alice = await Client.connect(a.ws_url, token("alice"))
    bob = await Client.connect(b.ws_url, token("bob"))
    try:
        await _joined(alice, "shared")
        await _joined(bob, "shared")
        await _joined(alice, "alone")
        await streams.wait("shared", 3)
        await streams.wait("alone", 2)
        a.kill()  # SIGKILL: no leave, no clean-up
        left = await bob.recv_type("presence_leave", timeout=15)
        assert left["user"]["id"] == "alice"
        shared = await streams.wait("shared", 4)
        assert shared[3:] == [("user_left", "alice")], shared
        alone = await streams.wait("alone", 4)
        assert alone[2:] == [("user_left", "alice"), ("room_vacated", "alice")], alone
        # gw-b keeps refreshing and sweeping: nothing more is appended.
        before = len(await streams.events())
        await bob.request({"type": "presence", "room": "shared"})  # one more sweep, on demand
        assert len(await streams.events()) == before
        await bob.close()
        assert await streams.wait("shared", 6) == [
            ("room_occupied", "alice"), ("user_joined", "alice"), ("user_joined", "bob"),
            ("user_left", "alice"), ("user_left", "bob"), ("room_vacated", "bob"),
        ]
        assert await streams.summary("alone") == [
            ("room_occupied", "alice"), ("user_joined", "alice"), ("user_left", "alice"), ("room_vacated", "alice")
        ]
    finally:
        await alice.close()
        await bob.close()


async def test_events_off_create_no_stream(
    start_gateway: Callable[..., Any], streams: Streams, token: Callable[..., str], redis_url: str, redis_prefix: str
) -> None:
    gateway = start_gateway()  # EVENTS_MAXLEN unset: 0, off
    async with await Client.connect(gateway.ws_url, token("alice")) as alice:
        await _joined(alice, "quiet")
        await alice.publish("quiet", "hi")
        await alice.leave("quiet")
    keys = [k.decode() for k in await keys_with_prefix(redis_url, redis_prefix)]
    assert keys and not [k for k in keys if ":events" in k]
