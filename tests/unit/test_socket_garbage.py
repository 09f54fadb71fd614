"""A WebSocket leaves no reference cycle behind, opened or closed: its
objects are freed by reference counting, which is what lets the gateway
raise the garbage collector's thresholds (lifecycle.tune_gc). The whole
gateway (its uvicorn protocols, the memory broker) in the test's loop,
real sockets on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
import websockets

from switchboard.client import make_token
from switchboard_gateway.app import Gateway, create_app
from switchboard_gateway.connection import Connection
from switchboard_gateway.lifecycle import GC_THRESHOLDS, make_config, tune_gc
from switchboard_gateway.outbound import Outbound
from switchboard_gateway.protocols import GuardedHttpProtocol, GuardedWebSocketProtocol, ServerGuard
from switchboard_gateway.settings import Settings

SECRET = "socket-garbage-secret-0123456789abcdef"
GATEWAY_TYPES = (GuardedHttpProtocol, GuardedWebSocketProtocol, Connection, Outbound)


@asynccontextmanager
async def gateway() -> AsyncIterator[tuple[Gateway, int]]:
    settings = Settings.from_env({"REDIS_URL": "memory://", "JWT_SECRET": SECRET, "NODE_ID": "unit"})
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = make_config(app, settings, ServerGuard(settings, app.node.metrics))
    config.log_level = "warning"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield app, sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def joined_socket(port: int, room: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={make_token(SECRET, 'alice')}")
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.send(json.dumps({"type": "join", "room": room, "id": "j"}))
    while json.loads(await ws.recv())["type"] != "joined":
        pass
    return ws


async def until(condition: object, what: str) -> None:
    """Poll a condition the server reaches on its own (no event to await)."""
    async with asyncio.timeout(10):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def gateway_garbage() -> list[str]:
    """The gateway's objects that only the collector could free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted(type(o).__name__ for o in gc.garbage if isinstance(o, GATEWAY_TYPES))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_sockets_opened_joined_and_closed_leave_no_cycles() -> None:
    gc.collect()
    gc.disable()
    try:
        async with gateway() as (app, port):
            sockets = [await joined_socket(port, f"room-{i % 2}") for i in range(6)]
            assert len(app.node.connections) == 6
            assert gateway_garbage() == []  # open and joined: the HTTP protocols they upgraded from too
            for ws in sockets[:4]:
                await ws.close()
            await until(lambda: len(app.node.connections) == 2, "the server saw the closes")
            assert gateway_garbage() == []  # closed: everything went with its last reference
            for ws in sockets[4:]:
                await ws.close()
    finally:
        gc.enable()


def test_tune_gc_sets_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
