"""The floor: a raw ``websockets`` server, ``websockets.broadcast()`` and ONE
Redis pub/sub subscription per process.

    python -m bench.baselines.floor --port 9001 --redis redis://127.0.0.1:6379/0

publish -> JSON ``message`` frame -> Redis PUBLISH -> (every process) one
subscription -> ``broadcast()`` of the received bytes to the local members.
No history, no offsets, no presence, no acks, no slow-consumer policy.
Compression is off (as in Switchboard), keepalive pings at the library
default (20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from bench.baselines import decode_frame, message_payload

PREFIX = "floor:"


class Floor:
    def __init__(self, redis_url: str, node: str) -> None:
        # Publishes share a small blocking pool: never more than 32 Redis
        # connections, and no MaxConnectionsError under 1,000 publishers.
        self.redis = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=None)
        )
        self.pubsub = self.redis.pubsub()  # the process's one subscription connection
        self.node = node
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.confirmed: dict[str, asyncio.Future[None]] = {}
        self.lock = asyncio.Lock()  # redis-py PubSub is not safe for concurrent subscribe()
        self.reader: asyncio.Task[None] | None = None
        self.ids = itertools.count(1)

    async def subscribe(self, room: str) -> None:
        """Subscribe the process to `room` once; return when Redis confirmed."""
        async with self.lock:
            waiter = self.confirmed.get(room)
            if waiter is None:
                waiter = self.confirmed[room] = asyncio.get_running_loop().create_future()
                await self.pubsub.subscribe(PREFIX + room)
                if self.reader is None:
                    self.reader = asyncio.create_task(self._read())
        await waiter

    async def _read(self) -> None:
        async for item in self.pubsub.listen():
            kind = item["type"]
            channel = item["channel"].decode()[len(PREFIX):]
            if kind == "message":
                members = self.rooms.get(channel)
                if members:
                    broadcast(members, item["data"], text=True)
            elif kind == "subscribe":
                waiter = self.confirmed.get(channel)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def handler(self, ws: ServerConnection) -> None:
        session = f"{self.node}-{next(self.ids)}"
        user = {"id": "u" + session, "name": "bench"}
        await ws.send(json.dumps({"type": "welcome", "session": session, "user": user, "node": self.node, "protocol": 1}))
        joined: set[str] = set()
        try:
            async for raw in ws:
                kind, frame = decode_frame(raw)
                if kind is None:
                    continue
                if kind == "publish":
                    room = frame.get("room")
                    if room in joined:
                        payload = message_payload(room, f"{session}-{next(self.ids)}", user, frame.get("text", ""))
                        await self.redis.publish(PREFIX + room, payload)
                elif kind == "join":
                    room = frame.get("room")
                    if isinstance(room, str) and room not in joined:
                        await self.subscribe(room)
                        self.rooms.setdefault(room, set()).add(ws)
                        joined.add(room)
                    await ws.send(json.dumps({"type": "joined", "id": frame.get("id"), "room": room, "offset": 0,
                                              "epoch": "", "recovered": None, "messages": [], "presence": []}))
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": frame.get("id")}))
        finally:
            for room in joined:
                self.rooms.get(room, set()).discard(ws)


async def main(port: int, redis_url: str, host: str) -> None:
    floor = Floor(redis_url, f"floor-{port}")
    await floor.redis.ping()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(floor.handler, host, port, compression=None, backlog=2048, max_size=2**16):
        print(f"floor ready on {host}:{port} pid {os.getpid()}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.redis, args.host))
