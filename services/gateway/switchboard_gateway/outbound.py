"""Sending to one WebSocket without ever making the sender wait.

ASGI's ``send`` is a coroutine, but with uvicorn it only suspends while the
transport's write buffer is above its high-water mark (the peer is not
reading fast enough). ``Outbound.send`` therefore runs the ``send``
coroutine synchronously up to its first suspension:

- it finishes (the usual case): the frame is written; no task, no queue;
- it suspends: the socket is backed up. The suspended call is finished by a
  writer task, and later frames wait in an outbox created only now, bounded by
  SEND_QUEUE_MAX frames and SEND_QUEUE_MAX_BYTES. Overflow calls
  ``on_overflow`` (the connection closes with 1013).

So fan-out costs one coroutine step per member, and a slow reader costs
memory only up to its bounds.

The fan-out may also pass the message as a prebuilt WebSocket frame
(``wire.text_frame``): when the connection has no outbox and its transport
takes it at once (``wire.write``), that is written instead of running
``send``; otherwise ``send`` runs as above. Same order, same bounds.
"""

from __future__ import annotations

import asyncio
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from switchboard_gateway import wire

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


@types.coroutine
def _finish(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, Any, None]:
    """Await a coroutine that already ran up to its first suspension, where it
    yielded `pending` (the future it waits on)."""
    try:
        yield pending
    except BaseException:
        coro.close()
        raise
    yield from coro.__await__()


def _nothing() -> None:
    pass


class Outbound:
    __slots__ = (
        "_send",
        "_wire",
        "_on_overflow",
        "_max_frames",
        "_max_bytes",
        "_outbox",
        "_outbox_bytes",
        "_writer",
        "closed",
    )

    def __init__(
        self,
        send: Send,
        on_overflow: Callable[[], None],
        max_frames: int,
        max_bytes: int,
        fast_path: bool = False,
    ) -> None:
        self._send = send
        self._wire = wire.writer_for(send) if fast_path else None
        self._on_overflow = on_overflow
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._outbox: deque[Message] | None = None
        self._outbox_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def backed_up(self) -> bool:
        return self._writer is not None

    @property
    def fast_path(self) -> bool:
        """Whether prebuilt frames can be written to this connection."""
        return self._wire is not None

    def send(self, message: Message, frame: bytes | None = None) -> None:
        """Queue-free send of an ASGI message; never blocks the caller.
        `frame`, if given, is the same message as a prebuilt WebSocket frame
        (``wire.text_frame``), written directly when the transport takes it."""
        if self.closed:
            return
        if self._outbox is not None:
            self._outbox.append(message)
            self._outbox_bytes += len(message.get("text") or "")
            if len(self._outbox) > self._max_frames or self._outbox_bytes > self._max_bytes:
                on_overflow = self._on_overflow
                self.stop()
                on_overflow()
            return
        if frame is not None and self._wire is not None and wire.write(self._wire, frame):
            return
        # uvicorn's send is a coroutine function (ASGI only promises an awaitable).
        coro = cast(Coroutine[Any, Any, None], self._send(message))
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except Exception:
            self.closed = True  # the peer is gone; the reader will see the disconnect
            return
        self._outbox = deque()
        self._outbox_bytes = 0
        self._writer = asyncio.ensure_future(self._drain(coro, pending))

    async def _drain(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        try:
            await _finish(coro, pending)
            outbox = self._outbox
            while outbox:
                message = outbox.popleft()
                self._outbox_bytes -= len(message.get("text") or "")
                await self._send(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.closed = True
        finally:
            self._outbox = None
            self._writer = None

    def stop(self) -> None:
        """Drop whatever waits and stop sending (before a close, or once the
        socket is gone)."""
        self._outbox = None
        # The callback is the connection's bound method: a reference cycle
        # (connection -> outbound -> connection) that would leave the whole
        # socket's objects to the garbage collector.
        self._on_overflow = _nothing
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        self.closed = True

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued was handed to the transport."""
        writer = self._writer
        if writer is None:
            return True
        done, _ = await asyncio.wait({writer}, timeout=timeout)
        return bool(done)
