"""It really is sharded (contract §9), asked of the Redis Cluster itself:
each room's channel is subscribed on the primary that owns its slot only
(``PUBSUB SHARDCHANNELS``), classic channels do not grow with rooms
(``PUBSUB CHANNELS``), and each gateway holds at most one subscription
connection per primary (``CLIENT LIST``), subscribing a room only while it
has members there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from switchboard.backplane.cluster import slot_of
from switchboard.backplane.connect import split_urls
from switchboard.backplane.control import CONTROL_ROOM, control_channel
from switchboard.client import Client
from switchboard_gateway.broker import subscription_client_name

pytestmark = pytest.mark.cluster_only

ROOMS = 24


async def eventually(check: Any, what: str, timeout: float = 5.0) -> None:
    """Poll a condition another connection makes true (Redis applies a
    SUNSUBSCRIBE after the gateway sent it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


class ClusterView:
    """Read-only questions to every primary of the test's cluster."""

    def __init__(self, seeds: str) -> None:
        self.clients: dict[int, redis.Redis] = {}
        seed = redis.Redis.from_url(split_urls(seeds)[0])
        try:
            self.slots = [(int(e[0]), int(e[1]), int(e[2][1])) for e in seed.execute_command("CLUSTER", "SLOTS")]
        finally:
            seed.close()
        kwargs = seed.connection_pool.connection_kwargs
        for port in {port for _, _, port in self.slots}:
            self.clients[port] = redis.Redis(host="127.0.0.1", port=port, password=kwargs.get("password"))

    def owner(self, room: str) -> int:
        slot = slot_of("{" + room + "}")
        return next(port for start, end, port in self.slots if start <= slot <= end)

    def shard_channels(self, port: int, prefix: str) -> set[str]:
        """The rooms' channels (not the gateways' one control channel)."""
        found = {c.decode() for c in self.clients[port].execute_command("PUBSUB", "SHARDCHANNELS", f"{prefix}:*")}
        return found - {control_channel(prefix)}

    def classic_channels(self, port: int) -> list[Any]:
        return list(self.clients[port].execute_command("PUBSUB", "CHANNELS"))

    def subscription_connections(self, port: int, name: str) -> list[dict[str, Any]]:
        return [c for c in self.clients[port].client_list() if c.get("name") == name]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


async def test_rooms_subscribe_on_their_shard_only(start_gateway, redis_url: str, redis_prefix: str, token) -> None:
    gateways = [start_gateway(NODE_ID=f"gw-{n}") for n in "ab"]
    view = ClusterView(redis_url)
    rooms = [f"shard{n}" for n in range(ROOMS)]

    def channel(room: str) -> str:
        return f"{redis_prefix}:{{{room}}}:ch"

    clients = [await Client.connect(gw.ws_url, token(f"user-{gw.node_id}")) for gw in gateways]
    try:
        assert len(view.clients) >= 3, "the test cluster has three primaries"
        by_owner: dict[int, set[str]] = {port: set() for port in view.clients}
        for room in rooms:
            by_owner[view.owner(room)].add(channel(room))
        assert all(by_owner.values()), f"{ROOMS} rooms should land on every primary: {by_owner}"

        for client in clients:
            for room in rooms:
                assert (await client.join(room))["type"] == "joined"
        for port, expected in by_owner.items():
            assert view.shard_channels(port, redis_prefix) == expected, f"primary {port}"
            assert view.classic_channels(port) == [], "classic pub/sub is broadcast cluster-wide: never used"
            for gw in gateways:
                links = view.subscription_connections(port, subscription_client_name(gw.node_id))
                assert len(links) == 1, f"{gw.node_id} has {len(links)} subscription connections on {port}"
                control = 1 if port == view.owner(CONTROL_ROOM) else 0  # the control channel's shard
                assert int(links[0]["ssub"]) == len(expected) + control and int(links[0]["sub"]) == 0, links[0]

        # Fan-out works through the shards: one message per room reaches both.
        for room in rooms[:6]:
            await clients[0].publish(room, f"hello {room}")
        for client in clients:
            got = {(await client.recv_type("message"))["room"] for _ in rooms[:6]}
            assert got == set(rooms[:6])

        # Only rooms with members here stay subscribed.
        for room in rooms[: ROOMS // 2]:
            for client in clients:
                assert (await client.leave(room))["type"] == "left"
        remaining = {channel(room) for room in rooms[ROOMS // 2 :]}
        for port, expected in by_owner.items():
            await eventually(
                lambda port=port, expected=expected: view.shard_channels(port, redis_prefix) == expected & remaining,
                f"on {port}",
            )
        await clients[0].close()  # gw-a has no members left
        name = subscription_client_name("gw-a")
        for port in view.clients:
            await eventually(
                # every room; the control channel stays (it is the gateway's, not a room's)
                lambda port=port: all(
                    int(c["ssub"]) == (1 if port == view.owner(CONTROL_ROOM) else 0)
                    for c in view.subscription_connections(port, name)
                ),
                f"gw-a unsubscribed every room on {port}",
            )
            # gw-b still delivers its rooms
            assert len(view.subscription_connections(port, subscription_client_name("gw-b"))) == 1
            assert view.shard_channels(port, redis_prefix) == by_owner[port] & remaining
    finally:
        for client in clients:
            await client.close()
        view.close()


async def test_many_concurrent_joins_all_subscribe(start_gateway, redis_url: str, redis_prefix: str, token) -> None:
    """150 rooms joined at once: their SSUBSCRIBEs go out together (one slot
    per command, Redis's rule), each is confirmed, and all of them deliver."""
    # 150 joins at once: over the default frame budget (FRAME_BURST), which is not what this tests.
    gateway = start_gateway(NODE_ID="gw-a", MAX_ROOMS_PER_CONNECTION=200, FRAME_RATE=1000, FRAME_BURST=1000)
    view = ClusterView(redis_url)
    rooms = [f"batch{n}" for n in range(150)]
    async with await Client.connect(gateway.ws_url, token("many")) as client:
        try:
            joined = await asyncio.gather(*(client.join(room) for room in rooms))
            assert all(j["type"] == "joined" for j in joined)
            total = sum(len(view.shard_channels(port, redis_prefix)) for port in view.clients)
            assert total == len(rooms)
            for room in rooms[::25]:
                await client.publish(room, "ping " + room)
            got = {(await client.recv_type("message"))["room"] for _ in rooms[::25]}
            assert got == set(rooms[::25])
        finally:
            view.close()
