"""lean.py: the lighter per-socket objects, and the uvicorn behaviour they
rely on (pinned against the installed uvicorn: an upgrade that changes it
fails here, not in production)."""

from __future__ import annotations

import asyncio
import inspect
import re

import pytest
from live_uvicorn import RawClient, uvicorn_server
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from switchboard_gateway.keepalive import GatewayWebSocketProtocol
from switchboard_gateway.lean import Flag, Inbox, LeanWebSocketProtocol

TEXT = 0x1


async def test_inbox_is_first_in_first_out_and_get_waits_for_a_put() -> None:
    inbox: Inbox[str] = Inbox()
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert inbox.qsize() == 2 and not inbox.empty()
    assert await inbox.get() == "a"
    assert await inbox.get() == "b"
    assert inbox.empty()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait("c")
    assert await getter == "c"


async def test_a_cancelled_get_leaves_the_inbox_usable_and_loses_nothing() -> None:
    inbox: Inbox[str] = Inbox()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    inbox.put_nowait("kept")
    assert await inbox.get() == "kept"


async def test_the_inbox_refuses_a_second_reader() -> None:
    inbox: Inbox[str] = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one reader"):
        await inbox.get()
    inbox.put_nowait("x")
    assert await first == "x"


async def test_flag_wakes_every_waiter_and_can_be_cleared() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.clear()
    waiter = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flag._waiters == []  # a cancelled waiter is not kept
    flag.set()
    assert await flag.wait() is True


def _uses(source: str, attribute: str) -> set[str]:
    return set(re.findall(rf"self\.{attribute}\.(\w+)", source))


def test_uvicorn_uses_only_what_inbox_and_flag_provide() -> None:
    source = inspect.getsource(WebSocketsSansIOProtocol)
    assert _uses(source, "queue") <= {"put_nowait", "get", "empty", "qsize"}
    assert _uses(source, "writable") <= {"is_set", "set", "clear", "wait"}
    assert "self.queue.get()" in inspect.getsource(WebSocketsSansIOProtocol.receive)


def test_uvicorn_reads_the_handshake_only_before_start_keepalive() -> None:
    """``LeanWebSocketProtocol.start_keepalive`` drops the request, the
    response and the scope's headers: uvicorn must not read them later."""
    for name, member in inspect.getmembers(WebSocketsSansIOProtocol, inspect.isfunction):
        source = inspect.getsource(member)
        if name == "send":
            head, keepalive, tail = source.partition("self.start_keepalive()")
            assert keepalive, "uvicorn no longer starts the keepalive in send's accept"
            assert "self.response" not in tail.split("elif message")[0]
        elif name != "handle_connect":
            assert "self.request" not in source, name
            assert "self.response" not in source, name
        assert '["headers"]' not in source.replace('message.get("headers"', ""), name
    start_calls = inspect.getsource(WebSocketsSansIOProtocol).count("self.start_keepalive()")
    assert start_calls == 1


async def test_a_gateway_socket_carries_the_lean_objects_and_sheds_its_handshake() -> None:
    assert issubclass(GatewayWebSocketProtocol, LeanWebSocketProtocol)
    async with uvicorn_server(GatewayWebSocketProtocol) as (port, accepted):
        client = await RawClient.connect(port)
        conn = await accepted.get()
        protocol = conn.send.__self__
        assert isinstance(protocol.queue, Inbox) and isinstance(protocol.writable, Flag)
        assert protocol.request is None and protocol.response is None
        assert protocol.scope["headers"] == []
        # Still a working socket both ways.
        client.send(TEXT, b"hello")
        assert await conn.receive() == {"type": "websocket.receive", "text": "hello"}
        await conn.send({"type": "websocket.send", "text": "hi"})
        assert await client.frame() == b"\x81\x02hi"
        conn.done.set()
        client.close()
