"""The stack on a Redis Cluster, for real: the documented command

    docker compose -f docker-compose.yml -f deploy/compose.cluster.yml \\
        --env-file deploy/offline.env up -d --build --scale gateway=4

brings up 3 primaries + 3 replicas, 4 gateways and HAProxy. Checked through
the load balancer and the Redis nodes themselves: the cluster formed, the
gateways run sharded pub/sub (a room's channel lives on its shard only, one
subscription connection per gateway there), and kill -9 of the room's
primary under continuous publishing (PUBLISH_DURABILITY=replicas, the
override's default) costs the members nothing: every acknowledged message
arrives once, in order, and no socket closes. ``down -v`` leaves nothing.

Skips with the reason when no Docker engine runs (see test_compose_stack.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from compose_harness import ROOT, Stack, connect, run, wait_ready

from switchboard.backplane.cluster import slot_of
from switchboard.client import Client, make_token
from switchboard_harness import free_port

GATEWAYS = 4
CLIENTS = 12
JWT_SECRET = "compose-cluster-secret-" + uuid.uuid4().hex
NODES = [f"redis-{n}" for n in range(1, 7)]

pytestmark = pytest.mark.docker


def free_net() -> str:
    """A /24 (as its first three octets) that no Docker network uses here."""
    taken = []
    for net_id in run(["docker", "network", "ls", "-q"], 30).split():
        for info in json.loads(run(["docker", "network", "inspect", net_id], 30)):
            for config in (info.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet") and ":" not in config["Subnet"]:
                    taken.append(ipaddress.ip_network(config["Subnet"], strict=False))
    for _ in range(1000):
        prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        candidate = ipaddress.ip_network(prefix + ".0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return prefix
    raise AssertionError("no free /24 for the cluster network")


@pytest.fixture(scope="module")
def stack(compose_env_file: list[str]) -> Iterator[Stack]:
    project = f"sbcluster{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_NET": free_net(),
        "JWT_SECRET": JWT_SECRET,
        "GATEWAY_IMAGE": "switchboard-gateway:compose-test",
    }
    s = Stack(project, port, env)
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "deploy" / "compose.cluster.yml")]
    s.compose = ["docker", "compose", "-p", project, *files, *compose_env_file]
    try:
        started = time.monotonic()
        s.dc("up", "-d", "--build", "--scale", f"gateway={GATEWAYS}", timeout=900)
        print(f"compose up --build (cluster): {time.monotonic() - started:.1f} s")
        wait_ready(s, GATEWAYS, deadline=time.monotonic() + 180)
        print(f"stack ready after {time.monotonic() - started:.1f} s")
        yield s
    finally:
        s.save_logs()
        s.down()


def redis_cli(s: Stack, node: str, *args: str) -> str:
    container = s.ids(node)[0]
    return run(["docker", "exec", container, "redis-cli", *args], 30)


def node_of_ip(s: Stack, ip: str) -> str:
    return NODES[int(ip.rsplit(".", 1)[1]) - 201]


def primaries(s: Stack, ask: str = "redis-1") -> dict[str, list[tuple[int, int]]]:
    """Primary service name -> slot ranges, from ``CLUSTER NODES`` of `ask`."""
    out: dict[str, list[tuple[int, int]]] = {}
    for line in redis_cli(s, ask, "cluster", "nodes").splitlines():
        fields = line.split()
        if len(fields) < 8 or "master" not in fields[2] or "fail" in fields[2]:
            continue
        ranges = []
        for item in fields[8:]:
            if item.startswith("["):
                continue  # a slot being migrated
            start, _, end = item.partition("-")
            ranges.append((int(start), int(end or start)))
        if ranges:
            out[node_of_ip(s, fields[1].split(":")[0])] = ranges
    return out


def owner_of(s: Stack, room: str, ask: str = "redis-1") -> str | None:
    """The primary serving the room's slot (None while it is failing over)."""
    slot = slot_of("{" + room + "}")
    for node, ranges in primaries(s, ask).items():
        if any(start <= slot <= end for start, end in ranges):
            return node
    return None


def test_the_cluster_formed_and_the_gateways_use_it(stack: Stack) -> None:
    info = redis_cli(stack, "redis-1", "cluster", "info")
    assert "cluster_state:ok" in info and "cluster_known_nodes:6" in info and "cluster_size:3" in info, info
    assert len(primaries(stack)) == 3
    logs = stack.dc("logs", "--no-color", "gateway", timeout=60)
    assert logs.count("backplane: redis cluster (sharded pub/sub)") == GATEWAYS, logs[-3000:]


async def test_sharded_fanout_survives_kill_of_the_rooms_primary(stack: Stack) -> None:
    room = f"cluster-{uuid.uuid4().hex[:8]}"
    channel = f"sb:{{{room}}}:ch"
    deadline = time.monotonic() + 60
    tokens = [make_token(JWT_SECRET, f"user{i}") for i in range(CLIENTS)]
    clients = list(await asyncio.gather(*(connect(stack, t, deadline) for t in tokens)))
    publisher = clients[0]
    members = clients[1:]
    received: list[list[dict[str, Any]]] = [[] for _ in members]
    readers: list[asyncio.Task[None]] = []
    try:
        nodes = Counter(c.node for c in clients)
        assert len(nodes) >= 3, f"sockets landed on too few gateways: {dict(nodes)}"
        assert all(j["type"] == "joined" for j in await asyncio.gather(*(c.join(room) for c in clients)))

        # Sharded: the room's channel is subscribed on its primary only, once
        # per gateway holding members, over one connection per gateway.
        owner = owner_of(stack, room)
        assert owner is not None
        for node in primaries(stack):
            numsub = redis_cli(stack, node, "pubsub", "shardnumsub", channel).split()
            assert int(numsub[-1]) == (len(nodes) if node == owner else 0), (node, numsub)
            assert redis_cli(stack, node, "pubsub", "channels").strip() == "", "classic pub/sub is not used"
        links = [line for line in redis_cli(stack, owner, "client", "list").splitlines() if "name=switchboard-sub-" in line]
        assert len(links) == len(nodes), links

        async def read(index: int, member: Client) -> None:
            while True:
                frame = await member.recv(timeout=120)
                if frame["type"] in ("message", "reset") and frame["room"] == room:
                    received[index].append(frame)

        readers = [asyncio.create_task(read(i, m)) for i, m in enumerate(members)]
        acks: list[dict[str, Any]] = []
        unavailable = 0
        stop = asyncio.Event()

        async def publish() -> None:
            nonlocal unavailable
            n = 0
            while not stop.is_set():
                reply = await publisher.publish(room, f"m{n}", client_msg_id=f"m{n}", timeout=20)
                if reply["type"] == "ack":
                    acks.append(reply)
                    n += 1
                else:
                    assert reply["code"] == "unavailable", reply
                    unavailable += 1
                await asyncio.sleep(0.02)  # pacing: the run spans the failover

        async def acked(count: int, timeout: float) -> None:
            async with asyncio.timeout(timeout):
                while len(acks) < count:
                    await asyncio.sleep(0.05)

        task = asyncio.create_task(publish())
        await acked(20, 30)
        victim = stack.ids(owner)[0]
        run(["docker", "kill", "--signal", "KILL", victim], 30)
        survivor = next(n for n in NODES if n != owner)
        failover_deadline = time.monotonic() + 60
        while owner_of(stack, room, ask=survivor) in (owner, None):  # until its replica is promoted
            assert time.monotonic() < failover_deadline, "no failover within 60 s"
            await asyncio.sleep(0.5)
        # Back as a replica of the promoted node: replicas durability can confirm again.
        if not stack.inspect([victim])[0]["State"]["Running"]:
            run(["docker", "start", victim], 60)
        await acked(len(acks) + 20, 90)
        stop.set()
        await asyncio.wait_for(task, 30)

        top, epoch = acks[-1]["offset"], acks[-1]["epoch"]
        assert {a["epoch"] for a in acks} == {epoch}
        async with asyncio.timeout(30):
            while any(not got or got[-1]["offset"] < top for got in received):
                await asyncio.sleep(0.1)
        texts = {a["offset"]: f"m{i}" for i, a in enumerate(acks)}
        for index, got in enumerate(received):
            assert [f["type"] for f in got] == ["message"] * len(got), f"member {index} got a reset"
            assert [f["offset"] for f in got] == list(range(1, top + 1)), f"member {index}"
            assert all(texts.get(f["offset"], f["text"]) == f["text"] for f in got)
        print(f"failover of {owner}: {unavailable} publishes answered unavailable, none lost")
        for client in clients:  # no socket closed
            assert (await client.ping())["type"] == "pong"
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def test_down_removes_everything(stack: Stack) -> None:
    assert any(stack.leftovers().values()), "the stack should exist before down"
    stack.down()
    assert stack.leftovers() == {"container": [], "volume": [], "network": []}
