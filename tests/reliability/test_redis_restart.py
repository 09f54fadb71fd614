"""Redis stopped, then started again empty on the same port: readiness
follows it, publishes fail cleanly meanwhile, open connections stay, get
`reset` (new epoch, offset 0) by themselves, then the new offsets live."""

from __future__ import annotations

import time

import pytest

from switchboard.client import Client

from .conftest import api_presence, assert_contiguous, collect_until, offsets, wait_until

# One redis-server restarted or its pub/sub clients killed; the cluster
# counterpart is test_cluster_faults.py.
pytestmark = pytest.mark.single_redis


async def test_redis_restart_empty_resets_and_resumes(start_gateway, redis_server, token) -> None:
    gateways = [start_gateway(NODE_ID=f"gw-{n}", redis=redis_server.url) for n in "ab"]
    room = "phoenix"
    clients = [await Client.connect(gateways[i % 2].ws_url, token(f"user{i}")) for i in range(4)]
    try:
        for client in clients:
            await client.join(room)
        for n in range(3):
            await clients[0].publish(room, f"old-{n}")
        for client in clients:
            seen = await collect_until(client, room, 3)
            assert_contiguous(offsets(seen), 1, 3)
        old_epoch = seen[-1]["epoch"]

        redis_server.stop()
        for gw in gateways:
            await gw.wait_status_async("/readyz", 503, timeout=10)
            assert gw.status("/healthz") == 200
        for client in clients[:2]:  # one per gateway
            reply = await client.publish(room, "into the void")
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            assert (await client.ping())["type"] == "pong"  # the connection stays open

        redis_server.start()
        for gw in gateways:
            await gw.wait_status_async("/readyz", 200, timeout=15)
        # No message is published: the reset arrives by itself.
        resets = []
        for index, client in enumerate(clients):
            frame = await client.recv(timeout=10)
            # The gateways re-add their members to presence meanwhile: those
            # events are not ordered with the room's messages (contract §5).
            while frame["type"] in ("presence_join", "presence_leave", "presence_count"):
                frame = await client.recv(timeout=10)
            assert frame["type"] == "reset", (index, frame)
            assert frame["room"] == room and frame["offset"] == 0 and frame["epoch"] != old_epoch
            resets.append(frame["epoch"])
        assert len(set(resets)) == 1, resets
        new_epoch = resets[0]

        # Later messages arrive without rejoining, offsets from 1 again.
        for n in range(3):
            ack = await clients[1].publish(room, f"new-{n}")
            assert ack["type"] == "ack" and ack["epoch"] == new_epoch, ack
        for client in clients:
            seen = await collect_until(client, room, 3)
            assert_contiguous(offsets(seen), 1, 3)
            assert {m["epoch"] for m in seen} == {new_epoch}
            assert [m["text"] for m in seen] == ["new-0", "new-1", "new-2"]

        # Presence heals: the gateways re-add their members.
        expected = {f"user{i}": 1 for i in range(4)}
        await wait_until(
            lambda: _presence_is(gateways[0], room, expected), 10, "presence re-populated after the restart"
        )

        # A client resuming with the old epoch learns that history was lost.
        async with await Client.connect(gateways[1].ws_url, token("late")) as late:
            joined = await late.join(room, since={"offset": 3, "epoch": old_epoch}, history=10)
            assert joined["recovered"] is False and joined["epoch"] == new_epoch
            assert offsets(joined["messages"]) == [1, 2, 3]
    finally:
        for client in clients:
            await client.close()


async def _presence_is(gateway, room: str, expected: dict[str, int]) -> bool:  # type: ignore[no-untyped-def]
    return await api_presence(gateway, room) == expected


async def test_reset_reaches_a_room_with_no_traffic_quickly(start_gateway, redis_server, token) -> None:
    """'as soon as the gateway is back on Redis': measured from readiness."""
    gw = start_gateway(NODE_ID="gw-a", redis=redis_server.url)
    async with await Client.connect(gw.ws_url, token("quiet")) as client:
        await client.join("quiet")
        await client.publish("quiet", "one")
        first = await client.recv_type("message")
        redis_server.stop()
        await gw.wait_status_async("/readyz", 503, timeout=10)
        redis_server.start()
        await gw.wait_status_async("/readyz", 200, timeout=15)
        ready_at = time.monotonic()
        frame = await client.recv(timeout=5)
        assert frame["type"] == "reset" and frame["epoch"] != first["epoch"]
        assert time.monotonic() - ready_at < 2.0
        with pytest.raises(TimeoutError):  # one reset, not one per check
            await client.recv(timeout=0.5)


async def test_redis_restart_under_traffic(start_gateway, redis_server, token) -> None:
    """A publisher keeps going (retrying `unavailable`) across the restart:
    each member sees a gap-free prefix of the old epoch, one reset, then the
    whole new epoch from offset 1, in order."""
    import asyncio

    env = dict(redis=redis_server.url, PUBLISH_RATE=200, PUBLISH_BURST=200, ABUSE_ERRORS=100000)
    gateways = [start_gateway(NODE_ID=f"gw-{n}", **env) for n in "ab"]
    room = "storm"
    publisher = await Client.connect(gateways[0].ws_url, token("pub"))
    members = [await Client.connect(gateways[i % 2].ws_url, token(f"m{i}")) for i in range(4)]
    try:
        for client in [publisher, *members]:
            await client.join(room)
        acks: list[dict] = []
        stop = asyncio.Event()

        async def publish() -> None:
            n = 0
            while not stop.is_set():
                reply = await publisher.publish(room, f"n{n}", client_msg_id=f"c{n}")
                if reply["type"] == "ack":
                    acks.append(reply)
                    n += 1
                else:
                    # unavailable: not stored; outcome_unknown: Redis went away
                    # after taking it. Either way the retry (same client_msg_id)
                    # is stored at most once.
                    assert reply["code"] in ("unavailable", "outcome_unknown"), reply
                await asyncio.sleep(0.01)  # pacing (and the retry interval)

        task = asyncio.create_task(publish())
        await wait_until(lambda: len(acks) >= 30, 10, "30 messages before the crash")
        redis_server.stop()
        await gateways[0].wait_status_async("/readyz", 503, timeout=10)
        redis_server.start()
        old_epoch = acks[0]["epoch"]
        await wait_until(lambda: sum(a["epoch"] != old_epoch for a in acks) >= 30, 20, "30 messages after")
        stop.set()
        await asyncio.wait_for(task, 10)
        new = [a for a in acks if a["epoch"] != old_epoch]
        assert [a["offset"] for a in new] == list(range(1, len(new) + 1))
        for index, client in enumerate(members):
            frames: list[dict] = []
            while not (frames and frames[-1].get("epoch") == new[-1]["epoch"] and frames[-1].get("offset") == len(new)):
                frame = await client.recv(timeout=10)
                if frame["type"] in ("message", "reset"):
                    frames.append(frame)
            resets = [i for i, f in enumerate(frames) if f["type"] == "reset"]
            assert len(resets) == 1, (index, [f for f in frames if f["type"] == "reset"])
            before, after = frames[: resets[0]], frames[resets[0] + 1 :]
            assert frames[resets[0]]["epoch"] == new[0]["epoch"] and frames[resets[0]]["offset"] == 0
            assert {f["epoch"] for f in before} <= {old_epoch}
            assert_contiguous(offsets(before), 1, len(before), f"member {index}, old epoch")
            assert {f["epoch"] for f in after} == {new[0]["epoch"]}
            assert_contiguous(offsets(after), 1, len(new), f"member {index}, new epoch")
    finally:
        for client in [publisher, *members]:
            await client.close()
