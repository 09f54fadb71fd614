"""The Redis Cluster command layer (switchboard.backplane.cluster) against a
real cluster: redirects, retries, durability, one shard's failure leaving
the others alone. One private cluster (with a password) for the module; the
tests that bend its topology put it back, the last one kills a primary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TryAgainError

from switchboard.backplane import Backplane
from switchboard.backplane.cluster import ClusterCommands, slot_of
from switchboard.backplane.pipeline import Durability, NotReplicated
from switchboard.protocol.frames import MessageBody, User
from switchboard_harness import RedisClusterProcess

ALICE = User("alice", "Alice")


def body(text: str) -> MessageBody:
    return MessageBody(user=ALICE, text=text, ts=int(time.time() * 1000))


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess(password="commands-test").start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
async def backplane(redis_cluster: RedisClusterProcess) -> AsyncIterator[Backplane]:
    commands = ClusterCommands(redis_cluster.url.split(","), Durability(replicas=1, timeout_ms=300))
    await commands.refresh()
    backplane = Backplane(commands, prefix="cc", durable=False)
    try:
        yield backplane
    finally:
        await commands.close()


def room_on(cluster: RedisClusterProcess, port: int, stem: str) -> str:
    ranges = cluster.slots_of(port)
    return next(
        f"{stem}{n}" for n in range(10_000) if any(a <= slot_of("{" + f"{stem}{n}" + "}") <= b for a, b in ranges)
    )


def commands_of(backplane: Backplane) -> ClusterCommands:
    assert isinstance(backplane.commands, ClusterCommands)
    return backplane.commands


async def test_moved_patches_a_stale_map(backplane: Backplane, redis_cluster: RedisClusterProcess) -> None:
    commands = commands_of(backplane)
    owner, other = redis_cluster.primary_ports()[:2]
    room = room_on(redis_cluster, owner, "moved")
    slot = slot_of("{" + room + "}")
    changes: list[int] = []
    commands.on_topology_change(lambda: changes.append(slot))
    commands.slots.patch(slot, ("127.0.0.1", other))  # a stale map
    result = await backplane.publish(room, body("redirected"))
    assert (result.offset, result.duplicate) == (1, False)
    assert commands.slots.owner(slot) == ("127.0.0.1", owner)
    assert changes, "listeners hear of the corrected map"


async def test_ask_and_tryagain_during_a_migration(backplane: Backplane, redis_cluster: RedisClusterProcess) -> None:
    cluster = redis_cluster
    commands = commands_of(backplane)
    source, target = cluster.primary_ports()[:2]
    room = room_on(cluster, source, "asked")
    slot = slot_of("{" + room + "}")
    await backplane.publish(room, body("one"))
    keys = backplane.keys(room)
    assert cluster.begin_migration(slot, target) == source
    try:
        # Half the room moved: a script on both keys cannot run anywhere yet (TRYAGAIN),
        # and is retried for the whole retry window before giving up.
        cluster.migrate_keys(slot, source, target, [keys.meta])
        started = time.monotonic()
        with pytest.raises(TryAgainError):
            await backplane.read_last(room, 10)
        assert time.monotonic() - started >= commands.retry_window_s - 0.3  # the last backoff may not fit
        # All of it moved: the source answers ASK, the target serves it after ASKING.
        cluster.migrate_keys(slot, source, target, [keys.log, keys.state])
        snap = await backplane.read_last(room, 10)
        assert (snap.top, len(snap.frames)) == (1, 1)
        assert (await backplane.publish(room, body("two"))).offset == 2
        assert commands.slots.owner(slot) == ("127.0.0.1", source), "ASK does not change the map"
    finally:
        await asyncio.to_thread(cluster.finish_migration, slot, target)
    assert (await backplane.publish(room, body("three"))).offset == 3  # MOVED now, then the map follows
    assert commands.slots.owner(slot) == ("127.0.0.1", target)


async def test_durable_publish_waits_for_a_replica(backplane: Backplane, redis_cluster: RedisClusterProcess) -> None:
    cluster = redis_cluster
    durable = Backplane(backplane.commands, prefix="cc", durable=True)
    primary = cluster.primary_ports()[-1]
    room = room_on(cluster, primary, "durable")
    first = await durable.publish(room, body("confirmed"), client_msg_id="m1")
    assert first.offset == 1
    replica = cluster.replica_of(primary)
    await asyncio.to_thread(cluster.cut_replication, replica)
    try:
        started = time.monotonic()
        with pytest.raises(NotReplicated):
            await durable.publish(room, body("not confirmed"), client_msg_id="m2")
        assert time.monotonic() - started >= 0.25  # WAIT waited its timeout (300 ms)
        # Not durable: acknowledged by the primary alone.
        assert (await backplane.publish(room, body("fast"))).offset == 3
    finally:
        cluster.restore_replication(replica)
    await asyncio.to_thread(cluster.wait_healthy)
    retried = await durable.publish(room, body("ignored"), client_msg_id="m2")
    assert (retried.offset, retried.duplicate) == (2, True), "the retry returns the stored message, now confirmed"


async def test_one_dead_primary_leaves_the_other_shards_alone(
    backplane: Backplane, redis_cluster: RedisClusterProcess
) -> None:
    cluster = redis_cluster
    victim, *others = cluster.primary_ports()
    dead_room = room_on(cluster, victim, "dead")
    live_rooms = [room_on(cluster, port, "alive") for port in others]
    await backplane.publish(dead_room, body("before"))
    await asyncio.to_thread(cluster.kill, victim)
    started = time.monotonic()
    for room in live_rooms:
        assert (await backplane.publish(room, body("unaffected"))).offset >= 1
    assert time.monotonic() - started < 1.0, "healthy shards answered at once"
    with pytest.raises((RedisConnectionError, OSError)):
        await backplane.publish(dead_room, body("lost shard"))  # not idempotent: not retried
    reads = await backplane.positions(live_rooms)
    assert all(top >= 1 for _, top in reads.values())
    promoted = await asyncio.to_thread(cluster.wait_failover, victim)
    snap = await backplane.read_last(dead_room, 10)  # idempotent: follows the failover
    assert snap.top == 1
    assert commands_of(backplane).owner("{" + dead_room + "}") == ("127.0.0.1", promoted)


async def test_a_one_primary_cluster_works_too() -> None:
    """The harness builds clusters redis-cli refuses (fewer than 3 primaries),
    for the benchmark's 1-vs-3 comparison; the backplane runs on them."""
    cluster = RedisClusterProcess(primaries=1, replicas=1).start()
    try:
        assert len(cluster.primary_ports()) == 1 and len(cluster.pids()) == 2
        commands = ClusterCommands(cluster.url.split(","), Durability(replicas=1, timeout_ms=1000))
        try:
            durable = Backplane(commands, prefix="one", durable=True)
            results = [await durable.publish(f"r{n}", body("hi")) for n in range(5)]
            assert [r.offset for r in results] == [1] * 5
        finally:
            await commands.close()
    finally:
        cluster.cleanup()
