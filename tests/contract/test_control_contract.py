"""The broker's user control calls (docs/protocol.md "User control"), the
same on MemoryBroker and RedisBroker (one server and a cluster): a control
command reaches every broker, the sender's included; bans are per user or
per (room, user) and end by themselves; active rooms are listed with their
distinct users."""

from __future__ import annotations

import asyncio

from broker_harness import Cluster, user_json

from switchboard.protocol.frames import User

ALICE, BOB = User("alice", "Alice"), User("bob", "Bob")


async def test_a_control_command_reaches_every_broker(cluster: Cluster) -> None:
    await cluster.a.publish_control(b'{"op":"disconnect","user":"alice","reason":"x"}')
    await cluster.b.publish_control(b'{"op":"remove","user":"bob","room":"lobby"}')
    for rec in cluster.recorders:
        await rec.until(lambda rec=rec: len(rec.controls) == 2)
        assert rec.controls == [
            b'{"op":"disconnect","user":"alice","reason":"x"}',
            b'{"op":"remove","user":"bob","room":"lobby"}',
        ]
    # Control commands are not room traffic.
    assert all(not rec.messages and not rec.ephemeral for rec in cluster.recorders)


async def test_bans_are_per_user_or_per_room_and_expire(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    assert await b.banned("alice") == 0.0
    await a.ban("alice", 100)
    assert 90 < await b.banned("alice") <= 100
    assert await b.banned("alice", room="lobby") == 0.0  # a user ban is not a room ban
    assert await b.banned("bob") == 0.0

    await a.ban("bob", 0.3, room="lobby")
    assert 0 < await b.banned("bob", room="lobby") <= 0.3
    assert await b.banned("bob") == 0.0
    assert await b.banned("bob", room="other") == 0.0
    long_id = "u" * 500  # user ids are whatever a token says
    await a.ban(long_id, 100, room="lobby")
    assert await b.banned(long_id, room="lobby") > 0

    cluster.clock.advance(1)  # the memory broker's clock
    await asyncio.sleep(0.4)  # Redis's: a TTL runs out in real time
    assert await b.banned("bob", room="lobby") == 0.0
    assert await b.banned("alice") > 0


async def test_active_rooms_count_distinct_users(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await a.presence_upsert("team-red", [("c1", user_json(ALICE)), ("c2", user_json(BOB))])
    await b.presence_upsert("team-red", [("c3", user_json(ALICE))])  # alice's second connection
    await b.presence_upsert("team-blue", [("c4", user_json(BOB))])
    await a.presence_upsert("lobby", [("c5", user_json(BOB))])
    await a.presence_remove("lobby", ["c5"])  # empty again

    assert await b.active_rooms("", 100) == [("team-blue", 1), ("team-red", 2)]
    assert await a.active_rooms("team-r", 100) == [("team-red", 2)]
    assert await a.active_rooms("", 1) == [("team-blue", 1)]
    assert await a.active_rooms("nothing", 100) == []

    # Members nobody refreshed (their gateway died) are not counted.
    cluster.clock.advance(cluster.presence_ttl + 1)
    assert await a.active_rooms("", 100) == []
