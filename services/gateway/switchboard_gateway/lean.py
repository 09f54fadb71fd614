"""Per-socket memory: what uvicorn's WebSocket protocol keeps for every
socket that the gateway does not need.

Measured with tracemalloc over 1,000 joined sockets (docs/performance.md,
"Memory per connection"): uvicorn's websockets-sansio protocol gives each
socket an ``asyncio.Queue`` for the application's ``receive`` (the queue,
three deques and an Event with a fourth: ~3 KB), an ``asyncio.Event`` for
``writable`` (~0.8 KB), and keeps the handshake's parsed request and
response, and the ASGI scope's copy of the headers, for the life of the
socket (~2.5 KB). ``LeanWebSocketProtocol`` swaps the first two for
``Inbox`` and ``Flag``, which allocate nothing until something waits, and
empties the handshake's headers once the socket is accepted.

This relies on how uvicorn uses them: only ``put_nowait``, ``get`` and
``empty`` of the queue, with one reader (the application's ``receive``);
``is_set``, ``set``, ``clear`` and ``wait`` of the event; and nothing of
``request``, ``response`` or the scope's headers once ``start_keepalive``
ran at the accept. ``tests/unit/test_lean.py`` pins this against the
installed uvicorn, so an upgrade that changes it fails there.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

T = TypeVar("T")


class Inbox(Generic[T]):
    """A FIFO with one reader: what uvicorn needs of its receive queue. An
    empty list and no future while nobody waits (an idle socket)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox has one reader; a second get() is waiting at once")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        # Short: uvicorn stops reading the socket while anything waits here.
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """``asyncio.Event``'s interface without its eager deque of waiters."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with the per-socket objects above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def start_keepalive(self) -> None:
        # uvicorn calls this once, when it has sent the accept: the handshake
        # is over, and its headers are never read again.
        super().start_keepalive()
        self.request.headers.clear()  # the parser's generator frame keeps the request itself
        self.request = self.response = None  # type: ignore[assignment]
        self.scope["headers"] = []
