"""Soak: a few hundred clients on two gateways, random reconnects with
`since`, a pub/sub CLIENT KILL and a gateway restart (SIGTERM, then a new
one) in the middle, publishing at a bounded rate through the HTTP API with
idempotent retries. At the end every client's sequence of every room is
complete and in order: across all its connection sessions, the recovered
and live messages chain into 1..N, each offset once.

Run: pytest tests/reliability/test_soak.py --soak --soak-seconds 30
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
import websockets

from switchboard.client import Client, ClientClosed
from switchboard_harness import TEST_API_KEY, GatewayProcess

from .conftest import wait_until

CLIENTS = 200
ROOMS = [f"soak{n}" for n in range(10)]
PUBLISH_PER_ROOM_PER_S = 2.0
RECONNECT_EVERY_S = (4.0, 15.0)


@dataclass
class RoomTrack:
    epoch: str | None = None
    last: int = 0  # newest offset received (recovered or live)
    received: int = 0


@dataclass
class Member:
    index: int
    rooms: list[str]
    tracks: dict[str, RoomTrack] = field(default_factory=dict)
    sessions: int = 0
    recoveries: int = 0
    forced: int = 0  # closed by the server (drain)
    violations: list[str] = field(default_factory=list)
    client: Client | None = None


class Soak:
    def __init__(self, live: list[GatewayProcess], token) -> None:  # type: ignore[no-untyped-def]
        self.live = live
        self.token = token
        self.reconnecting = True
        self.stopping = False
        self.rng = random.Random(4)

    async def connect(self, member: Member) -> Client:
        delay = 0.05
        while True:
            gateway = self.rng.choice(self.live)
            try:
                return await Client.connect(gateway.ws_url, self.token(f"user{member.index}"), timeout=5)
            except (ClientClosed, OSError, TimeoutError, websockets.InvalidHandshake):
                await asyncio.sleep(delay * (0.5 + self.rng.random()))  # backoff before another try
                delay = min(delay * 2, 1.0)

    def on_message(self, member: Member, frame: dict) -> None:
        room = frame["room"]
        track = member.tracks[room]
        if frame["epoch"] != track.epoch or frame["offset"] != track.last + 1:
            member.violations.append(
                f"user{member.index} {room}: got {frame['offset']}@{frame['epoch']} after {track.last}@{track.epoch}"
            )
        track.last = max(track.last, frame["offset"])
        track.received += 1

    async def session(self, member: Member) -> None:
        """One connection: join every room (with since once known), then read
        until the server closes it or it is time for a random reconnect."""
        client = member.client = await self.connect(member)
        member.sessions += 1
        try:
            for room in member.rooms:
                track = member.tracks.setdefault(room, RoomTrack())
                since = {"offset": track.last, "epoch": track.epoch} if track.epoch else None
                joined = await client.join(room, since=since)
                if joined.get("type") != "joined":
                    member.violations.append(f"user{member.index} {room}: join answered {joined}")
                    continue
                if since is None:
                    track.epoch, track.last = joined["epoch"], joined["offset"]
                elif joined["recovered"] is not True:
                    member.violations.append(f"user{member.index} {room}: not recovered from {since}: {joined}")
                    track.epoch, track.last = joined["epoch"], joined["offset"]
                else:
                    member.recoveries += 1
                    for message in joined["messages"]:
                        self.on_message(member, message)
            deadline = time.monotonic() + self.rng.uniform(*RECONNECT_EVERY_S)
            while True:
                wait = deadline - time.monotonic() if self.reconnecting else 1.0
                if self.stopping:
                    return
                if wait <= 0:
                    return  # a random reconnect
                try:
                    frame = await client.recv(timeout=wait)
                except TimeoutError:
                    continue
                if frame["type"] == "message":
                    self.on_message(member, frame)
                elif frame["type"] == "reset":
                    member.violations.append(f"user{member.index}: unexpected {frame}")
        except ClientClosed as closed:
            if closed.code != 1012:
                member.violations.append(f"user{member.index}: closed with {closed.code} {closed.reason}")
            member.forced += 1
        finally:
            member.client = None
            await client.close()

    async def run_member(self, member: Member) -> None:
        while not self.stopping:
            await self.session(member)


async def publisher(room: str, live: list[GatewayProcess], acked: dict[str, dict[str, int]], stop: asyncio.Event) -> None:
    """Bounded-rate, idempotent publishing through the HTTP API: a failed
    request is retried (on any live gateway) with the same client_msg_id."""
    rng = random.Random(room)
    async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {TEST_API_KEY}"}) as http:
        n = 0
        while not stop.is_set():
            cmid = f"{room}-{n}-{uuid.uuid4().hex[:6]}"
            for attempt in range(200):
                gateway = rng.choice(live)
                try:
                    response = await http.post(
                        gateway.http_url + "/api/publish", json={"room": room, "text": f"{room} #{n}", "client_msg_id": cmid}
                    )
                    if response.status_code == 200:
                        acked[room][cmid] = response.json()["offset"]
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05 * (1 + rng.random()))  # backoff before a retry
            else:
                raise AssertionError(f"{room}: publish {cmid} never acknowledged")
            n += 1
            await asyncio.sleep(1 / PUBLISH_PER_ROOM_PER_S)  # the bounded rate


@pytest.mark.soak
@pytest.mark.single_redis  # kills the one redis-server's pub/sub clients
async def test_soak(request, start_gateway, redis_server, token) -> None:  # type: ignore[no-untyped-def]
    duration = float(request.config.getoption("--soak-seconds"))
    env = dict(
        redis=redis_server.url,
        POSITION_CHECK_INTERVAL=1,
        DRAIN_NOTICE=0.5,
        DRAIN_TIMEOUT=4,
        PUBLISH_RATE=100,
        PUBLISH_BURST=100,
    )
    live = [start_gateway(NODE_ID="gw-a", **env), start_gateway(NODE_ID="gw-b", **env)]
    soak = Soak(live, token)
    members = []
    for i in range(CLIENTS):
        rooms = sorted({ROOMS[i % len(ROOMS)], ROOMS[(i * 3 + 1) % len(ROOMS)]})
        members.append(Member(i, rooms))
    tasks = [asyncio.create_task(soak.run_member(m)) for m in members]
    await wait_until(
        lambda: all(all(r in m.tracks for r in m.rooms) and m.client is not None for m in members),
        60,
        "every client connected and joined",
        interval=0.2,
    )
    acked: dict[str, dict[str, int]] = {room: {} for room in ROOMS}
    stop_publishing = asyncio.Event()
    publishers = [asyncio.create_task(publisher(room, live, acked, stop_publishing)) for room in ROOMS]
    started = time.monotonic()
    faults = []
    try:
        # Fault 1: every gateway's pub/sub connection killed by Redis.
        await asyncio.sleep(duration / 3)  # the soak's timeline, not synchronisation
        reply = redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
        faults.append(f"t={time.monotonic() - started:.1f}s CLIENT KILL TYPE pubsub -> {reply.strip().decode()}")
        # Fault 2: one gateway drained (SIGTERM) and replaced by a new one.
        await asyncio.sleep(max(0.0, duration / 2 - (time.monotonic() - started)))
        victim = live[1]
        live.remove(victim)
        victim.terminate()
        code = await victim.wait_async(10)
        faults.append(f"t={time.monotonic() - started:.1f}s SIGTERM {victim.node_id} -> exit {code}")
        replacement = await asyncio.to_thread(start_gateway, NODE_ID="gw-c", **env)
        live.append(replacement)
        faults.append(f"t={time.monotonic() - started:.1f}s started {replacement.node_id}")
        await asyncio.sleep(max(0.0, duration - (time.monotonic() - started)))

        # Wind down: no more random reconnects, no more publishing; then every
        # client must catch up to each room's newest offset.
        soak.reconnecting = False
        stop_publishing.set()
        await asyncio.wait_for(asyncio.gather(*publishers), 60)
        tops = {room: max(acked[room].values(), default=0) for room in ROOMS}
        for room in ROOMS:  # idempotent retries stored each message once
            assert sorted(acked[room].values()) == list(range(1, tops[room] + 1)), room
        await wait_until(
            lambda: all(m.tracks[r].last >= tops[r] for m in members for r in m.rooms) or any(m.violations for m in members),
            60,
            "every client caught up",
            interval=0.2,
        )
    finally:
        soak.stopping = True
        stop_publishing.set()
        await asyncio.wait(tasks + publishers, timeout=15)
        for task in tasks + publishers:
            task.cancel()
        await asyncio.gather(*tasks, *publishers, return_exceptions=True)

    violations = [v for m in members for v in m.violations]
    sessions = sum(m.sessions for m in members)
    received = sum(t.received for m in members for t in m.tracks.values())
    print(
        f"\nsoak {duration:.0f}s: {CLIENTS} clients, {len(ROOMS)} rooms, {sum(tops.values())} messages published "
        f"({', '.join(f'{r}={tops[r]}' for r in ROOMS)}); {received} deliveries (recovered + live); "
        f"{sessions} sessions ({sessions - CLIENTS} reconnects, {sum(m.forced for m in members)} by the server), "
        f"{sum(m.recoveries for m in members)} recoveries with since; violations {len(violations)}"
    )
    for fault in faults:
        print("  fault:", fault)
    assert not violations, violations[:20]
    assert reply.startswith(b":") and int(reply[1:]) >= 1, f"the CLIENT KILL hit nothing: {reply!r}"
    assert sum(m.forced for m in members) > 0, "the drain closed no client"
    for m in members:
        for room in m.rooms:
            track = m.tracks[room]
            assert track.last == tops[room] and track.received == tops[room], (m.index, room, track, tops[room])
