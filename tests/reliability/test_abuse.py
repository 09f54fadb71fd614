"""Guarantee 7: abuse gets a clear answer, and touches nobody else."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from switchboard.client import Client, ClientClosed

from .conftest import assert_contiguous, collect_until, offsets


async def test_publish_burst_is_rate_limited(start_gateway, token) -> None:
    # ABUSE_ERRORS is raised so that the ~80 refusals are all answered: with
    # the default (50 errors in 10 s) the burst itself closes with 1008.
    gw = start_gateway(NODE_ID="gw-a", ABUSE_ERRORS=1000)
    async with await Client.connect(gw.ws_url, token("spammer")) as spammer:
        await spammer.join("flood")
        replies = await asyncio.gather(*(spammer.publish("flood", f"n{n}") for n in range(100)))
        acks = [r for r in replies if r["type"] == "ack"]
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        assert len(acks) + len(limited) == 100, [r for r in replies if r not in acks and r not in limited]
        assert 20 <= len(acks) <= 21, len(acks)  # burst 20 (+1 refilled at 10/s meanwhile)
        assert all(r["retry_after"] > 0 for r in limited)
        assert all(isinstance(r["retry_after"], int) for r in limited)
        assert sorted(a["offset"] for a in acks) == list(range(1, len(acks) + 1))
        # The accepted ones, and only they, were delivered.
        got = await collect_until(spammer, "flood", len(acks))
        assert_contiguous(offsets(got), 1, len(acks))
        # After retry_after, publishing works again.
        await asyncio.sleep(max(r["retry_after"] for r in limited[:1]) / 1000)
        assert (await spammer.publish("flood", "later"))["type"] == "ack"


async def test_default_abuse_limit_closes_a_rate_limit_ignorer(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a")
    async with await Client.connect(gw.ws_url, token("spammer")) as spammer:
        await spammer.join("flood")
        for n in range(100):
            try:
                await spammer.send({"type": "publish", "room": "flood", "text": f"n{n}", "id": n})
            except websockets.ConnectionClosed:
                break
        code, _ = await spammer.wait_closed(10)
        assert code == 1008


async def test_garbage_flood_closes_1008_and_others_are_unaffected(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a", PUBLISH_RATE=1000, PUBLISH_BURST=1000)
    room = "bystanders"
    garbage_kinds = ["not json", "{}", '{"type":"nope"}', '{"type":"publish"}', "[1,2", b"\x00binary"]
    async with await Client.connect(gw.ws_url, token("pub")) as pub, await Client.connect(
        gw.ws_url, token("reader")
    ) as reader, await Client.connect(gw.ws_url, token("troll")) as troll:
        await pub.join(room)
        await reader.join(room)
        total = 100
        collector = asyncio.create_task(collect_until(reader, room, total))

        async def flood() -> int:
            sent = 0
            try:
                for n in range(1000):
                    await troll.send(garbage_kinds[n % len(garbage_kinds)])
                    sent += 1
                    if n % 50 == 0:
                        await asyncio.sleep(0)  # let the publisher interleave
            except websockets.ConnectionClosed:
                pass
            return sent

        async def publish_all() -> None:
            for n in range(total):
                ack = await pub.publish(room, f"m{n}")
                assert ack["type"] == "ack", ack

        sent, _ = await asyncio.gather(flood(), publish_all())
        code, reason = await troll.wait_closed(10)
        assert code == 1008, (code, reason)
        got = await collector
        assert_contiguous(offsets(got), 1, total, "reader during the flood")
        assert [m["text"] for m in got] == [f"m{n}" for n in range(total)]
        assert (await pub.ping())["type"] == "pong" and (await reader.ping())["type"] == "pong"
        print(f"garbage flood: {sent} frames sent before the 1008")


async def test_oversized_frame_closes_1009(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a", MAX_FRAME_BYTES=4096)
    async with await Client.connect(gw.ws_url, token("big")) as big, await Client.connect(
        gw.ws_url, token("bystander")
    ) as bystander:
        await big.join("r")
        await bystander.join("r")
        assert (await big.publish("r", "x" * 1900))["type"] == "ack"  # under the limit: fine
        await big.send('{"type":"publish","room":"r","text":"' + "x" * 5000 + '"}')
        code, _ = await big.wait_closed(10)
        assert code == 1009
        assert (await bystander.publish("r", "still here"))["type"] == "ack"
        got = await collect_until(bystander, "r", 2)
        assert offsets(got) == [1, 2]


async def test_token_expiry_while_connected_closes_4001(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a")
    started = time.time()
    client = await Client.connect(gw.ws_url, token("brief", ttl=2))
    try:
        await client.join("r")
        assert (await client.ping())["type"] == "pong"
        code, reason = await client.wait_closed(10)
        assert code == 4001, (code, reason)
        assert time.time() - started < 4
        with pytest.raises(ClientClosed):
            await client.ping()
    finally:
        await client.close()
