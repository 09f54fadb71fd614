"""The naive design: Starlette on uvicorn, one Redis pub/sub subscription per
WebSocket connection.

    python -m bench.baselines.naive --port 9002 --redis redis://127.0.0.1:6379/0

Each ``join`` opens a redis-py ``PubSub`` for that connection (one Redis
connection each) and a task forwarding its messages with
``await websocket.send_text``; each ``publish`` is an ``await
redis.publish``. redis-py's asyncio pool is capped at 100 connections and
raises instead of waiting, so the pool is raised to 20,000: a Redis
connection per WebSocket is the design's cost. uvicorn with its defaults
(``ws="auto"``: websockets-sansio; keepalive 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json

import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from bench.baselines import decode_frame, message_payload

PREFIX = "naive:"


def build_app(redis_url: str, node: str) -> Starlette:
    redis = aioredis.Redis.from_url(redis_url, max_connections=20000)
    ids = itertools.count(1)

    async def forward(pubsub: aioredis.client.PubSub, websocket: WebSocket) -> None:
        async for item in pubsub.listen():
            if item["type"] == "message":
                await websocket.send_text(item["data"].decode())

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        session = f"{node}-{next(ids)}"
        user = {"id": "u" + session, "name": "bench"}
        await websocket.send_text(
            json.dumps({"type": "welcome", "session": session, "user": user, "node": node, "protocol": 1})
        )
        subscriptions: dict[str, tuple[aioredis.client.PubSub, asyncio.Task[None]]] = {}
        try:
            while True:
                raw = await websocket.receive_text()
                kind, frame = decode_frame(raw)
                if kind is None:
                    continue
                if kind == "publish":
                    room = frame.get("room")
                    if room in subscriptions:
                        payload = message_payload(room, f"{session}-{next(ids)}", user, frame.get("text", ""))
                        await redis.publish(PREFIX + room, payload)
                elif kind == "join":
                    room = frame.get("room")
                    if isinstance(room, str) and room not in subscriptions:
                        pubsub = redis.pubsub()
                        await pubsub.subscribe(PREFIX + room)
                        while (await pubsub.get_message(timeout=5.0)) is None:  # the confirmation
                            pass
                        subscriptions[room] = (pubsub, asyncio.create_task(forward(pubsub, websocket)))
                    await websocket.send_text(json.dumps({"type": "joined", "id": frame.get("id"), "room": room,
                                                          "offset": 0, "epoch": "", "recovered": None,
                                                          "messages": [], "presence": []}))
                elif kind == "ping":
                    await websocket.send_text(json.dumps({"type": "pong", "id": frame.get("id")}))
        except WebSocketDisconnect:
            pass
        finally:
            for pubsub, task in subscriptions.values():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await pubsub.aclose()

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = build_app(args.redis, f"naive-{args.port}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")
