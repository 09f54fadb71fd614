"""Redis CPU per published message: one Redis, a 1-primary cluster, a
3-primary cluster, sharded ``SPUBLISH`` vs classic ``PUBLISH``
(docs/performance.md, "Redis Cluster").

``python -m bench.cluster [--messages N] [--rooms R] [--reps K] [--out DIR]``

Every topology runs at once on loopback (real ``redis-server`` processes from
the harness); the rows interleave (A B C D, A B C D, ...) so a noisy
neighbour hits every row alike, and the medians over the repetitions are
reported. Messages go through ``Backplane.publish`` (the gateway's Lua
script: history append + fan-out) with bounded concurrency, to ``rooms``
rooms, each subscribed by ``SUBSCRIBERS`` "gateways" (raw connections that
count what they receive): on a cluster with sharded pub/sub a gateway holds
one connection per primary and ``SSUBSCRIBE``s there to the rooms that primary
owns; with classic pub/sub gateway g ``SUBSCRIBE``s on primary ``g % n`` (any
node works, because a classic ``PUBLISH`` is broadcast over the cluster bus
to every node). Either way every message is delivered ``SUBSCRIBERS`` times.

Redis CPU is ``used_cpu_sys + used_cpu_user`` of ``INFO cpu`` (getrusage of
the whole server process, µs resolution) on every node of the topology,
before the first publish and after the last delivery arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

ROOT = Path(__file__).resolve().parents[1]
for _path in ("services/shared", "tests/harness"):
    if str(ROOT / _path) not in sys.path:
        sys.path.insert(0, str(ROOT / _path))

from switchboard.backplane.connect import open_backplane  # noqa: E402
from switchboard.backplane.store import Backplane  # noqa: E402
from switchboard.protocol import frames  # noqa: E402
from switchboard_harness import RedisProcess  # noqa: E402
from switchboard_harness.cluster import RedisClusterProcess  # noqa: E402

SUBSCRIBERS = 3  # gateways subscribed to every room
CONCURRENCY = 64  # publishes in flight (default of --concurrency)
DELIVERY_DEADLINE = 60.0  # s after the last publish for every copy to arrive
MARKER = b"message\r\n"  # ends the kind field of "message" and "smessage" pushes
TEXT = "x" * 100


@dataclass
class Topology:
    """A running Redis (or cluster): its URL, its nodes' ports (primaries first), and
    for a cluster the owner port of every slot."""

    name: str
    url: str
    ports: list[int]
    cluster: bool
    slot_owner: dict[int, int] = field(default_factory=dict)

    def owner(self, channel: str) -> int:
        return self.slot_owner[key_slot(channel.encode())] if self.cluster else self.ports[0]


@dataclass
class Row:
    topology: Topology
    command: str  # PUBLISH or SPUBLISH

    @property
    def name(self) -> str:
        return f"{self.topology.name}/{self.command}"


def resp(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Subscriber:
    """One pub/sub connection that counts the messages pushed to it (it only
    counts: the cost measured is Redis's)."""

    def __init__(self, port: int, command: str, channels: list[str]) -> None:
        self.port = port
        self.command = command
        self.channels = channels
        self.received = 0
        self._tail = b""
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer = writer
        if self.command == "SSUBSCRIBE":
            # one command per channel: an SSUBSCRIBE may only name channels of one slot
            writer.write(b"".join(resp(self.command, c) for c in self.channels))
        else:
            writer.write(resp(self.command, *self.channels))
        await writer.drain()
        confirmations = b""
        # every channel is confirmed by a ["subscribe"|"ssubscribe", channel, count] reply
        async with asyncio.timeout(10):
            while confirmations.count(b"subscribe\r\n") < len(self.channels):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"subscriber on {self.port} closed while subscribing")
                confirmations += chunk
                if confirmations.startswith(b"-") or b"\r\n-" in confirmations:
                    raise ConnectionError(f"{self.command} on {self.port}: {confirmations[:200]!r}")
        self._task = asyncio.create_task(self._count(reader))

    async def _count(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(262144):
            data = self._tail + chunk
            self.received += data.count(MARKER)
            self._tail = data[-(len(MARKER) - 1) :]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, ConnectionError):
                pass


def subscribers_for(row: Row, channels: list[str]) -> list[Subscriber]:
    topo = row.topology
    primaries = topo.ports
    subs: list[Subscriber] = []
    for gateway in range(SUBSCRIBERS):
        if row.command == "SPUBLISH":
            for port in primaries:
                owned = [c for c in channels if topo.owner(c) == port]
                if owned:
                    subs.append(Subscriber(port, "SSUBSCRIBE", owned))
        else:
            subs.append(Subscriber(primaries[gateway % len(primaries)], "SUBSCRIBE", channels))
    return subs


def redis_cpu(ports: list[int]) -> dict[int, float]:
    """Seconds of CPU (user + sys) each server has used so far."""
    out = {}
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
            info = r.info("cpu")
        out[port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return out


async def wait_delivered(subs: list[Subscriber], expected: int) -> None:
    deadline = time.monotonic() + DELIVERY_DEADLINE
    while sum(s.received for s in subs) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(s.received for s in subs)} of {expected} deliveries arrived")
        await asyncio.sleep(0.005)


async def publish_all(backplane: Backplane, rooms: list[str], messages: int, concurrency: int) -> None:
    body = frames.MessageBody(user=frames.User(id="bench", name="bench"), text=TEXT, ts=int(time.time() * 1000))
    counter = iter(range(messages))

    async def worker() -> None:
        for i in counter:
            await backplane.publish(rooms[i % len(rooms)], body)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, messages))))


async def measure(row: Row, rooms: list[str], messages: int, concurrency: int, rep: int) -> dict[str, Any]:
    topo = row.topology
    backplane = await open_backplane(topo.url)
    backplane.publish_command = row.command  # the classic comparison on a cluster
    channels = [backplane.keys(room).channel for room in rooms]
    subs = subscribers_for(row, channels)
    try:
        await asyncio.gather(*(s.start() for s in subs))
        # warm-up: scripts loaded, connections to every primary open
        await publish_all(backplane, rooms, len(rooms), concurrency)
        await wait_delivered(subs, len(rooms) * SUBSCRIBERS)
        for s in subs:
            s.received = 0
        before = redis_cpu(topo.ports)
        started = time.perf_counter()
        await publish_all(backplane, rooms, messages, concurrency)
        await wait_delivered(subs, messages * SUBSCRIBERS)
        wall = time.perf_counter() - started
        after = redis_cpu(topo.ports)
    finally:
        await asyncio.gather(*(s.close() for s in subs))
        await backplane.commands.close()
    per_node = {f"node{i}": (after[p] - before[p]) * 1e6 / messages for i, p in enumerate(topo.ports)}
    return {
        "row": row.name, "topology": topo.name, "command": row.command, "nodes": len(topo.ports), "rep": rep,
        "messages": messages, "rooms": len(rooms), "subscribers_per_room": SUBSCRIBERS,
        "deliveries": sum(s.received for s in subs), "wall_s": wall, "publishes_per_s": messages / wall,
        "redis_cpu_us_per_msg": sum(per_node.values()), "redis_cpu_us_per_msg_by_node": per_node,
    }


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for name in dict.fromkeys(r["row"] for r in results):
        runs = [r for r in results if r["row"] == name]
        nodes = runs[0]["redis_cpu_us_per_msg_by_node"].keys()
        summary.append({
            "row": name, "topology": runs[0]["topology"], "command": runs[0]["command"], "reps": len(runs),
            "redis_cpu_us_per_msg": statistics.median(r["redis_cpu_us_per_msg"] for r in runs),
            "redis_cpu_us_per_msg_by_node": {
                n: statistics.median(r["redis_cpu_us_per_msg_by_node"][n] for r in runs) for n in nodes
            },
            "publishes_per_s": statistics.median(r["publishes_per_s"] for r in runs),
        })
    return summary


def cluster_topology(name: str, cluster: RedisClusterProcess) -> Topology:
    primaries = cluster.primary_ports()
    owners: dict[int, int] = {}
    for entry in cluster.command(primaries[0], "CLUSTER", "SLOTS"):
        for slot in range(int(entry[0]), int(entry[1]) + 1):
            owners[slot] = int(entry[2][1])
    return Topology(name, cluster.url, primaries, True, owners)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()
    standalone = RedisProcess()
    one = RedisClusterProcess(primaries=1, replicas=0)
    three = RedisClusterProcess(primaries=3, replicas=0)
    try:
        standalone.start()
        one.start()
        three.start()
        solo = Topology("standalone", standalone.url, [standalone.port], False)
        c1 = cluster_topology("cluster-1", one)
        c3 = cluster_topology("cluster-3", three)
        rows = [Row(solo, "PUBLISH"), Row(c1, "SPUBLISH"), Row(c3, "SPUBLISH"), Row(c3, "PUBLISH")]
        with redis.Redis(host="127.0.0.1", port=standalone.port) as r:
            redis_version = str(r.info("server")["redis_version"])
        rooms = [f"bench-{i}" for i in range(args.rooms)]
        results = []
        for rep in range(args.reps):
            for row in rows:
                result = await measure(row, rooms, args.messages, args.concurrency, rep)
                results.append(result)
                print(f"rep {rep} {row.name:22} {result['redis_cpu_us_per_msg']:7.1f} µs Redis CPU/msg "
                      f"({', '.join(f'{v:.1f}' for v in result['redis_cpu_us_per_msg_by_node'].values())}) "
                      f"{result['publishes_per_s']:7.0f} pub/s", flush=True)
    finally:
        for proc in (three, one):
            proc.cleanup()
        if standalone.proc is not None:
            standalone.proc.kill()
            standalone.proc.wait(10)
    return {
        "kind": "redis-cluster-cpu",
        "stamp": time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "redis": redis_version,
                    "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "params": {"messages": args.messages, "rooms": args.rooms, "reps": args.reps,
                   "subscribers_per_room": SUBSCRIBERS, "concurrency": args.concurrency, "text_bytes": len(TEXT)},
        "results": results,
        "summary": summarise(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="publishes in flight")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    args = parser.parse_args(argv)
    if min(args.messages, args.rooms, args.reps, args.concurrency) < 1:
        parser.error("--messages, --rooms, --reps and --concurrency must be at least 1")
    doc = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cluster-{doc['stamp']}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
