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

Each publish is exactly the gateway's call (``Backplane.publish``: history
append, idempotency key, fan-out; recorded, then sent in pipelines of
``BATCH``), to ``rooms`` rooms, each subscribed by one "gateway" (a raw
connection counting deliveries). Two
readings per run:

- Redis CPU: ``used_cpu_sys + used_cpu_user`` of ``INFO cpu`` before the
  first publish and after the last delivery arrived (the whole server:
  script, network I/O, fan-out). It depends on how well the client's
  commands batch, which varies with the load on the machine;
- script time: ``usec_per_call`` of ``EVALSHA`` in ``INFO commandstats``
  (reset before each run): the script's own execution, Redis commands it
  calls included, independent of batching.
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
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
for _path in ("services/shared", "tests/harness"):
    if str(ROOT / _path) not in sys.path:
        sys.path.insert(0, str(ROOT / _path))

from bench.cluster import Subscriber, redis_cpu, wait_delivered  # noqa: E402
from switchboard.backplane import scripts  # noqa: E402
from switchboard.backplane.keys import RoomKeys  # noqa: E402
from switchboard.backplane.store import Backplane  # noqa: E402
from switchboard.protocol import frames  # noqa: E402
from switchboard_harness import RedisProcess  # noqa: E402

PUBLISH_LUA = "services/shared/switchboard/backplane/scripts/publish.lua"
BATCH = 50  # publishes per pipeline
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


class Recorder:
    """A stand-in for ``Commands``: records what ``Backplane`` would send, so
    the bench sends exactly the gateway's commands, in batches it controls."""

    sharded = False

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    async def execute(self, key: str, *command: Any, **_: Any) -> Any:
        self.sent.append(command)
        return [1, b"e", 0]  # what publish.lua answers: offset, epoch, duplicate


async def publish_commands(row: Row, rooms: list[str], messages: int, first: int) -> list[tuple[Any, ...]]:
    """The EVALSHA of every publish (``Backplane.publish``, client_msg_id
    included), for the row's script and arguments."""
    recorder = Recorder()
    backplane = Backplane(recorder, events_maxlen=row.events_maxlen)  # type: ignore[arg-type]
    body = frames.MessageBody(user=frames.User(id="bench", name="bench"), text="x" * 100, ts=int(time.time() * 1000))
    for i in range(first, first + messages):
        await backplane.publish(rooms[i % len(rooms)], body, client_msg_id=f"m{i}")
    if row.base_source is None:
        return recorder.sent
    # The base script with the base's arguments: this checkout's call minus
    # what it appends for the events stream (the last argument; events are
    # off, so no stream key).
    base_sha = scripts.Script("publish", row.base_source).sha
    return [("EVALSHA", base_sha, *command[2:-1]) for command in recorder.sent]


async def send(client: Redis, commands: list[tuple[Any, ...]]) -> None:
    """In pipelines of BATCH, one after the other: Redis reads, runs and
    answers the same batches whatever the load on the machine."""
    for start in range(0, len(commands), BATCH):
        pipe = client.pipeline(transaction=False)
        for command in commands[start : start + BATCH]:
            pipe.execute_command(*command)
        await pipe.execute()


async def measure(row: Row, rooms: list[str], messages: int, rep: int) -> dict[str, Any]:
    client = Redis.from_url(row.server.url)
    await client.script_load(row.base_source or scripts.PUBLISH.source)
    channels = [RoomKeys("sb", room).channel for room in rooms]
    sub = Subscriber(row.server.port, "SUBSCRIBE", channels)
    first = (rep + 1) * 10 * messages  # fresh client_msg_ids each repetition: no duplicates
    warmup = await publish_commands(row, rooms, len(rooms), first - len(rooms))
    commands = await publish_commands(row, rooms, messages, first)
    try:
        await sub.start()
        await send(client, warmup)
        await wait_delivered([sub], len(rooms))
        sub.received = 0
        await client.config_resetstat()
        before = redis_cpu([row.server.port])[row.server.port]
        started = time.perf_counter()
        await send(client, commands)
        await wait_delivered([sub], messages)
        wall = time.perf_counter() - started
        after = redis_cpu([row.server.port])[row.server.port]
        evalsha = (await client.info("commandstats"))["cmdstat_evalsha"]
        streams = len([key async for key in client.scan_iter(match="sb:events*")])
    finally:
        await sub.close()
        await client.aclose()
    return {
        "row": row.name, "rep": rep, "messages": messages, "rooms": len(rooms), "wall_s": wall,
        "publishes_per_s": messages / wall, "redis_cpu_us_per_msg": (after - before) * 1e6 / messages,
        "script_us_per_call": float(evalsha["usec_per_call"]), "script_calls": int(evalsha["calls"]),
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
                      f"{result['script_us_per_call']:6.2f} µs script "
                      f"{result['publishes_per_s']:7.0f} pub/s  events keys: {result['events_streams']}", flush=True)
    finally:
        for server in servers:
            server.cleanup()
    summary = [
        {
            "row": row.name,
            "redis_cpu_us_per_msg": statistics.median(r["redis_cpu_us_per_msg"] for r in results if r["row"] == row.name),
            "script_us_per_call": statistics.median(r["script_us_per_call"] for r in results if r["row"] == row.name),
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
        "params": {"messages": args.messages, "rooms": args.rooms, "reps": args.reps, "batch": BATCH,
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
              f"{line['script_us_per_call']:6.2f} µs script {line['publishes_per_s']:7.0f} pub/s")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"events-{doc['stamp']}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
