"""Outbound: a send that completes synchronously costs no task; a send that
suspends (the socket is backed up) queues later frames in order, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from switchboard_gateway.outbound import Outbound


class FakeSend:
    """An ASGI `send`: completes at once unless `block()` was called, then it
    suspends until `release()`."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.started: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    def block(self) -> None:
        self.gate = asyncio.Event()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()

    async def __call__(self, message: dict[str, Any]) -> None:
        self.started.append(message["text"])
        if self.gate is not None and not self.gate.is_set():
            await self.gate.wait()
        if self.fail:
            raise OSError("peer gone")
        self.sent.append(message["text"])


def msg(text: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": text}


class Overflow:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def make(send: FakeSend, max_frames: int = 100, max_bytes: int = 1 << 20) -> tuple[Outbound, Overflow]:
    overflow = Overflow()
    return Outbound(send, overflow, max_frames, max_bytes), overflow


async def test_synchronous_send_creates_no_task() -> None:
    send = FakeSend()
    out, overflow = make(send)
    tasks_before = asyncio.all_tasks()
    for i in range(50):
        out.send(msg(str(i)))
        assert send.sent[-1] == str(i)  # written before send() returned
    assert send.sent == [str(i) for i in range(50)]
    assert asyncio.all_tasks() == tasks_before
    assert not out.backed_up and not out.closed and overflow.calls == 0
    assert await out.flush(0.01) is True


async def test_suspended_send_queues_in_order_and_drains() -> None:
    send = FakeSend()
    out, overflow = make(send)
    out.send(msg("a"))
    send.block()
    out.send(msg("b"))  # suspends: the writer takes over
    assert out.backed_up
    for text in "cdef":
        out.send(msg(text))  # queued, not attempted yet
    assert send.sent == ["a"] and send.started == ["a", "b"]
    send.release()
    assert await out.flush(5) is True
    assert send.sent == list("abcdef")
    assert not out.backed_up and overflow.calls == 0 and not out.closed
    # Back to synchronous sends once the queue has drained.
    tasks_before = asyncio.all_tasks()
    out.send(msg("g"))
    assert send.sent[-1] == "g" and asyncio.all_tasks() == tasks_before


async def test_frames_sent_while_draining_keep_their_place() -> None:
    send = FakeSend()
    out, _ = make(send)
    send.block()
    out.send(msg("1"))
    out.send(msg("2"))
    send.release()
    await asyncio.sleep(0)  # let the writer make progress
    out.send(msg("3"))
    send.block()  # the writer's next send suspends again
    out.send(msg("4"))
    send.release()
    assert await out.flush(5)
    assert send.sent == ["1", "2", "3", "4"]


async def test_frame_overflow_calls_on_overflow_once_and_stops() -> None:
    send = FakeSend()
    out, overflow = make(send, max_frames=3)
    send.block()
    out.send(msg("in-flight"))
    for i in range(3):
        out.send(msg(str(i)))
    assert overflow.calls == 0 and not out.closed
    out.send(msg("3"))  # the fourth queued frame
    assert overflow.calls == 1 and out.closed and not out.backed_up
    for i in range(10):
        out.send(msg(f"late{i}"))
    assert overflow.calls == 1
    send.release()
    assert await out.flush(1)
    await asyncio.sleep(0)
    assert send.sent == []  # nothing queued went out after the overflow
    assert send.started == ["in-flight"]


async def test_byte_overflow() -> None:
    send = FakeSend()
    out, overflow = make(send, max_frames=1000, max_bytes=100)
    send.block()
    out.send(msg("x" * 500))  # the in-flight frame does not count
    out.send(msg("y" * 60))
    out.send(msg("z" * 40))  # exactly 100 bytes queued: still fine
    assert overflow.calls == 0
    out.send(msg("!"))
    assert overflow.calls == 1 and out.closed
    send.release()


async def test_flush_waits_for_the_writer() -> None:
    send = FakeSend()
    out, _ = make(send)
    send.block()
    out.send(msg("a"))
    out.send(msg("b"))
    assert await out.flush(0.02) is False  # still backed up
    assert send.sent == []
    flushing = asyncio.create_task(out.flush(5))
    await asyncio.sleep(0)
    assert not flushing.done()
    send.release()
    assert await flushing is True
    assert send.sent == ["a", "b"]


async def test_send_failing_synchronously_marks_closed() -> None:
    send = FakeSend()
    send.fail = True
    out, overflow = make(send)
    out.send(msg("a"))
    assert out.closed and overflow.calls == 0
    out.send(msg("b"))
    assert send.started == ["a"]  # nothing more is attempted


async def test_send_failing_after_suspending_marks_closed() -> None:
    send = FakeSend()
    out, overflow = make(send)
    send.block()
    out.send(msg("a"))
    out.send(msg("b"))
    send.fail = True
    send.release()
    assert await out.flush(5)
    assert out.closed and not out.backed_up and overflow.calls == 0
    assert send.sent == []


async def test_stop_cancels_the_writer() -> None:
    send = FakeSend()
    out, overflow = make(send)
    send.block()
    out.send(msg("a"))
    out.send(msg("b"))
    out.stop()
    assert out.closed and not out.backed_up
    out.send(msg("c"))
    send.release()
    await asyncio.sleep(0)
    assert send.sent == [] and overflow.calls == 0
