"""Redis CPU per publish with the events stream off, on, and with the publish
script of a base revision (before the events stream existed)
(docs/performance.md, "The events stream").

``python -m bench.events [--base REV] [--messages N] [--rooms R] [--reps K] [--out DIR]``

Three rows, each on its own ``redis-server`` (all running at once on
loopback), interleaved and rotated (A B C, B C A, C A B) so a noisy
neighbour hits every row alike; medians over the repetitions:

- ``base``: ``publish.lua`` as it is at ``--base`` (default ``main``),
  called with that revision's arguments;
- ``off``: this checkout's script, ``EVENTS_MAXLEN=0`` (the default);
- ``on``: this checkout's script, ``EVENTS_MAXLEN=100000`` (one more key:
  the room's events stream, and an ``XADD ... MAXLEN ~``).

Each publish is the gateway's call (``Backplane.publish``: history append,
idempotency key, fan-out) with bounded concurrency, to ``rooms`` rooms, each
subscribed by one "gateway" (a raw connection counting deliveries). Redis
CPU is ``used_cpu_sys + used_cpu_user`` of ``INFO cpu`` before the first
publish and after the last delivery arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
for _path in ("services/shared", "tests/harness"):
    if str(ROOT / _path) not in sys.path:
        sys.path.insert(0, str(ROOT / _path))

from bench.cluster import Subscriber, redis_cpu, wait_delivered  # noqa: E402
from switchboard.backplane import scripts  # noqa: E402
from switchboard.backplane.connect import open_backplane  # noqa: E402
from switchboard.backplane.store import Backplane  # noqa: E402
from switchboard.protocol import frames  # noqa: E402
from switchboard_harness import RedisProcess  # noqa: E402

PUBLISH_LUA = "services/shared/switchboard/backplane/scripts/publish.lua"
CONCURRENCY = 64
ON_MAXLEN = 100_000


@dataclass
class Row:
    name: str
    server: RedisProcess
    events_maxlen: int
    base_source: str | None = None  # the base revision's publish.lua (row "base")


def base_script(rev: str) -> str:
    """publish.lua as it is at `rev` (it had no events prelude then)."""
    return subprocess.run(
        ["git", "show", f"{rev}:{PUBLISH_LUA}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


async def open_row(row: Row) -> Backplane:
    backplane = await open_backplane(row.server.url, events_maxlen=row.events_maxlen)
    if row.base_source is not None:
        # The base script, called with the base's arguments: the same call
        # minus what this checkout appends for the events stream (the last
        # argument, always; no stream key, since events are off).
        old = scripts.Script("publish", row.base_source)
        commands = backplane.commands

        def execute_base(key: str, *command: Any, **kwargs: Any) -> Any:
            if command[:2] == ("EVALSHA", scripts.PUBLISH.sha):
                command = ("EVALSHA", old.sha, *command[2:-1])
            return orig_execute(key, *command, **kwargs)

        orig_execute = commands.execute
        commands.execute = execute_base  # type: ignore[method-assign]
        with redis.Redis.from_url(row.server.url) as r:
            r.script_load(old.source)
    return backplane


async def publish_all(backplane: Backplane, rooms: list[str], messages: int, first: int) -> None:
    body = frames.MessageBody(user=frames.User(id="bench", name="bench"), text="x" * 100, ts=int(time.time() * 1000))
    counter = iter(range(first, first + messages))

    async def worker() -> None:
        for i in counter:
            await backplane.publish(rooms[i % len(rooms)], body, client_msg_id=f"m{i}")

    await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, messages))))


async def measure(row: Row, rooms: list[str], messages: int, rep: int) -> dict[str, Any]:
    backplane = await open_row(row)
    sub = Subscriber(row.server.port, "SUBSCRIBE", [backplane.keys(room).channel for room in rooms])
    first = (rep + 1) * 10 * messages  # fresh client_msg_ids each repetition: no duplicates
    try:
        await sub.start()
        await publish_all(backplane, rooms, len(rooms), first - len(rooms))  # warm-up
        await wait_delivered([sub], len(rooms))
        sub.received = 0
        before = redis_cpu([row.server.port])[row.server.port]
        started = time.perf_counter()
        await publish_all(backplane, rooms, messages, first)
        await wait_delivered([sub], messages)
        wall = time.perf_counter() - started
        after = redis_cpu([row.server.port])[row.server.port]
        with redis.Redis.from_url(row.server.url) as r:
            streams = len(list(r.scan_iter(match=f"{backplane.prefix}:events*")))
    finally:
        await sub.close()
        await backplane.commands.close()
    return {
        "row": row.name, "rep": rep, "messages": messages, "rooms": len(rooms), "wall_s": wall,
        "publishes_per_s": messages / wall, "redis_cpu_us_per_msg": (after - before) * 1e6 / messages,
        "events_streams": streams,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()
    servers = [RedisProcess() for _ in range(3)]
    try:
        for server in servers:
            server.start()
        rows = [
            Row("base", servers[0], 0, base_script(args.base)),
            Row("off", servers[1], 0),
            Row("on", servers[2], ON_MAXLEN),
        ]
        with redis.Redis.from_url(servers[0].url) as r:
            redis_version = str(r.info("server")["redis_version"])
        rooms = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.rooms)]
        results = []
        for rep in range(args.reps):
            for row in rows[rep % 3 :] + rows[: rep % 3]:  # rotated, so no row always goes first
                result = await measure(row, rooms, args.messages, rep)
                results.append(result)
                print(f"rep {rep} {row.name:5} {result['redis_cpu_us_per_msg']:6.2f} µs Redis CPU/publish "
                      f"{result['publishes_per_s']:7.0f} pub/s  events keys: {result['events_streams']}", flush=True)
    finally:
        for server in servers:
            server.cleanup()
    summary = [
        {
            "row": row.name,
            "redis_cpu_us_per_msg": statistics.median(r["redis_cpu_us_per_msg"] for r in results if r["row"] == row.name),
            "publishes_per_s": statistics.median(r["publishes_per_s"] for r in results if r["row"] == row.name),
        }
        for row in rows
    ]
    return {
        "kind": "events-stream-cpu",
        "stamp": time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        "base": args.base,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "redis": redis_version, "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "params": {"messages": args.messages, "rooms": args.rooms, "reps": args.reps, "concurrency": CONCURRENCY,
                   "events_maxlen_on": ON_MAXLEN, "subscribers_per_room": 1, "text_bytes": 100},
        "results": results,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision whose publish.lua is the 'base' row")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    args = parser.parse_args(argv)
    if min(args.messages, args.rooms, args.reps) < 1:
        parser.error("--messages, --rooms and --reps must be at least 1")
    doc = asyncio.run(run(args))
    for line in doc["summary"]:
        print(f"median {line['row']:5} {line['redis_cpu_us_per_msg']:6.2f} µs Redis CPU/publish "
              f"{line['publishes_per_s']:7.0f} pub/s")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"events-{doc['stamp']}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
