"""Issue 10 against real gateway processes on a real Redis: limits that hold
per user across gateways, guests, bodies, read-only frames that write
nothing, publishes whose outcome is unknown, logs without secrets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import httpx
import pytest

from switchboard.client import Client, ClientClosed
from switchboard_harness import TEST_API_KEY

from .conftest import keys_with_prefix, rss_kib, wait_until


async def connect_or_close_code(url: str, token: str) -> int | None:
    """None when the connection is usable, else the close code it got."""
    try:
        client = await Client.connect(url, token)
    except ClientClosed as closed:
        return closed.code
    try:
        await client.ping()
    except ClientClosed as closed:
        return closed.code
    finally:
        await client.close()
    return None


# --- 8. per-user limits hold across gateways ------------------------------------------------------------


async def test_connections_per_user_across_gateways(start_gateway, token) -> None:
    gws = [start_gateway(NODE_ID=f"gw-{n}", MAX_CONNECTIONS_PER_USER=2) for n in "ab"]
    a = await Client.connect(gws[0].ws_url, token("alice"))
    b = await Client.connect(gws[1].ws_url, token("alice"))
    try:
        for gw in gws:
            assert await connect_or_close_code(gw.ws_url, token("alice")) == 1013
        assert await connect_or_close_code(gws[0].ws_url, token("bob")) is None
        await a.close()  # its gateway releases the place as the socket closes

        async def freed() -> bool:
            return await connect_or_close_code(gws[1].ws_url, token("alice")) is None

        await wait_until(freed, 5, "alice's freed place is usable on the other gateway", interval=0.1)
    finally:
        await a.close()
        await b.close()


async def test_publish_rate_is_per_user_across_gateways_and_reconnects(start_gateway, token) -> None:
    """Ten sockets of one user published ten times the rate, and
    reconnecting refilled the bucket: now one budget per user, in Redis."""
    gws = [start_gateway(NODE_ID=f"gw-{n}", PUBLISH_RATE=0.05, PUBLISH_BURST=4) for n in "ab"]
    clients = [await Client.connect(gws[n % 2].ws_url, token("spammer")) for n in range(4)]
    try:
        for client in clients:
            await client.join("r")
        replies = [await client.publish("r", f"{n}-{k}") for k in range(3) for n, client in enumerate(clients)]
        assert sum(r["type"] == "ack" for r in replies) == 4, replies
        assert all(r.get("code") == "rate_limited" for r in replies if r["type"] != "ack")
        for client in clients:
            await client.close()
        clients = [await Client.connect(gws[n % 2].ws_url, token("spammer")) for n in range(2)]
        for client in clients:
            await client.join("r")
            reply = await client.publish("r", "after reconnecting")
            assert reply.get("code") == "rate_limited", reply
    finally:
        for client in clients:
            await client.close()


async def test_typing_is_limited_per_user_across_gateways(start_gateway, token) -> None:
    """40,000 typing frames were relayed in full."""
    gws = [start_gateway(NODE_ID=f"gw-{n}", TYPING_RATE=0.05, TYPING_BURST=3, ABUSE_ERRORS=10_000) for n in "ab"]
    typists = [await Client.connect(gws[n].ws_url, token("typist")) for n in range(2)]
    watcher = await Client.connect(gws[0].ws_url, token("watcher"))
    try:
        for client in (*typists, watcher):
            await client.join("t")
        for n in range(80):  # within the frame budget: the typing limit is what refuses
            await typists[n % 2].send({"type": "typing", "room": "t"})
        for typist in typists:  # every typing frame was answered or relayed before the pong
            assert (await typist.ping())["type"] == "pong"
        await watcher.publish("t", "marker")  # arrives after every relayed typing
        relayed = 0
        while True:
            frame = await watcher.recv(timeout=5)
            if frame["type"] == "message":
                break
            relayed += frame["type"] == "typing"
        assert relayed == 3, relayed
    finally:
        for client in (*typists, watcher):
            await client.close()


# --- 4, 5, 6. guests --------------------------------------------------------------------------------------


async def test_guest_sign_ins_are_limited_per_address_across_gateways(start_gateway) -> None:
    """20,000 guests were minted in 77 s. Behind the load balancer the client
    address is X-Forwarded-For from a trusted proxy (loopback here)."""
    gws = [start_gateway(NODE_ID=f"gw-{n}", ALLOW_GUESTS="true", GUEST_MINTS_PER_MINUTE=4) for n in "ab"]
    statuses = []
    async with httpx.AsyncClient(timeout=5) as http:
        for n in range(6):
            response = await http.post(
                gws[n % 2].http_url + "/auth/guest", json={"name": f"g{n}"}, headers={"X-Forwarded-For": "203.0.113.7"}
            )
            statuses.append(response.status_code)
        other = await http.post(
            gws[0].http_url + "/auth/guest", json={"name": "x"}, headers={"X-Forwarded-For": "203.0.113.8"}
        )
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert other.status_code == 200


def test_a_200_mb_guest_body_is_refused_before_it_is_read(start_gateway) -> None:
    gw = start_gateway(ALLOW_GUESTS="true")
    before = rss_kib(gw.pid)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(b"POST /auth/guest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200000000\r\n\r\n" + b"{" * 65536)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"connection: close" in answer.lower()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:  # no Content-Length: streamed
        sock.sendall(b"POST /auth/guest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(64):
            try:
                sock.sendall(b"4000\r\n" + b"[" * 0x4000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(5)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert rss_kib(gw.pid) - before < 2048


# --- 7. read-only frames write nothing ----------------------------------------------------------------------


async def test_read_only_frames_on_unknown_rooms_leave_no_keys(start_gateway, token, redis_url, redis_prefix) -> None:
    """history and join on new room names created keys living 24 h."""
    gw = start_gateway(NODE_ID="gw-a")
    async with await Client.connect(gw.ws_url, token("reader")) as c:
        for n in range(20):
            assert (await c.history(f"unknown-{n}"))["epoch"] is None
            await c.request({"type": "presence", "room": f"unknown-{n}"})
            joined = await c.join(f"new-{n}")
            assert joined["epoch"] is None and joined["offset"] == 0
            await c.leave(f"new-{n}")
    async with httpx.AsyncClient(base_url=gw.http_url, headers={"Authorization": f"Bearer {TEST_API_KEY}"}) as http:
        assert (await http.get("/api/rooms/api-unknown/history")).json()["epoch"] is None
        assert (await http.get("/api/rooms/api-unknown/presence")).status_code == 200
    keys = await keys_with_prefix(redis_url, redis_prefix)
    room_keys = [k for k in keys if b"unknown" in k or b"new-" in k]
    assert room_keys == [], room_keys


async def test_a_fresh_room_adopts_its_first_epoch_without_a_reset(start_gateway, token) -> None:
    gws = [start_gateway(NODE_ID=f"gw-{n}") for n in "ab"]
    a = await Client.connect(gws[0].ws_url, token("a"))
    b = await Client.connect(gws[1].ws_url, token("b"))
    try:
        assert (await a.join("fresh"))["epoch"] is None
        assert (await b.join("fresh"))["epoch"] is None
        ack = await b.publish("fresh", "first")
        for client in (a, b):
            frame = await client.recv_type("message", timeout=5)
            assert frame["epoch"] == ack["epoch"] and frame["offset"] == 1
        rejoined = await Client.connect(gws[0].ws_url, token("c"))
        async with rejoined:
            joined = await rejoined.join("fresh", since={"offset": 0, "epoch": None})
            assert joined["epoch"] == ack["epoch"] and joined["recovered"] is False
    finally:
        await a.close()
        await b.close()


# --- 12. huge offsets are not an outage -----------------------------------------------------------------


async def test_huge_offsets_are_answered_not_an_outage(start_gateway, token) -> None:
    """`before` >= 10^14 reached Lua as 1e+14, failed in Redis and was
    reported as `unavailable`."""
    gw = start_gateway(NODE_ID="gw-a")
    async with await Client.connect(gw.ws_url, token("a")) as c:
        await c.join("big")
        await c.publish("big", "one")
        for before in (10**14 + 2, 10**15, 2**53 - 1):
            page = await c.history("big", before=before)
            assert page["type"] == "history" and [m["text"] for m in page["messages"]] == ["one"], page
        joined = await c.join("big", since={"offset": 10**15, "epoch": "x"})
        assert joined["recovered"] is False
        too_big = await c.request({"type": "history", "room": "big", "before": 2**53})
        assert too_big["code"] == "bad_request"
    async with httpx.AsyncClient(base_url=gw.http_url) as http:
        metrics = (await http.get("/metrics")).text
    assert 'switchboard_errors_out_total{code="unavailable"}' not in metrics


# --- 9. unavailable means not stored; otherwise outcome_unknown ---------------------------------------------


async def test_a_hung_redis_gives_outcome_unknown_and_the_retry_is_safe(start_gateway, redis_server) -> None:
    """A publish answered `unavailable` while Redis hung was stored after
    Redis woke up. Now: `outcome_unknown`, and the retry with the same
    client_msg_id gets the original answer, stored once. (Over the HTTP API:
    a WebSocket publish first takes the user's token from Redis; a hung Redis
    fails that step and the connection's own bucket alone applies, so it
    waits out two timeouts.)"""
    gw = start_gateway(NODE_ID="gw-a", redis=redis_server.url)
    auth = {"Authorization": f"Bearer {TEST_API_KEY}"}
    async with httpx.AsyncClient(base_url=gw.http_url, headers=auth, timeout=30) as http:
        first = await http.post("/api/publish", json={"room": "hang", "text": "before"})
        assert first.json()["offset"] == 1
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            hung = await http.post("/api/publish", json={"room": "hang", "text": "during", "client_msg_id": "k-1"})
            assert hung.status_code == 503 and hung.json()["error"] == "outcome_unknown", hung.text
            assert "client_msg_id" in hung.json()["message"]
            assert time.monotonic() - started < 10
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        await gw.wait_status_async("/readyz", 200, timeout=15)
        retry = await http.post("/api/publish", json={"room": "hang", "text": "during (retry)", "client_msg_id": "k-1"})
        assert retry.status_code == 200 and retry.json()["offset"] == 2, retry.text  # it was stored: the first answer
        page = (await http.get("/api/rooms/hang/history")).json()
        assert [m["text"] for m in page["messages"]] == ["before", "during"]


async def test_the_broker_tells_unknown_from_unavailable(redis_server) -> None:
    from switchboard.protocol.frames import MessageBody, User
    from switchboard_gateway.broker import BrokerOutcomeUnknown, BrokerUnavailable
    from switchboard_gateway.broker.redis import RedisBroker

    from tests.contract.broker_harness import Recorder

    body = MessageBody(User("u", "u"), "x", 1)
    broker = RedisBroker(redis_server.url, prefix="oc")
    await broker.start(Recorder("oc"))
    try:
        assert (await broker.publish("r", body, "a")).offset == 1
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(BrokerOutcomeUnknown):
                await broker.publish("r", body, "b")
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        await wait_until(lambda: broker.available, 15, "broker back")
        assert (await broker.publish("r", body, "b")).duplicate  # it had run
        redis_server.stop()
        # Once the broker noticed (its loop saw the closed sockets), a publish
        # is refused before anything is sent. (A publish racing Redis's death
        # is outcome_unknown, which is the truth then.)
        await wait_until(lambda: not broker.available, 10, "broker notices")
        with pytest.raises(BrokerUnavailable) as refused:
            await broker.publish("r", body, "c")
        assert not isinstance(refused.value, BrokerOutcomeUnknown)
    finally:
        await broker.close()


async def test_a_stopped_redis_gives_unavailable_and_nothing_is_stored(start_gateway, redis_server, token) -> None:
    gw = start_gateway(NODE_ID="gw-a", redis=redis_server.url)
    async with await Client.connect(gw.ws_url, token("a")) as c:
        await c.join("down")
        assert (await c.publish("down", "before"))["offset"] == 1
        port = redis_server.port
        redis_server.stop()
        await gw.wait_status_async("/readyz", 503, timeout=10)
        reply = await c.publish("down", "refused", client_msg_id="k-2")
        assert reply["type"] == "error" and reply["code"] == "unavailable", reply
        assert redis_server.port == port
        redis_server.start()
        await gw.wait_status_async("/readyz", 200, timeout=15)
        assert (await c.history("down"))["messages"] == []  # restarted empty: nothing was queued anywhere


# --- 14. no token, no Bearer header, no message text in the logs ----------------------------------------------


def test_tokens_and_texts_never_reach_the_log_even_at_debug(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a", LOG_LEVEL="debug")
    query_token, bearer_token = token("alice"), token("bob")
    secret_text = "secret-message-text-7f3a"

    async def run() -> None:
        for url in (f"{gw.ws_url}?tok%65n={query_token}", f"{gw.ws_url}?%74oken={query_token}&x=1"):
            async with await Client.connect(url) as c:
                assert c.welcome["user"]["id"] == "alice"
                await c.join("r")
                await c.publish("r", secret_text)
        async with await Client.connect(gw.ws_url, bearer_token, bearer=True) as c:
            await c.join("r")
            await c.publish("r", secret_text)

    asyncio.run(run())
    gw.stop()
    log = gw.output()
    assert "WebSocket /ws" in log and "[redacted]" in log
    for secret in (query_token, bearer_token, secret_text, query_token.split(".")[1], bearer_token.split(".")[2]):
        assert secret not in log, secret


def test_deep_frames_leave_no_traceback_in_the_log(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a", LOG_LEVEL="info")

    async def run() -> None:
        async with await Client.connect(gw.ws_url, token("deep")) as c:
            for _ in range(5):
                await c.send('{"type":"ping","x":' + "[" * 8000 + "]" * 8000 + "}")
                assert (await c.recv_type("error"))["code"] == "bad_request"
            assert (await c.ping())["type"] == "pong"

    asyncio.run(run())
    gw.stop()
    assert "Traceback" not in gw.output() and "RecursionError" not in gw.output()


def test_debug_log_shows_the_request_without_a_token(start_gateway, token) -> None:
    """The redaction decodes query keys: ?tok%65n= is ?token=."""
    from switchboard_gateway.lifecycle import redact

    jwt_ = token("alice")
    assert jwt_ not in redact(f'"GET /ws?tok%65n={jwt_}&x=1 HTTP/1.1" 101')
    assert "x=1" in redact(f"/ws?tok%65n={jwt_}&x=1") and "[redacted]" in redact(f"/ws?TOKEN=abc")
    assert jwt_ not in redact(f"some text {jwt_} more")
    assert json.dumps(redact("/ws?room=lobby")) == '"/ws?room=lobby"'
