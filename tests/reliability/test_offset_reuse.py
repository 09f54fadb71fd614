"""Contract §9: an offset is never reused. A failover that loses the newest
writes (simulated by removing them from the room's log in the real Redis)
makes the room's newest offset fall below what the gateways delivered; both
gateways notice by themselves, the room gets ONE new epoch, every member a
`reset`, and new messages count from 1 under it."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from switchboard.client import Client
from switchboard.backplane.keys import RoomKeys

from .conftest import api_publish, assert_contiguous, collect_until, metric, offsets

# Simulates the lost writes with a plain client on one Redis; the cluster
# counterpart (a real failover that loses writes) is in test_cluster_faults.py.
pytestmark = pytest.mark.single_redis


async def lose_newest_writes(redis_url: str, prefix: str, room: str, keep: int) -> None:
    """What a failover to a replica that lagged behind looks like in Redis."""
    keys = RoomKeys(prefix, room)
    redis = Redis.from_url(redis_url)
    try:
        # The replica never had the newest entries: rebuild the stream without
        # them (XDEL alone would leave its last id, and its offsets, ahead).
        kept = await redis.xrange(keys.log, "-", f"{keep}-0")
        ttl = await redis.ttl(keys.log)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.log)
            for entry_id, fields in kept:
                pipe.xadd(keys.log, fields, id=entry_id)
            pipe.expire(keys.log, max(ttl, 60))
            pipe.hset(keys.meta, "s", keep)
            await pipe.execute()
    finally:
        await redis.aclose()


async def test_lost_writes_give_the_room_a_new_epoch(start_gateway, redis_url, redis_prefix, token) -> None:
    gateways = [start_gateway(NODE_ID=f"gw-{n}", POSITION_CHECK_INTERVAL=0.3) for n in "ab"]
    room = "failover"
    clients = [await Client.connect(gateways[i % 2].ws_url, token(f"user{i}")) for i in range(4)]
    try:
        for client in clients:
            await client.join(room)
        for n in range(5):
            await clients[0].publish(room, f"old-{n}")
        for client in clients:
            seen = await collect_until(client, room, 5)
            assert_contiguous(offsets(seen), 1, 5)
        old_epoch = seen[-1]["epoch"]

        await lose_newest_writes(redis_url, redis_prefix, room, keep=3)
        # Nothing is published: each gateway's position check sees 3 < 5.
        resets = []
        for index, client in enumerate(clients):
            frame = await client.recv(timeout=10)
            assert frame["type"] == "reset", (index, frame)
            assert frame["room"] == room and frame["offset"] == 0 and frame["epoch"] != old_epoch
            resets.append(frame["epoch"])
        assert len(set(resets)) == 1, resets  # renewed once, although both gateways noticed
        renewals = [await metric(gw, "switchboard_offset_reuses_total") for gw in gateways]
        assert sum(renewals) >= 1, renewals

        for n in range(3):
            ack = await clients[1].publish(room, f"new-{n}")
            assert ack["type"] == "ack" and (ack["epoch"], ack["offset"]) == (resets[0], n + 1), ack
        for client in clients:
            seen = await collect_until(client, room, 3)
            assert [(m["epoch"], m["offset"], m["text"]) for m in seen] == [
                (resets[0], n + 1, f"new-{n}") for n in range(3)
            ]
        # A client resuming from before the failover learns it cannot recover.
        late = await Client.connect(gateways[0].ws_url, token("late"))
        clients.append(late)
        joined = await late.join(room, since={"offset": 5, "epoch": old_epoch})
        assert joined["recovered"] is False and joined["epoch"] == resets[0]
    finally:
        for client in clients:
            await client.close()


async def test_a_reused_offset_published_live_is_noticed(start_gateway, redis_url, redis_prefix, token) -> None:
    """Before any position check: the reused offset's message itself differs
    from the one delivered under that offset. It is published through a
    gateway that had heard of none of the lost writes (no member there), so
    the backplane does reuse the offset."""
    gateway = start_gateway(NODE_ID="gw-members", POSITION_CHECK_INTERVAL=60)
    bystander = start_gateway(NODE_ID="gw-bystander", POSITION_CHECK_INTERVAL=60)
    room = "reuse"
    client = await Client.connect(gateway.ws_url, token("alice"))
    try:
        await client.join(room)
        for n in range(3):
            await client.publish(room, f"old-{n}")
        await collect_until(client, room, 3)
        await lose_newest_writes(redis_url, redis_prefix, room, keep=1)
        reply = await api_publish(bystander, room, "reuses offset 2")
        assert reply.get("offset") == 2, reply  # the backplane did reuse it ...
        others: list[dict] = []
        while not others or others[-1]["type"] != "reset":
            others.append(await client.recv(timeout=10))
        assert all(f["type"] != "message" for f in others), others  # ... but members never see it
        new_epoch = others[-1]["epoch"]
        ack = await client.publish(room, "fresh")
        assert (ack["epoch"], ack["offset"]) == (new_epoch, 1)
        seen = await collect_until(client, room, 1)
        assert [(m["epoch"], m["offset"]) for m in seen] == [(new_epoch, 1)]
    finally:
        await client.close()


async def test_a_publish_through_a_gateway_that_heard_of_the_lost_writes_opens_a_new_epoch(
    start_gateway, redis_url, redis_prefix, token
) -> None:
    """The publisher's own gateway delivered offsets 2 and 3: its next
    publish must not be stored under offset 2 again, however fast it comes
    after the failover (no position check runs here)."""
    gateway = start_gateway(POSITION_CHECK_INTERVAL=60)
    room = "heard"
    client = await Client.connect(gateway.ws_url, token("alice"))
    try:
        await client.join(room)
        for n in range(3):
            await client.publish(room, f"old-{n}")
        old_epoch = (await collect_until(client, room, 3))[-1]["epoch"]
        await lose_newest_writes(redis_url, redis_prefix, room, keep=1)
        ack = await client.publish(room, "after the failover")
        assert ack["type"] == "ack" and ack["epoch"] != old_epoch and ack["offset"] == 1, ack
        frames = []
        while not frames or frames[-1]["type"] != "message":
            frames.append(await client.recv(timeout=10))
        assert [f["type"] for f in frames] == ["reset", "message"], frames
        assert frames[0]["epoch"] == ack["epoch"]
        assert (frames[1]["epoch"], frames[1]["offset"], frames[1]["text"]) == (ack["epoch"], 1, "after the failover")
    finally:
        await client.close()
