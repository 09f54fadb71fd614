"""Big rooms (protocol §10) over two real gateways and a real Redis, with
small thresholds: PRESENCE_LIST_MAX=5 (lists), PRESENCE_EVENTS_MAX=3
(presence_join/_leave up to 3 users, presence_count above)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from switchboard.client import Client, RoomPresence

LIST_MAX = 5
EVENTS_MAX = 3
BIG = {"PRESENCE_LIST_MAX": LIST_MAX, "PRESENCE_EVENTS_MAX": EVENTS_MAX}


@pytest.fixture
def gateways(start_gateway):  # type: ignore[no-untyped-def]
    return start_gateway(NODE_ID="gw-a", **BIG), start_gateway(NODE_ID="gw-b", **BIG)


def ids(members: list[dict[str, Any]]) -> list[str]:
    found = [m["user"]["id"] for m in members]
    assert len(found) == len(set(found)), f"a user listed twice: {found}"
    return found


async def api_presence(gateway, room: str, api_key: str, **params: Any) -> httpx.Response:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=10) as http:
        return await http.get(
            f"/api/rooms/{room}/presence", params=params, headers={"Authorization": f"Bearer {api_key}"}
        )


class Watch:
    """The presence frames one client receives for a room, with when they arrived."""

    def __init__(self, client: Client, room: str) -> None:
        self.client = client
        self.view = RoomPresence(room)
        self.frames: list[tuple[float, dict[str, Any]]] = []

    async def until(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not predicate():
                frame = await self.client.recv(timeout)
                if self.view.apply(frame):
                    self.frames.append((time.monotonic(), frame))

    async def quiet(self, seconds: float) -> None:
        """Record whatever arrives within `seconds` (to show nothing more does)."""
        try:
            await self.until(lambda: False, timeout=seconds)
        except TimeoutError:
            pass

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for _, f in self.frames if f["type"] == kind]

    def times(self, kind: str) -> list[float]:
        return [t for t, f in self.frames if f["type"] == kind]


async def test_lists_are_capped_with_the_count_and_the_joiner_listed(gateways, token, api_key) -> None:
    a, b = gateways
    room = "stadium"
    clients = [await Client.connect((a, b)[n % 2].ws_url, token(f"u{n}", name=f"User {n}")) for n in range(12)]
    outsider = await Client.connect(b.ws_url, token("outsider"))
    try:
        for n, client in enumerate(clients):
            joined = await client.join(room)
            assert joined["presence_count"] == n + 1
            listed = ids(joined["presence"])
            assert len(listed) == min(n + 1, LIST_MAX)
            assert f"u{n}" in listed  # the joiner always sees itself
            assert set(listed) <= {f"u{k}" for k in range(n + 1)}
            assert all(m["connections"] == 1 for m in joined["presence"])

        for asker in (clients[0], clients[11], outsider):  # a member on each gateway, a non-member
            reply = await asker.presence(room)
            assert reply["count"] == 12 and len(ids(reply["members"])) == LIST_MAX

        # u0 opens a second connection on the other gateway: still 12 users, u0 has 2.
        twin = await Client.connect(b.ws_url, token("u0", name="User 0"))
        try:
            joined = await twin.join(room)
            assert joined["presence_count"] == 12 and joined["presence"][0]["user"]["id"] == "u0"
            assert joined["presence"][0]["connections"] == 2

            for gateway in (a, b):
                reply = await api_presence(gateway, room, api_key)  # default limit 1000: everyone
                assert reply.status_code == 200
                body = reply.json()
                assert body["room"] == room and body["count"] == 12
                assert sorted(ids(body["members"])) == sorted(f"u{n}" for n in range(12))
                assert {m["user"]["id"]: m["connections"] for m in body["members"]}["u0"] == 2
            for limit, listed in ((1, 1), (3, 3), (12, 12), (10_000, 12)):
                body = (await api_presence(a, room, api_key, limit=limit)).json()
                assert body["count"] == 12 and len(ids(body["members"])) == listed
        finally:
            await twin.close()
    finally:
        for client in [*clients, outsider]:
            await client.close()


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "abc", "1.5", "1e3"])
async def test_http_presence_refuses_bad_limits(gateways, api_key, limit: str) -> None:
    reply = await api_presence(gateways[0], "stadium", api_key, limit=limit)
    assert reply.status_code == 400
    assert reply.json()["error"] == "bad_request" and "limit" in reply.json()["message"]


async def test_http_presence_of_an_empty_room_and_without_a_key(gateways, api_key) -> None:
    reply = await api_presence(gateways[1], "nobody-here", api_key, limit="")  # empty: the default
    assert reply.status_code == 200 and reply.json() == {"room": "nobody-here", "members": [], "count": 0}
    assert (await api_presence(gateways[1], "nobody-here", "wrong-key")).status_code == 401


async def test_events_up_to_the_threshold_then_coalesced_counts(gateways, token) -> None:
    a, b = gateways
    room = "concert"
    watcher = await Client.connect(a.ws_url, token("watcher"))
    far = await Client.connect(b.ws_url, token("far"))  # a member on the other gateway
    fans = [await Client.connect((b, a)[n % 2].ws_url, token(f"fan{n}")) for n in range(8)]
    watch, far_watch = Watch(watcher, room), Watch(far, room)
    try:
        watch.view.apply(await watcher.join(room))
        far_watch.view.apply(await far.join(room))
        joined = await fans[0].join(room)  # the 3rd user: still announced, by name
        assert joined["presence_count"] == 3
        await watch.until(lambda: watch.view.count == 3)
        assert [(f["type"], f["user"]["id"], f["count"]) for f in watch.of("presence_join")] == [
            ("presence_join", "far", 2),
            ("presence_join", "fan0", 3),
        ]

        # The 4th user: counted after the join, above 3 -> presence_count, no name.
        assert (await fans[1].join(room))["presence_count"] == 4
        await watch.until(lambda: watch.view.count == 4)
        assert watch.of("presence_count") == [{"type": "presence_count", "room": room, "count": 4}]

        # Six more as fast as they can: coalesced, newest value last, at most one a second.
        started = time.monotonic()
        counts = [(await fan.join(room))["presence_count"] for fan in fans[2:]]
        assert counts == [5, 6, 7, 8, 9, 10]
        for w in (watch, far_watch):
            await w.until(lambda w=w: w.view.count == 10)
        await watch.quiet(1.5)  # and then nothing more: the count stopped changing
        sent = [f["count"] for f in watch.of("presence_count")]
        assert sent[-1] == 10 and sent == sorted(sent) and len(set(sent)) == len(sent)
        assert len(sent) <= 2 + (time.monotonic() - started), sent
        gaps = [t2 - t1 for t1, t2 in zip(watch.times("presence_count"), watch.times("presence_count")[1:])]
        assert all(gap > 0.5 for gap in gaps), gaps  # 1 s apart at the gateway; arrival jitters a little
        assert len(watch.of("presence_join")) == 2  # no names above the threshold
        assert far_watch.view.count == 10 and not far_watch.of("presence_leave")

        # Leaves: counts down to 4 (coalesced), then 3 is announced by name again.
        for fan in reversed(fans[1:]):
            await fan.leave(room)
        await watch.until(lambda: watch.view.count == 3)
        leaves = watch.of("presence_leave")
        assert [(f["user"]["id"], f["count"]) for f in leaves] == [("fan1", 3)]
        assert all(f["count"] >= 4 for f in watch.of("presence_count"))
        await watch.quiet(1.5)  # the leave carried the count: no stale presence_count after it
        assert watch.view.count == 3 and watch.frames[-1][1]["type"] == "presence_leave"
        assert (await watcher.presence(room))["count"] == 3
    finally:
        for client in [watcher, far, *fans]:
            await client.close()


async def test_disconnects_and_a_crashed_gateway_update_the_count(start_gateway, token, api_key) -> None:
    ttl = 3.0
    survivor = start_gateway(NODE_ID="gw-survivor", PRESENCE_TTL=ttl, **BIG)
    doomed = start_gateway(NODE_ID="gw-doomed", PRESENCE_TTL=ttl, **BIG)
    room = "arena"
    watcher = await Client.connect(survivor.ws_url, token("watcher"))
    stay = [await Client.connect(survivor.ws_url, token(f"stay{n}")) for n in range(3)]
    gone = [await Client.connect(doomed.ws_url, token(f"gone{n}")) for n in range(4)]
    watch = Watch(watcher, room)
    try:
        watch.view.apply(await watcher.join(room))
        for client in [*stay, *gone]:
            await client.join(room)
        await watch.until(lambda: watch.view.count == 8)

        await gone[3].close()  # a disconnect: 7
        await watch.until(lambda: watch.view.count == 7)

        doomed.kill()  # SIGKILL: its 3 members expire within PRESENCE_TTL, as one count
        killed_at = time.monotonic()
        await watch.until(lambda: watch.view.count == 4, timeout=ttl + 5)
        assert time.monotonic() - killed_at < ttl
        assert not watch.of("presence_leave")  # 7 -> 4 stays above the threshold: counts only
        body = (await api_presence(survivor, room, api_key)).json()
        assert body["count"] == 4 and sorted(ids(body["members"])) == ["stay0", "stay1", "stay2", "watcher"]
    finally:
        for client in [watcher, *stay, *gone]:
            await client.close()
