"""Guarantee 3: recovery after reconnect — on the OTHER gateway, with
`since`: exactly the missed messages, then live ones, no gap, no duplicate;
`recovered: false` whenever that cannot be promised."""

from __future__ import annotations

import asyncio
import contextlib

from switchboard.client import Client

from .conftest import assert_contiguous, collect_until, offsets


async def test_reconnect_to_other_gateway_recovers_exactly_the_missed(start_gateway, token) -> None:
    a = start_gateway(NODE_ID="gw-a", PUBLISH_RATE=200, PUBLISH_BURST=200)
    b = start_gateway(NODE_ID="gw-b", PUBLISH_RATE=200, PUBLISH_BURST=200)
    room = "resume"
    publisher = await Client.connect(b.ws_url, token("pub"))
    reader = await Client.connect(a.ws_url, token("reader"))
    try:
        await publisher.join(room)
        joined = await reader.join(room)
        assert joined["offset"] == 0 and joined["recovered"] is None
        for n in range(1, 4):
            await publisher.publish(room, f"before-{n}")
        seen = await collect_until(reader, room, 3)
        assert_contiguous(offsets(seen), 1, 3, "reader before the cut")
        epoch = seen[-1]["epoch"]
        await reader.close()

        missed = 7  # published while the reader is away
        for n in range(missed):
            ack = await publisher.publish(room, f"away-{n}")
            assert ack["type"] == "ack"
        assert ack["offset"] == 3 + missed

        # Reconnect to the other gateway while the publisher keeps going: the
        # seam between the recovered and the live messages is under load.
        live_total = 40
        started = asyncio.Event()

        async def keep_publishing() -> None:
            for n in range(live_total):
                ack = await publisher.publish(room, f"live-{n}")
                assert ack["type"] == "ack", ack
                if n == 2:
                    started.set()
                await asyncio.sleep(0.005)  # pacing

        task = asyncio.create_task(keep_publishing())
        reader = await Client.connect(b.ws_url, token("reader"))
        assert reader.node == "gw-b"
        await asyncio.wait_for(started.wait(), 10)  # join while the live messages flow
        joined = await reader.join(room, since={"offset": 3, "epoch": epoch})
        assert joined["recovered"] is True
        recovered = offsets([m for m in joined["messages"]])
        assert recovered[:missed] == list(range(4, 4 + missed)), recovered
        assert recovered == list(range(4, joined["offset"] + 1))
        await asyncio.wait_for(task, 20)
        total = 3 + missed + live_total
        live = await collect_until(reader, room, total) if joined["offset"] < total else []
        assert_contiguous(recovered + offsets(live), 4, total, "recovered + live")
        with contextlib.suppress(TimeoutError):  # and nothing after: no duplicate trails in
            extra = await reader.recv_type("message", timeout=0.3)
            raise AssertionError(f"unexpected extra message {extra}")
    finally:
        await publisher.close()
        await reader.close()


async def test_recovered_false_when_it_cannot_be_promised(start_gateway, token) -> None:
    a = start_gateway(NODE_ID="gw-a", HISTORY_SIZE=5, PUBLISH_BURST=100)
    b = start_gateway(NODE_ID="gw-b", HISTORY_SIZE=5, PUBLISH_BURST=100)
    room = "retention"
    async with await Client.connect(a.ws_url, token("pub")) as pub, await Client.connect(
        b.ws_url, token("reader")
    ) as reader:
        await pub.join(room)
        for n in range(1, 11):
            ack = await pub.publish(room, f"m{n}")
        assert ack["offset"] == 10
        epoch = ack["epoch"]

        async def rejoin(**kwargs) -> dict:  # type: ignore[no-untyped-def]
            joined = await reader.join(room, **kwargs)
            assert joined["type"] == "joined", joined
            left = await reader.leave(room)
            assert left["type"] == "left"
            return joined

        # Within retention (history keeps 6..10): recovered, exactly the rest.
        j = await rejoin(since={"offset": 5, "epoch": epoch})
        assert j["recovered"] is True and offsets(j["messages"]) == [6, 7, 8, 9, 10]
        j = await rejoin(since={"offset": 10, "epoch": epoch})
        assert j["recovered"] is True and j["messages"] == [] and j["offset"] == 10
        # Older than retention.
        j = await rejoin(since={"offset": 4, "epoch": epoch})
        assert j["recovered"] is False and j["messages"] == []
        j = await rejoin(since={"offset": 1, "epoch": epoch})
        assert j["recovered"] is False and j["messages"] == []
        # Another epoch, even with an offset that would otherwise be fine.
        j = await rejoin(since={"offset": 9, "epoch": "not-" + epoch})
        assert j["recovered"] is False and j["messages"] == [] and j["epoch"] == epoch
        # Above the newest offset.
        j = await rejoin(since={"offset": 11, "epoch": epoch})
        assert j["recovered"] is False and j["messages"] == []
        # since + history: since wins when it succeeds ...
        j = await rejoin(since={"offset": 8, "epoch": epoch}, history=5)
        assert j["recovered"] is True and offsets(j["messages"]) == [9, 10]
        # ... and when it fails, the last N follow.
        j = await rejoin(since={"offset": 2, "epoch": epoch}, history=3)
        assert j["recovered"] is False and offsets(j["messages"]) == [8, 9, 10]
        j = await rejoin(since={"offset": 50, "epoch": epoch}, history=2)
        assert j["recovered"] is False and offsets(j["messages"]) == [9, 10]
        j = await rejoin(since={"offset": 9, "epoch": "other"}, history=2)
        assert j["recovered"] is False and offsets(j["messages"]) == [9, 10]
        # No since: recovered is null.
        j = await rejoin(history=2)
        assert j["recovered"] is None and offsets(j["messages"]) == [9, 10]
