"""Guarantee 2: no loss while connected, across the gateway's own pub/sub
connection being killed by Redis (CLIENT KILL TYPE pubsub), repeatedly,
while two publishers on two gateways run."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.client import Client

from .conftest import assert_contiguous, collect_until, metric, offsets, wait_until

# One redis-server restarted or its pub/sub clients killed; the cluster
# counterpart is test_cluster_faults.py.
pytestmark = pytest.mark.single_redis


def pubsub_clients(redis_server) -> int:  # type: ignore[no-untyped-def]
    listing = redis_server.command("CLIENT", "LIST", "TYPE", "pubsub").decode()
    return listing.count("cmd=")


# POSITION_CHECK_INTERVAL 0.5: both ways of filling may run. 600: the periodic
# check never runs during the test, so the fill must come from the
# resubscribe catch-up alone.
@pytest.mark.parametrize("position_check", ["0.5", "600"])
async def test_pubsub_kill_loses_nothing(start_gateway, redis_server, token, position_check) -> None:
    env = dict(redis=redis_server.url, PUBLISH_RATE=500, PUBLISH_BURST=500, POSITION_CHECK_INTERVAL=position_check)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    room = "killed"
    per_publisher = 150
    total = 2 * per_publisher
    kills = 4
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(4)]
    publishers = [await Client.connect(gateways[i].ws_url, token(f"pub{i}")) for i in range(2)]
    clients = members + publishers
    try:
        for client in clients:
            joined = await client.join(room)
            assert joined["offset"] == 0
        await wait_until(lambda: pubsub_clients(redis_server) == 2, 10, "both gateways subscribed")
        collectors = [asyncio.create_task(collect_until(c, room, total, timeout=60)) for c in clients]
        acked = [0, 0]

        async def publish_all(index: int) -> None:
            for n in range(per_publisher):
                ack = await publishers[index].publish(room, f"p{index}-{n}")
                assert ack["type"] == "ack", ack
                acked[index] += 1
                await asyncio.sleep(0.004)  # pacing: the run spans the kills

        publishing = asyncio.gather(publish_all(0), publish_all(1))
        killed = 0
        for k in range(1, kills + 1):
            # Kill at evenly spread points of the run, each time once both
            # gateways are subscribed again (else the kill would hit nothing).
            await wait_until(lambda: sum(acked) >= k * total // (kills + 1), 30, f"publishing reached kill {k}")
            await wait_until(lambda: pubsub_clients(redis_server) == 2, 15, "both gateways resubscribed")
            reply = redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
            assert reply.startswith(b":"), reply
            killed += int(reply[1:].strip())
        await asyncio.wait_for(publishing, 60)
        assert killed >= 2 * kills, f"the kills hit only {killed} pub/sub connections"
        sequences = await asyncio.gather(*collectors)
        for index, seq in enumerate(sequences):
            assert_contiguous(offsets(seq), 1, total, f"client {index}")
        texts = [[m["text"] for m in seq] for seq in sequences]
        assert all(t == texts[0] for t in texts)
        for client in clients:  # exactly once: nothing trails in
            with pytest.raises(TimeoutError):
                await client.recv_type("message", timeout=0.2)
        fills = [await metric(gw, "switchboard_gap_fills_total") for gw in gateways]
        assert all(f >= 1 for f in fills), fills
    finally:
        for client in clients:
            await client.close()


async def test_messages_published_while_unsubscribed_arrive_without_more_traffic(
    start_gateway, redis_server, redis_prefix, token
) -> None:
    """The sharpest case for the resubscribe catch-up: messages land exactly
    while the gateways' pub/sub connections are dead (published in the same
    breath as the kill, before any reconnect), and nothing is published after
    them. The periodic position check is off (600 s)."""
    import time

    from redis.asyncio import Redis

    from switchboard.backplane import Backplane
    from switchboard.backplane.commands import StandaloneCommands
    from switchboard.protocol.frames import MessageBody, User

    env = dict(redis=redis_server.url, POSITION_CHECK_INTERVAL=600)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    room = "blindspot"
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(4)]
    redis = Redis.from_url(redis_server.url)
    backplane = Backplane(StandaloneCommands(redis), prefix=redis_prefix)
    try:
        for client in members:
            await client.join(room)
        await wait_until(lambda: pubsub_clients(redis_server) == 2, 10, "both gateways subscribed")
        first = await backplane.publish(room, MessageBody(User("sys", "sys"), "before", int(time.time() * 1000)))
        assert first.offset == 1
        for client in members:
            assert offsets(await collect_until(client, room, 1)) == [1]

        for round_ in range(3):
            killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            for n in range(5):  # the gateways reconnect after >= 50 ms of backoff: these land in the gap
                await backplane.publish(room, MessageBody(User("sys", "sys"), f"r{round_}-{n}", int(time.time() * 1000)))
            assert killed == 2
            assert pubsub_clients(redis_server) == 0, "a gateway resubscribed before the publishes"
            top = 1 + 5 * (round_ + 1)
            for index, client in enumerate(members):
                got = await collect_until(client, room, top, timeout=15)
                assert_contiguous(offsets(got), top - 4, top, f"member {index}, round {round_}")
            await wait_until(lambda: pubsub_clients(redis_server) == 2, 10, "both gateways resubscribed")
        for client in members:
            with pytest.raises(TimeoutError):
                await client.recv_type("message", timeout=0.2)
    finally:
        await redis.aclose()
        for client in members:
            await client.close()
