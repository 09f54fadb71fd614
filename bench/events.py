"""Redis CPU per publish with the events stream off, on, and with the publish
script of a base revision (before the events stream existed)
(docs/performance.md, "The events stream").

``python -m bench.events [--base REV] [--messages N] [--rooms R] [--reps K] [--out DIR]``

Three rows on one ``redis-server``, each with its own rooms:

- ``base``: ``publish.lua`` as it is at ``--base`` (default ``main``),
  called with that revision's arguments;
- ``off``: this checkout's script, ``EVENTS_MAXLEN=0`` (the default);
- ``on``: this checkout's script, ``EVENTS_MAXLEN=100000`` (one more key:
  the room's events stream, and an ``XADD ... MAXLEN ~``).

Each publish is exactly the gateway's call (``Backplane.publish``: history
append, state hash, idempotency key, fan-out; recorded, then sent in
pipelines of ``BATCH``), over ``rooms`` rooms per row, all subscribed by one
"gateway" (a raw connection counting deliveries). The machine is shared, so
the rows alternate in small blocks (``BLOCK`` publishes, rotated order) and a
load change hits all three alike; each of ``--reps`` repetitions sums its
blocks per row, and the medians over the repetitions are reported. Two
readings per block, from the block's first command to its last delivery:

- Redis CPU: ``used_cpu_sys + used_cpu_user`` of ``INFO cpu`` (the whole
  server: script, network I/O, fan-out);
- script time: ``usec`` of ``EVALSHA`` in ``INFO commandstats`` (reset before
  each block): the script's own execution, Redis commands it calls included
  (wall time inside Redis: preemption by other processes inflates it).
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
BLOCK = 500  # publishes per measured block of one row
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
        return [1, b"e", 0, b""]  # what publish.lua answers: offset, epoch, duplicate, status


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


async def measure_block(client: Redis, port: int, sub: Subscriber, commands: list[tuple[Any, ...]]) -> tuple[float, float]:
    """(Redis CPU s, script µs) of sending `commands` until delivered."""
    sub.received = 0
    await client.config_resetstat()
    before = redis_cpu([port])[port]
    await send(client, commands)
    await wait_delivered([sub], len(commands))
    after = redis_cpu([port])[port]
    evalsha = (await client.info("commandstats"))["cmdstat_evalsha"]
    return after - before, float(evalsha["usec"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()
    server = RedisProcess()
    server.start()
    client = Redis.from_url(server.url)
    sub: Subscriber | None = None
    try:
        rows = [Row("base", server, 0, base_script(args.base)), Row("off", server, 0), Row("on", server, ON_MAXLEN)]
        redis_version = str((await client.info("server"))["redis_version"])
        for row in rows:
            await client.script_load(row.base_source or scripts.PUBLISH.source)
        tag = uuid.uuid4().hex[:6]
        rooms = {row.name: [f"bench-{tag}-{row.name}-{i}" for i in range(args.rooms)] for row in rows}
        sub = Subscriber(server.port, "SUBSCRIBE", [RoomKeys("sb", r).channel for rs in rooms.values() for r in rs])
        await sub.start()
        for row in rows:  # warm-up: every room exists, the scripts ran once
            await send(client, await publish_commands(row, rooms[row.name], args.rooms, 0))
        await wait_delivered([sub], 3 * args.rooms)
        blocks = max(1, args.messages // BLOCK)
        results = []
        next_id = args.rooms
        for rep in range(args.reps):
            cpu = dict.fromkeys([r.name for r in rows], 0.0)
            script = dict.fromkeys([r.name for r in rows], 0.0)
            started = time.perf_counter()
            for block in range(blocks):
                k = (rep * blocks + block) % 3
                for row in rows[k:] + rows[:k]:  # rotated, so no row always goes first
                    commands = await publish_commands(row, rooms[row.name], BLOCK, next_id)
                    next_id += BLOCK  # fresh client_msg_ids: no duplicates
                    used, script_us = await measure_block(client, server.port, sub, commands)
                    cpu[row.name] += used
                    script[row.name] += script_us
            wall = time.perf_counter() - started
            for row in rows:
                n = blocks * BLOCK
                result = {"row": row.name, "rep": rep, "messages": n, "rooms": args.rooms,
                          "redis_cpu_us_per_msg": cpu[row.name] * 1e6 / n, "script_us_per_call": script[row.name] / n}
                results.append(result)
                print(f"rep {rep} {row.name:5} {result['redis_cpu_us_per_msg']:6.2f} µs Redis CPU/publish "
                      f"{result['script_us_per_call']:6.2f} µs script", flush=True)
            print(f"rep {rep}: {3 * blocks * BLOCK} publishes in {wall:.1f} s", flush=True)
        streams = sorted([key.decode() async for key in client.scan_iter(match="sb:events*")])
    finally:
        if sub is not None:
            await sub.close()
        await client.aclose()
        server.cleanup()
    summary = [
        {
            "row": row.name,
            "redis_cpu_us_per_msg": statistics.median(r["redis_cpu_us_per_msg"] for r in results if r["row"] == row.name),
            "script_us_per_call": statistics.median(r["script_us_per_call"] for r in results if r["row"] == row.name),
        }
        for row in rows
    ]
    return {
        "kind": "events-stream-cpu",
        "stamp": time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
        "base": args.base,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "redis": redis_version, "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "params": {"messages_per_row_and_rep": blocks * BLOCK, "block": BLOCK, "rooms_per_row": args.rooms,
                   "reps": args.reps, "batch": BATCH, "events_maxlen_on": ON_MAXLEN, "text_bytes": 100},
        "events_keys": streams,  # only the "on" row's rooms write events: one stream on one Redis
        "results": results,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision whose publish.lua is the 'base' row")
    parser.add_argument("--messages", type=int, default=20_000, help="per row and repetition")
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    args = parser.parse_args(argv)
    if min(args.messages, args.rooms, args.reps) < 1:
        parser.error("--messages, --rooms and --reps must be at least 1")
    doc = asyncio.run(run(args))
    for line in doc["summary"]:
        print(f"median {line['row']:5} {line['redis_cpu_us_per_msg']:6.2f} µs Redis CPU/publish "
              f"{line['script_us_per_call']:6.2f} µs script")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"events-{doc['stamp']}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
