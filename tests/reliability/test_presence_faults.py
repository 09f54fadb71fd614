"""Guarantee 5: presence is cluster-wide and self-healing — a SIGKILLed
gateway's members leave within PRESENCE_TTL; a user counts once however many
connections it has."""

from __future__ import annotations

import time

from switchboard.client import Client

from .conftest import api_presence, wait_until

TTL = 3.0
SLACK = 3.0  # only how long to keep waiting; the contract's bound (TTL) is asserted


async def test_sigkilled_gateway_members_leave_within_ttl(start_gateway, token) -> None:
    doomed = start_gateway(NODE_ID="gw-doomed", PRESENCE_TTL=TTL)
    survivor = start_gateway(NODE_ID="gw-survivor", PRESENCE_TTL=TTL)
    room = "wake"
    watcher = await Client.connect(survivor.ws_url, token("watcher"))
    victims = [await Client.connect(doomed.ws_url, token(f"victim{i}")) for i in range(2)]
    try:
        await watcher.join(room)
        for victim in victims:
            await victim.join(room)
        for i in range(2):
            frame = await watcher.recv_type("presence_join")
            assert frame["user"]["id"] == f"victim{i}"
        assert await api_presence(survivor, room) == {"watcher": 1, "victim0": 1, "victim1": 1}

        doomed.kill()  # SIGKILL: no goodbye
        killed_at = time.monotonic()
        left = set()
        while left != {"victim0", "victim1"}:
            frame = await watcher.recv_type("presence_leave", timeout=TTL + SLACK)
            assert frame["room"] == room
            assert frame["user"]["id"] not in left, "a second presence_leave"
            left.add(frame["user"]["id"])
        elapsed = time.monotonic() - killed_at
        assert elapsed < TTL, f"presence_leave {elapsed:.2f} s after the SIGKILL; PRESENCE_TTL is {TTL} s"
        print(f"dead gateway's members left presence {elapsed:.2f} s after SIGKILL (TTL {TTL} s)")
        assert await api_presence(survivor, room) == {"watcher": 1}
        assert (await watcher.presence(room))["members"] == [
            {"user": {"id": "watcher", "name": "watcher"}, "connections": 1}
        ]
    finally:
        for client in [watcher, *victims]:
            await client.close()


async def test_several_connections_of_one_user_count_once(start_gateway, token) -> None:
    a = start_gateway(NODE_ID="gw-a")
    b = start_gateway(NODE_ID="gw-b")
    room = "twins"
    observer = await Client.connect(b.ws_url, token("observer"))
    carol1 = await Client.connect(a.ws_url, token("carol"))
    carol2 = await Client.connect(b.ws_url, token("carol"))
    try:
        await observer.join(room)

        async def next_presence() -> tuple[str, str]:
            frame = await observer.recv(timeout=10)
            assert frame["type"] in ("presence_join", "presence_leave"), frame
            return frame["type"], frame["user"]["id"]

        async def sentinel(kind: str) -> None:
            """Pub/sub keeps a channel's order: if `observer` saw anything
            about carol before the sentinel's own event, it shows here."""
            dave = await Client.connect(a.ws_url, token("dave"))
            await dave.join(room)
            assert await next_presence() == ("presence_join", "dave"), f"after {kind}"
            await dave.close()
            assert await next_presence() == ("presence_leave", "dave"), f"after {kind}"

        await carol1.join(room)
        assert await next_presence() == ("presence_join", "carol")
        joined = await carol2.join(room)
        carol_entry = {"user": {"id": "carol", "name": "carol"}, "connections": 2}
        assert carol_entry in joined["presence"]
        await sentinel("the second connection joined")  # no second presence_join
        assert await api_presence(a, room) == {"observer": 1, "carol": 2}
        assert carol_entry in (await observer.presence(room))["members"]

        await carol1.close()
        await wait_until(lambda: _carol_connections(a, room, 1), 10, "carol's first connection removed")
        await sentinel("one of two connections closed")  # no presence_leave yet

        await carol2.close()
        assert await next_presence() == ("presence_leave", "carol")
        await sentinel("the last connection closed")  # exactly one leave
        assert await api_presence(b, room) == {"observer": 1}
    finally:
        for client in (observer, carol1, carol2):
            await client.close()


async def _carol_connections(gateway, room: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return (await api_presence(gateway, room)).get("carol") == n
