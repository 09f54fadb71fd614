"""``switchboard.client.Client.connect`` when the server does not send
``welcome``: it raises, and closes the socket it opened (no leaked
connection or reader task). The server here is a bare WebSocket endpoint on
loopback, not a gateway: the point is a server that misbehaves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from switchboard.client import Client

Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture
async def closed_by_client() -> asyncio.Event:
    return asyncio.Event()


async def start(handler: Handler) -> tuple[Server, str]:
    server = await serve(handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/ws"


@pytest.fixture
async def silent_server(closed_by_client: asyncio.Event) -> AsyncIterator[str]:
    """Accepts and never sends a frame; notes when the client goes away."""

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()
        closed_by_client.set()

    server, url = await start(handler)
    async with server:
        yield url


@pytest.fixture
async def wrong_first_frame_server(closed_by_client: asyncio.Event) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "pong"}))
        await ws.wait_closed()
        closed_by_client.set()

    server, url = await start(handler)
    async with server:
        yield url


async def test_no_welcome_in_time_raises_and_closes(silent_server: str, closed_by_client: asyncio.Event) -> None:
    with pytest.raises(TimeoutError):
        await Client.connect(silent_server, token="t", timeout=0.3)
    await asyncio.wait_for(closed_by_client.wait(), timeout=5)


async def test_a_first_frame_other_than_welcome_raises_and_closes(
    wrong_first_frame_server: str, closed_by_client: asyncio.Event
) -> None:
    with pytest.raises(AssertionError, match="expected welcome"):
        await Client.connect(wrong_first_frame_server, token="t", timeout=5)
    await asyncio.wait_for(closed_by_client.wait(), timeout=5)
