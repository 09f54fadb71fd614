"""Guarantee 8: graceful drain under traffic — SIGTERM one of two gateways
while a publisher on the other keeps publishing; its clients resume on the
other gateway with `since` and lose nothing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from switchboard.client import Client, ClientClosed

from .conftest import RawWebSocket, api_presence, assert_contiguous, collect_until, offsets

NOTICE = 1.0
TIMEOUT = 5.0


async def test_sigterm_drains_and_clients_resume_elsewhere(start_gateway, token) -> None:
    env = dict(DRAIN_NOTICE=NOTICE, DRAIN_TIMEOUT=TIMEOUT, PUBLISH_RATE=100, PUBLISH_BURST=100)
    drained = start_gateway(NODE_ID="gw-drained", **env)
    other = start_gateway(NODE_ID="gw-other", **env)
    room = "moving"
    publisher = await Client.connect(other.ws_url, token("pub"))
    watcher = await Client.connect(other.ws_url, token("watcher"))
    movers = [await Client.connect(drained.ws_url, token(f"mover{i}")) for i in range(3)]
    clients = [publisher, watcher, *movers]
    try:
        for client in clients:
            await client.join(room)
        assert await api_presence(other, room) == {"pub": 1, "watcher": 1, "mover0": 1, "mover1": 1, "mover2": 1}

        total = 150
        stop_at_half = asyncio.Event()

        async def publish_steadily() -> None:
            for n in range(total):
                ack = await publisher.publish(room, f"m{n}")
                assert ack["type"] == "ack", ack
                if n == 30:
                    stop_at_half.set()
                await asyncio.sleep(0.02)  # pacing: ~3 s of traffic

        publishing = asyncio.create_task(publish_steadily())
        # What each mover receives on the drained gateway, until its 1012.
        before: list[list[dict]] = [[] for _ in movers]

        async def read_until_closed(index: int) -> int | None:
            try:
                while True:
                    frame = await movers[index].recv(timeout=TIMEOUT + 5)
                    if frame["type"] == "message":
                        before[index].append(frame)
            except ClientClosed as closed:
                return closed.code

        readers = [asyncio.create_task(read_until_closed(i)) for i in range(len(movers))]
        await asyncio.wait_for(stop_at_half.wait(), 10)

        drained.terminate()
        signalled = time.monotonic()
        await drained.wait_status_async("/readyz", 503, timeout=NOTICE)
        assert not any(r.done() for r in readers), "sockets closed before /readyz turned 503"
        # A new upgrade during the notice is closed at once with 1012.
        with pytest.raises(ClientClosed) as refused:
            await Client.connect(drained.ws_url, token("latecomer"), timeout=3)
        assert refused.value.code == 1012
        codes = await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT + 5)
        assert codes == [1012] * len(movers), codes
        closed_after = time.monotonic() - signalled
        assert closed_after >= NOTICE * 0.9, f"sockets closed {closed_after:.2f} s after the signal"
        exit_code = await drained.wait_async(TIMEOUT + 1)
        exited_after = time.monotonic() - signalled
        assert exited_after < TIMEOUT, f"exited {exited_after:.2f} s after SIGTERM"
        assert exit_code == 0, drained.output()[-2000:]  # a complete drain is a clean exit
        assert "Traceback" not in drained.output(), drained.output()[-4000:]

        # Its presence entries went with it, at once (not after PRESENCE_TTL).
        assert await api_presence(other, room) == {"pub": 1, "watcher": 1}
        leaves = set()
        while len(leaves) < len(movers):
            frame = await watcher.recv(timeout=5)
            if frame["type"] == "presence_leave":
                leaves.add(frame["user"]["id"])
        assert leaves == {f"mover{i}" for i in range(len(movers))}

        # Resume on the other gateway with since: nothing lost, nothing twice.
        resumed = []
        for index in range(len(movers)):
            seen = before[index]
            assert seen, f"mover{index} received nothing before the drain"
            assert_contiguous(offsets(seen), 1, seen[-1]["offset"], f"mover{index} before the drain")
            client = await Client.connect(other.ws_url, token(f"mover{index}"))
            clients.append(client)
            joined = await client.join(room, since={"offset": seen[-1]["offset"], "epoch": seen[-1]["epoch"]})
            assert joined["recovered"] is True, joined
            resumed.append((client, offsets(seen) + offsets(joined["messages"])))
        await asyncio.wait_for(publishing, 30)
        for index, (client, got) in enumerate(resumed):
            if got[-1] < total:
                got += offsets(await collect_until(client, room, total))
            assert_contiguous(got, 1, total, f"mover{index} across the switch")
        print(f"drain: sockets closed {closed_after:.2f} s, process exited {exited_after:.2f} s after SIGTERM")
    finally:
        for client in clients:
            await client.close()


async def test_drain_deadline_holds_with_a_client_that_never_reads(start_gateway, token) -> None:
    """One deadline, taken at SIGTERM, bounds the whole drain: a socket whose
    peer never reads (so neither its backlog nor its close frame can be
    written) is given up on, and the process still exits within DRAIN_TIMEOUT."""
    notice, timeout = 1.0, 4.0
    gateway = start_gateway(
        DRAIN_NOTICE=notice,
        DRAIN_TIMEOUT=timeout,
        PUBLISH_RATE=1000,
        PUBLISH_BURST=1000,
        SEND_QUEUE_MAX=100_000,  # the slow-consumer close must not end it first
        SEND_QUEUE_MAX_BYTES=64 * 1024 * 1024,
        MAX_TEXT_CHARS=16_000,
        MAX_FRAME_BYTES=65_536,
    )
    room = "stuck"
    stuck = RawWebSocket.connect(gateway.port, token("stuck"))
    publisher = await Client.connect(gateway.ws_url, token("pub"))
    try:
        assert stuck.recv_json()["type"] == "welcome"
        stuck.send_text(json.dumps({"type": "join", "room": room, "id": 1}))
        assert stuck.recv_json()["type"] == "joined"
        # From here on `stuck` reads nothing. 7.5 MB for it fill its 4 KiB
        # receive window, the kernel's send buffer (up to 4 MiB, tcp_wmem) and
        # the transport's buffer, so that nothing more can be written to it.
        await publisher.join(room)
        text = "x" * 15_000
        for _ in range(500):
            ack = await publisher.publish(room, text)
            assert ack["type"] == "ack", ack
        await collect_until(publisher, room, 500)  # every delivery was handed to the sockets

        gateway.terminate()
        signalled = time.monotonic()
        exit_code = await gateway.wait_async(timeout + 5)
        exited_after = time.monotonic() - signalled
        assert exited_after <= timeout + 0.5, f"exited {exited_after:.2f} s after SIGTERM (DRAIN_TIMEOUT {timeout})"
        assert exit_code == 0, gateway.output()[-2000:]
        assert "Traceback" not in gateway.output(), gateway.output()[-4000:]
        print(f"drain with a stuck reader: exited {exited_after:.2f} s after SIGTERM")
    finally:
        await publisher.close()
        stuck.close()
