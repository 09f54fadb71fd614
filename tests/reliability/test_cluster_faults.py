"""Redis Cluster faults (contract §9), real processes, nothing mocked: each
test gets its own cluster of six ``redis-server --cluster-enabled yes``
(3 primaries + 3 replicas, with a password) and real gateway processes.

- kill -9 of a primary under continuous publishing, PUBLISH_DURABILITY=replicas:
  every acknowledged message reaches every member exactly once, contiguous,
  no offset carries two messages, no socket closes; the failing shard's
  publishes are answered ``unavailable`` meanwhile, another shard's are not,
  ``/readyz`` stays 200;
- the same with ``primary`` and a replica that lacked the newest writes (a
  failover that loses messages members already saw): never an offset
  reused, members get a ``reset``;
- a live room's slot migrated to another primary while publishing, and a
  manual failover (the primary demoted while it stays up);
- recovery with ``since`` across a failover;
- every gateway's shard subscription connections killed, repeatedly;
- the cluster down (a minority left) and back empty: ``/readyz`` follows
  ``cluster_state``, rooms that lost their history get a ``reset``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from switchboard.backplane.cluster import slot_of
from switchboard.client import Client
from switchboard_harness import GatewayProcess, RedisClusterProcess

from .conftest import assert_contiguous, collect_until, offsets, wait_until

pytestmark = pytest.mark.cluster_only

PASSWORD = "cluster-test-password"
FAST = dict(PUBLISH_RATE=1000, PUBLISH_BURST=1000, ABUSE_ERRORS=100000)


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterProcess]:
    """A private cluster the test may kill, cut and reshard."""
    cluster = RedisClusterProcess(password=PASSWORD).start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


def room_on(cluster: RedisClusterProcess, port: int, stem: str) -> str:
    """A room name whose hash slot the primary on `port` serves."""
    ranges = cluster.slots_of(port)
    for n in range(10_000):
        room = f"{stem}{n}"
        slot = slot_of("{" + room + "}")
        if any(start <= slot <= end for start, end in ranges):
            return room
    raise AssertionError(f"no room name found for {port}")


@dataclass
class Publisher:
    """Publishes numbered messages with client_msg_id, retrying each until
    acknowledged (``unavailable`` and ``outcome_unknown`` are the only errors it accepts)."""

    client: Client
    room: str
    name: str
    pace: float = 0.01
    acks: list[dict[str, Any]] = field(default_factory=list)
    unavailable: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            text = f"{self.name}-{n}"
            reply = await self.client.publish(self.room, text, client_msg_id=text, timeout=20)
            if reply["type"] == "ack":
                self.acks.append({**reply, "text": text, "at": time.monotonic()})
                n += 1
            else:
                assert reply["code"] in ("unavailable", "outcome_unknown"), reply  # both retried with the same id
                self.unavailable.append(time.monotonic())
            await asyncio.sleep(self.pace)  # pacing: the run spans the fault

    def acked_since(self, moment: float) -> int:
        return sum(1 for ack in self.acks if ack["at"] >= moment)


class Recorder:
    """Every ``message`` and ``reset`` frame a client receives, per room, in
    arrival order (one reader per client: frames are not shared out)."""

    def __init__(self, client: Client, room: str) -> None:
        self.client = client
        self.room = room  # the default room of the views below
        self.by_room: dict[str, list[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            frame = await self.client.recv(timeout=120)
            if frame["type"] in ("message", "reset"):
                self.by_room.setdefault(frame["room"], []).append(frame)
                self._changed.set()

    def frames(self, room: str | None = None) -> list[dict[str, Any]]:
        return self.by_room.get(room or self.room, [])

    def messages(self, room: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames(room) if f["type"] == "message"]

    def has(self, epoch: str, offset: int, room: str | None = None) -> bool:
        return any(f["epoch"] == epoch and f["offset"] >= offset for f in self.messages(room))

    async def _until(self, check: Any, timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            tail = {r: [(f["type"], f["epoch"][:4], f["offset"]) for f in fs[-4:]] for r, fs in self.by_room.items()}
            raise AssertionError(f"{self.client.node}: {what} not within {timeout} s; last frames {tail}") from None

    async def wait_for(self, epoch: str, offset: int, room: str | None = None, timeout: float = 20.0) -> None:
        await self._until(lambda: self.has(epoch, offset, room), timeout, f"({epoch}, {offset}) of {room or self.room}")

    async def wait_reset(self, room: str | None = None, timeout: float = 20.0) -> None:
        await self._until(lambda: any(f["type"] == "reset" for f in self.frames(room)), timeout, "a reset")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def assert_never_reused(recorders: list[Recorder], room: str | None = None) -> dict[tuple[str, int], str]:
    """Each member: within an epoch, offsets 1, 2, 3, ... once each (a
    ``reset`` starts the next epoch at 0); across members, one (epoch,
    offset) is one message. Returns (epoch, offset) -> text."""
    seen: dict[tuple[str, int], str] = {}
    for index, rec in enumerate(recorders):
        epoch, last = None, 0
        for frame in rec.frames(room):
            if frame["type"] == "reset":
                assert frame["offset"] == 0 and frame["epoch"] != epoch, (index, frame)
                epoch, last = frame["epoch"], 0
                continue
            if epoch is None:
                epoch, last = frame["epoch"], frame["offset"] - 1
            assert frame["epoch"] == epoch, f"member {index}: epoch changed without a reset: {frame}"
            assert frame["offset"] == last + 1, f"member {index}: offset {frame['offset']} after {last} in {epoch}"
            last = frame["offset"]
            key = (frame["epoch"], frame["offset"])
            assert seen.setdefault(key, frame["text"]) == frame["text"], f"{key} carries two messages"
    return seen


async def sample_readiness(gateways: list[GatewayProcess], stop: asyncio.Event, out: list[int]) -> None:
    """/readyz of every gateway, ten times a second (a probe that gets no
    answer within its 1 s, on a loaded machine, is not a 503: skipped)."""
    while not stop.is_set():
        for gateway in gateways:
            status = await asyncio.to_thread(gateway.status, "/readyz")
            if status is not None:
                out.append(status)
        await asyncio.sleep(0.1)  # a sampling period, not synchronisation


async def assert_all_open(clients: list[Client]) -> None:
    for client in clients:
        assert (await client.ping())["type"] == "pong", "a socket closed"


# --- kill -9 of a primary ------------------------------------------------------------------------------


async def test_failover_with_replica_durability_loses_no_acknowledged_message(
    start_gateway, redis_cluster: RedisClusterProcess, token
) -> None:
    cluster = redis_cluster
    env = dict(redis=cluster.url, PUBLISH_DURABILITY="replicas", **FAST)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    victim, survivor = cluster.primary_ports()[:2]
    hot, calm = room_on(cluster, victim, "hot"), room_on(cluster, survivor, "calm")

    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(4)]
    publishers = [await Client.connect(gateways[i].ws_url, token(f"pub{i}")) for i in range(2)]
    calm_client = await Client.connect(gateways[1].ws_url, token("calm"))
    clients = [*members, *publishers, calm_client]
    recorders: list[Recorder] = []
    try:
        for client in [*members, *publishers]:
            assert (await client.join(hot))["type"] == "joined"
        assert (await calm_client.join(calm))["type"] == "joined"
        recorders = [Recorder(m, hot) for m in members]
        pubs = [Publisher(publishers[i], hot, f"p{i}") for i in range(2)]
        calm_pub = Publisher(calm_client, calm, "calm", pace=0.02)
        running = [asyncio.create_task(p.run()) for p in [*pubs, calm_pub]]
        readiness: list[int] = []
        sampling_stop = asyncio.Event()
        sampler = asyncio.create_task(sample_readiness(gateways, sampling_stop, readiness))

        await wait_until(lambda: sum(len(p.acks) for p in pubs) >= 40, 20, "40 messages before the kill")
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, victim)
        promoted = await asyncio.to_thread(cluster.wait_failover, victim)
        failed_over_at = time.monotonic()
        assert cluster.owner_of_key("{" + hot + "}") == promoted != victim
        # The promoted replica has no replica of its own: WAIT cannot confirm
        # until the killed node is back (as its replica).
        await asyncio.to_thread(cluster.restart, victim)
        back_at = time.monotonic()
        await wait_until(lambda: sum(p.acked_since(back_at) for p in pubs) >= 40, 30, "40 messages after")
        for p in [*pubs, calm_pub]:
            p.stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        sampling_stop.set()
        await sampler

        acked = [ack for p in pubs for ack in p.acks]
        epoch = acked[0]["epoch"]
        assert {ack["epoch"] for ack in acked} == {epoch}, "replicas durability: no acknowledged message lost"
        top = max(ack["offset"] for ack in acked)
        for rec in recorders:
            await rec.wait_for(epoch, top)
        seen = assert_never_reused(recorders)
        for index, rec in enumerate(recorders):
            assert not [f for f in rec.frames() if f["type"] == "reset"], f"member {index} got a reset"
            got = offsets(rec.messages())
            assert_contiguous(got, 1, got[-1], f"member {index}")
            assert [m["text"] for m in rec.messages()] == [m["text"] for m in recorders[0].messages()]
        for ack in acked:  # every acknowledged message, where its ack says
            assert seen.get((epoch, ack["offset"])) == ack["text"], ack

        unavailable_hot = [t for p in pubs for t in p.unavailable]
        assert any(killed_at <= t for t in unavailable_hot), "the failing shard should answer unavailable"
        assert calm_pub.unavailable == [], "a healthy shard's room was disturbed"
        assert calm_pub.acked_since(killed_at) > 0 and any(
            killed_at <= a["at"] <= failed_over_at for a in calm_pub.acks
        ), "the healthy shard kept acknowledging during the failover"
        assert readiness and set(readiness) == {200}, f"/readyz left 200 during a one-shard failover: {set(readiness)}"
        await assert_all_open(clients)
    finally:
        for rec in recorders:
            await rec.stop()
        for client in clients:
            await client.close()


async def test_failover_that_loses_writes_never_reuses_an_offset(
    start_gateway, redis_cluster: RedisClusterProcess, token
) -> None:
    """PUBLISH_DURABILITY=primary: a failover to a replica that lacked the
    newest writes (its link was cut first) loses messages members saw. The
    room must get a new epoch and a ``reset``, never a second message at an
    offset already delivered."""
    cluster = redis_cluster
    env = dict(redis=cluster.url, POSITION_CHECK_INTERVAL=1, **FAST)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    victim = cluster.primary_ports()[0]
    room = room_on(cluster, victim, "lossy")
    replica = cluster.replica_of(victim)
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(4)]
    publisher = await Client.connect(gateways[0].ws_url, token("pub"))
    clients = [*members, publisher]
    recorders: list[Recorder] = []
    try:
        for client in clients:
            await client.join(room)
        recorders = [Recorder(m, room) for m in members]
        pub = Publisher(publisher, room, "p")
        running = asyncio.create_task(pub.run())
        await wait_until(lambda: len(pub.acks) >= 20, 20, "20 messages, replicated")
        await asyncio.to_thread(cluster.cut_replication, replica)
        cut_at = time.monotonic()
        await wait_until(lambda: pub.acked_since(cut_at) >= 20, 20, "20 messages the replica never gets")
        old_epoch, lost_top = pub.acks[-1]["epoch"], pub.acks[-1]["offset"]
        for rec in recorders:
            await rec.wait_for(old_epoch, lost_top)
        await asyncio.to_thread(cluster.kill, victim)
        await asyncio.to_thread(cluster.wait_failover, victim)
        cluster.restore_replication(replica)
        await asyncio.to_thread(cluster.restart, victim)
        # Every member learns that history was lost, without more traffic needed.
        for rec in recorders:
            await rec.wait_reset()
        reset_at = time.monotonic()
        await wait_until(lambda: pub.acked_since(reset_at) >= 20, 30, "20 messages after the reset")
        pub.stop.set()
        await asyncio.wait_for(running, 30)

        new_epoch = pub.acks[-1]["epoch"]
        assert new_epoch != old_epoch
        for rec in recorders:
            await rec.wait_for(new_epoch, pub.acks[-1]["offset"])
        seen = assert_never_reused(recorders)
        for ack in pub.acks:
            if ack["epoch"] == new_epoch:
                assert seen.get((new_epoch, ack["offset"])) == ack["text"], ack
        await assert_all_open(clients)
    finally:
        for rec in recorders:
            await rec.stop()
        for client in clients:
            await client.close()


async def test_recovery_with_since_across_a_failover(start_gateway, redis_cluster: RedisClusterProcess, token) -> None:
    cluster = redis_cluster
    env = dict(redis=cluster.url, PUBLISH_DURABILITY="replicas", **FAST)
    a, b = start_gateway(NODE_ID="gw-a", **env), start_gateway(NODE_ID="gw-b", **env)
    victim = cluster.primary_ports()[0]
    room = room_on(cluster, victim, "resume")
    publisher = await Client.connect(b.ws_url, token("pub"))
    reader = await Client.connect(a.ws_url, token("reader"))
    try:
        await publisher.join(room)
        await reader.join(room)
        for n in range(5):
            assert (await publisher.publish(room, f"before-{n}", client_msg_id=f"b{n}"))["type"] == "ack"
        seen = await collect_until(reader, room, 5)
        epoch = seen[-1]["epoch"]
        await reader.close()

        for n in range(5):  # while the reader is away, before the failover
            assert (await publisher.publish(room, f"away-{n}", client_msg_id=f"a{n}"))["type"] == "ack"
        await asyncio.to_thread(cluster.kill, victim)
        await asyncio.to_thread(cluster.wait_failover, victim)
        await asyncio.to_thread(cluster.restart, victim)
        for n in range(5):  # and after it (retried until the shard accepts again)
            cmid = f"c{n}"
            deadline = time.monotonic() + 20
            while (reply := await publisher.publish(room, f"after-{n}", client_msg_id=cmid))["type"] != "ack":
                assert reply["code"] == "unavailable" and time.monotonic() < deadline, reply
                await asyncio.sleep(0.05)  # retry interval
        assert reply["offset"] == 15 and reply["epoch"] == epoch

        reader = await Client.connect(a.ws_url, token("reader"))
        joined = await reader.join(room, since={"offset": 5, "epoch": epoch})
        assert joined["recovered"] is True, joined
        assert offsets(joined["messages"]) == list(range(6, 16))
        assert [m["text"] for m in joined["messages"]] == [f"away-{n}" for n in range(5)] + [
            f"after-{n}" for n in range(5)
        ]
    finally:
        await publisher.close()
        await reader.close()


async def test_manual_failover_of_a_live_room_loses_nothing(
    start_gateway, redis_cluster: RedisClusterProcess, token
) -> None:
    """``CLUSTER FAILOVER``: the primary is demoted to a replica while it
    stays up; no connection is lost. Redis 7.0 tells its shard subscribers
    with a ``sunsubscribe`` (older servers said nothing: then the gateways'
    slot-map check moves them). The periodic position check is off (600 s):
    what pub/sub missed during the handover comes from the resubscription."""
    cluster = redis_cluster
    env = dict(redis=cluster.url, PUBLISH_DURABILITY="replicas", POSITION_CHECK_INTERVAL=600, **FAST)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    primary = cluster.primary_ports()[0]
    room = room_on(cluster, primary, "handover")
    channel = f"{gateways[0].env['REDIS_PREFIX']}:{{{room}}}:ch"
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(4)]
    publishers = [await Client.connect(gateways[i].ws_url, token(f"pub{i}")) for i in range(2)]
    clients = [*members, *publishers]
    recorders: list[Recorder] = []
    try:
        for client in clients:
            await client.join(room)
        recorders = [Recorder(m, room) for m in members]
        pubs = [Publisher(publishers[i], room, f"p{i}") for i in range(2)]
        running = [asyncio.create_task(p.run()) for p in pubs]
        await wait_until(lambda: sum(len(p.acks) for p in pubs) >= 40, 20, "40 messages before the handover")
        promoted = cluster.replica_of(primary)
        assert await asyncio.to_thread(cluster.manual_failover, promoted) == primary
        moved_at = time.monotonic()
        await wait_until(lambda: sum(p.acked_since(moved_at) for p in pubs) >= 40, 30, "40 messages after")
        for p in pubs:
            p.stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 20)

        acked = [ack for p in pubs for ack in p.acks]
        epoch, top = acked[0]["epoch"], max(ack["offset"] for ack in acked)
        assert {ack["epoch"] for ack in acked} == {epoch}
        for rec in recorders:
            await rec.wait_for(epoch, top)
        seen = assert_never_reused(recorders)
        for index, rec in enumerate(recorders):
            assert_contiguous(offsets(rec.messages()), 1, top, f"member {index}")
        for ack in acked:
            assert seen[(epoch, ack["offset"])] == ack["text"]
        await wait_until(
            lambda: cluster.command(promoted, "PUBSUB", "SHARDNUMSUB", channel)[1] == 2, 10, "both gateways moved"
        )
        assert cluster.command(primary, "PUBSUB", "SHARDNUMSUB", channel)[1] == 0
        await assert_all_open(clients)
    finally:
        for rec in recorders:
            await rec.stop()
        for client in clients:
            await client.close()


# --- resharding --------------------------------------------------------------------------------------------


async def test_slot_migration_of_a_live_room_loses_nothing(
    start_gateway, redis_cluster: RedisClusterProcess, token
) -> None:
    """The periodic position check is off (600 s): what the gateways missed
    while the slot moved must come from their own resubscription."""
    cluster = redis_cluster
    env = dict(redis=cluster.url, POSITION_CHECK_INTERVAL=600, **FAST)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    source, target = cluster.primary_ports()[:2]
    room = room_on(cluster, source, "moving")
    channel = f"{gateways[0].env['REDIS_PREFIX']}:{{{room}}}:ch"
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(4)]
    publishers = [await Client.connect(gateways[i].ws_url, token(f"pub{i}")) for i in range(2)]
    clients = [*members, *publishers]
    recorders: list[Recorder] = []
    try:
        for client in clients:
            await client.join(room)
        assert cluster.command(source, "PUBSUB", "SHARDNUMSUB", channel)[1] == 2
        recorders = [Recorder(m, room) for m in members]
        pubs = [Publisher(publishers[i], room, f"p{i}") for i in range(2)]
        running = [asyncio.create_task(p.run()) for p in pubs]
        await wait_until(lambda: sum(len(p.acks) for p in pubs) >= 40, 20, "40 messages before the move")
        moved_keys = await asyncio.to_thread(cluster.migrate_slot, slot_of("{" + room + "}"), target)
        assert moved_keys > 0
        moved_at = time.monotonic()
        await wait_until(lambda: sum(p.acked_since(moved_at) for p in pubs) >= 40, 20, "40 messages after")
        for p in pubs:
            p.stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 20)

        acked = [ack for p in pubs for ack in p.acks]
        epoch, top = acked[0]["epoch"], max(ack["offset"] for ack in acked)
        for rec in recorders:
            await rec.wait_for(epoch, top)
        seen = assert_never_reused(recorders)
        for index, rec in enumerate(recorders):
            assert_contiguous(offsets(rec.messages()), 1, top, f"member {index}")
        for ack in acked:
            assert seen[(epoch, ack["offset"])] == ack["text"]

        # The subscriptions followed the slot: never deaf afterwards.
        await wait_until(
            lambda: cluster.command(target, "PUBSUB", "SHARDNUMSUB", channel)[1] == 2, 10, "both gateways on the new owner"
        )
        assert cluster.command(source, "PUBSUB", "SHARDNUMSUB", channel)[1] == 0
        last = await publishers[0].publish(room, "after the move", client_msg_id="final")
        for rec in recorders:
            await rec.wait_for(epoch, last["offset"], timeout=5)
        await assert_all_open(clients)
    finally:
        for rec in recorders:
            await rec.stop()
        for client in clients:
            await client.close()


# --- the subscription connections ---------------------------------------------------------------------


async def test_killed_shard_subscriptions_lose_nothing(start_gateway, redis_cluster: RedisClusterProcess, token) -> None:
    cluster = redis_cluster
    env = dict(redis=cluster.url, POSITION_CHECK_INTERVAL=600, **FAST)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    rooms = [room_on(cluster, port, "killed") for port in cluster.primary_ports()]
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"member{i}")) for i in range(2)]
    publishers = [await Client.connect(gateways[i % 2].ws_url, token(f"pub{i}")) for i in range(3)]
    clients = [*members, *publishers]
    recorders: list[Recorder] = []
    try:
        for member in members:
            for room in rooms:
                await member.join(room)
        for publisher, room in zip(publishers, rooms):
            await publisher.join(room)
        recorders = [Recorder(m, rooms[0]) for m in members]
        pubs = [Publisher(publisher, room, f"p{i}") for i, (publisher, room) in enumerate(zip(publishers, rooms))]
        running = [asyncio.create_task(p.run()) for p in pubs]
        killed = 0
        for round_ in range(3):
            wanted = 20 * (round_ + 1)
            await wait_until(lambda wanted=wanted: min(len(p.acks) for p in pubs) >= wanted, 20, f"round {round_}")
            for port in cluster.primary_ports():
                killed += int(cluster.command(port, "CLIENT", "KILL", "TYPE", "pubsub"))
        await wait_until(lambda: min(len(p.acks) for p in pubs) >= 80, 20, "traffic after the kills")
        for p in pubs:
            p.stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 20)
        assert killed >= 2 * 3, f"the kills hit only {killed} subscription connections"
        for p, room in zip(pubs, rooms):
            epoch, top = p.acks[0]["epoch"], p.acks[-1]["offset"]
            for rec in recorders:
                await rec.wait_for(epoch, top, room)
                assert_contiguous(offsets(rec.messages(room)), 1, top, f"{room} on {rec.client.node}")
            assert_never_reused(recorders, room)
        await assert_all_open(clients)
    finally:
        for rec in recorders:
            await rec.stop()
        for client in clients:
            await client.close()


# --- readiness ------------------------------------------------------------------------------------------------


async def test_cluster_down_and_back_empty(start_gateway, redis_cluster: RedisClusterProcess, token) -> None:
    """The cluster counterpart of test_redis_restart.py. Two of three
    primaries are killed: the rest is a minority, ``cluster_state:fail``, and
    /readyz says so; publishes are answered ``unavailable``; sockets stay. The
    two come back without their data (no persistence here, and their replicas
    could not be promoted without a majority): rooms there get a ``reset`` by
    themselves, without new traffic, then offsets from 1; a room on the
    surviving shard keeps its epoch and history."""
    cluster = redis_cluster
    gateways = [start_gateway(NODE_ID=f"gw-{n}", redis=cluster.url) for n in "ab"]
    first, second, third = cluster.primary_ports()
    lost, kept = room_on(cluster, first, "lost"), room_on(cluster, third, "kept")
    clients = [await Client.connect(gateways[i % 2].ws_url, token(f"user{i}")) for i in range(4)]
    recorders: list[Recorder] = []
    try:
        for client in clients:
            await client.join(lost)
            await client.join(kept)
        recorders = [Recorder(c, lost) for c in clients]
        old = [await clients[0].publish(room, f"old {room}") for room in (lost, kept)]
        for rec in recorders:
            for ack in old:
                await rec.wait_for(ack["epoch"], ack["offset"], ack["room"])

        for port in (first, second):
            await asyncio.to_thread(cluster.kill, port)
        for gateway in gateways:
            await gateway.wait_status_async("/readyz", 503, timeout=15)
        reply = await clients[1].publish(kept, "while the cluster is down")
        assert reply["type"] == "error" and reply["code"] == "unavailable", reply

        for port in (first, second):
            await asyncio.to_thread(cluster.restart, port)
        for gateway in gateways:
            await gateway.wait_status_async("/readyz", 200, timeout=20)
        for rec in recorders:  # nothing published yet: the reset comes by itself
            await rec.wait_reset(lost)
        resets = [[f for f in rec.frames(lost) if f["type"] == "reset"] for rec in recorders]
        assert all(len(r) == 1 and r[0]["epoch"] != old[0]["epoch"] and r[0]["offset"] == 0 for r in resets), resets
        assert not [f for rec in recorders for f in rec.frames(kept) if f["type"] == "reset"]

        new = [await clients[2].publish(room, f"new {room}") for room in (lost, kept)]
        assert (new[0]["offset"], new[0]["epoch"]) == (1, resets[0][0]["epoch"])
        assert (new[1]["offset"], new[1]["epoch"]) == (2, old[1]["epoch"])
        for rec in recorders:
            for ack in new:
                await rec.wait_for(ack["epoch"], ack["offset"], ack["room"])
            assert offsets(rec.messages(kept)) == [1, 2]
        await assert_all_open(clients)
    finally:
        for rec in recorders:
            await rec.stop()
        for client in clients:
            await client.close()
