"""Guarantee 6: a slow reader hurts only itself. A peer that stops reading
(a raw socket with a small receive buffer that never calls recv) is closed
with 1013 and dropped; a normal member of the same room gets everything, in
order, with a latency like a run without the slow peer; memory stays bounded."""

from __future__ import annotations

import asyncio
import json
import time

from switchboard.client import Client

from .conftest import (
    RawWebSocket,
    assert_contiguous,
    collect_until,
    metric,
    offsets,
    percentile,
    rss_kib,
    wait_until,
)

QUEUE_MAX = 50
# On loopback the kernel grows the server's send buffer to tcp_wmem's max
# (4 MiB) even though the peer's window stays tiny (the MSS is 64 KiB there),
# so ~2,000 frames of 1.6 KB vanish into the kernel before the gateway's own
# outbox (SEND_QUEUE_MAX) starts to fill. Each phase publishes well past that.
PER_PHASE = 3000
TEXT = "x" * 1500  # a ~1.6 KB frame


async def run_phase(publisher: Client, reader: Client, room: str, first: int) -> tuple[list[int], list[float]]:
    """Publish PER_PHASE messages at a steady pace; the reader's offsets and
    latencies (receive time minus the message's server ts), in ms."""
    received_at: list[float] = []
    collector = asyncio.create_task(
        collect_until(reader, room, first + PER_PHASE - 1, timeout=60, received_at=received_at)
    )
    for _ in range(PER_PHASE):
        ack = await publisher.publish(room, TEXT)
        assert ack["type"] == "ack", ack
        # No pacing: the publisher's own round trip sets the (same) rate in both phases.
    got = await collector
    latencies = [(at * 1000 - m["ts"]) for m, at in zip(got, received_at)]
    return offsets(got), latencies


async def test_slow_reader_is_dropped_and_hurts_nobody(start_gateway, token) -> None:
    gw = start_gateway(NODE_ID="gw-a", SEND_QUEUE_MAX=QUEUE_MAX, PUBLISH_RATE=10000, PUBLISH_BURST=10000)
    room = "firehose"
    publisher = await Client.connect(gw.ws_url, token("pub"))
    reader = await Client.connect(gw.ws_url, token("reader"))
    slow: RawWebSocket | None = None
    try:
        await publisher.join(room)
        await reader.join(room)

        # Phase 1: no slow peer.
        got, base_latencies = await run_phase(publisher, reader, room, 1)
        assert_contiguous(got, 1, PER_PHASE, "reader, baseline")

        # Phase 2: the same load with a member that never reads.
        slow = await asyncio.to_thread(RawWebSocket.connect, gw.port, token("slow"), 4096)
        welcome = await asyncio.to_thread(slow.recv_json)
        assert welcome["type"] == "welcome"
        slow.send_text(json.dumps({"type": "join", "room": room, "id": 1}))
        joined = await asyncio.to_thread(slow.recv_json)
        assert joined["type"] == "joined" and joined["id"] == 1
        # From here on, `slow` is never read again.
        assert await metric(gw, "switchboard_connections") == 3
        rss_before = rss_kib(gw.pid)
        got, slow_latencies = await run_phase(publisher, reader, room, PER_PHASE + 1)
        assert_contiguous(got, PER_PHASE + 1, 2 * PER_PHASE, "reader, with a slow peer")
        rss_growth_mib = (rss_kib(gw.pid) - rss_before) / 1024

        # The slow one was closed with 1013 and its transport dropped by the server.
        await wait_until(lambda: _metric_is(gw, "switchboard_closes_total", 'code="1013"', 1), 10, "a 1013 close")
        closed_seen = time.monotonic()
        await wait_until(lambda: _metric_is(gw, "switchboard_connections", "", 2), 10, "the slow socket removed")
        dropped_after = time.monotonic() - closed_seen
        how = await asyncio.to_thread(slow.drain_to_end, 5.0)
        assert how in ("eof", "reset")

        base_p99 = percentile(base_latencies, 0.99)
        slow_p99 = percentile(slow_latencies, 0.99)
        print(
            f"reader p99 latency: {base_p99:.1f} ms alone, {slow_p99:.1f} ms with a slow peer; "
            f"slow peer dropped {dropped_after:.1f} s after its 1013 ({how}); RSS +{rss_growth_mib:.1f} MiB"
        )
        assert slow_p99 <= max(2 * base_p99, 50.0), (base_p99, slow_p99)
        assert rss_growth_mib < 50, f"RSS grew {rss_growth_mib:.1f} MiB"
        assert (await reader.ping())["type"] == "pong"
    finally:
        if slow is not None:
            slow.close()
        await publisher.close()
        await reader.close()


async def _metric_is(gw, name: str, labels: str, value: float) -> bool:  # type: ignore[no-untyped-def]
    return await metric(gw, name, labels) == value
