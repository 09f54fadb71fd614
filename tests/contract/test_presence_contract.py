"""Presence semantics of both brokers (two brokers on one backplane = two
gateways): announcements with counts up to the events threshold
(PRESENCE_EVENTS_MAX = 3 here), count reports above it, capped listings
with the joiner first, refreshes that neither announce nor list, expiry."""

from __future__ import annotations

import asyncio
import json

import msgspec
from broker_harness import PRESENCE_EVENTS_MAX, Cluster, ephemeral_barrier, user_json

from switchboard.protocol import frames
from switchboard.protocol.frames import MessageBody, User
from switchboard.roster import PresencePage

ALICE = User("alice", "Alice")
BOB = User("bob", "Bob")
LIMIT = 100

assert PRESENCE_EVENTS_MAX == 3, "the tests below count users against this threshold"


def u(n: int) -> User:
    return User(f"u{n}", f"User {n}")


def listed(page: PresencePage) -> dict[str, int]:
    """user id -> connections of the listed users; each user listed once."""
    ids = [json.loads(user)["id"] for user, _ in page.members]
    assert len(ids) == len(set(ids)), f"a user listed twice: {ids}"
    return {json.loads(user)["id"]: conns for user, conns in page.members}


def first_listed(page: PresencePage) -> str:
    return json.loads(page.members[0][0])["id"]


async def test_join_and_leave_announcements_carry_the_count(cluster: Cluster) -> None:
    c = cluster
    room = "pres"
    await c.subscribe_all(room)
    alice, bob = user_json(ALICE), user_json(BOB)

    assert await c.a.presence_upsert(room, [("c1", alice)], list_limit=LIMIT) == PresencePage(1, [(alice, 1)])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "join") == ["alice"])
        assert rec.events(room) == [
            {"type": "presence_join", "room": room, "user": {"id": "alice", "name": "Alice"}, "count": 1}
        ]
        raw = rec.ephemeral[0][1]  # the announcement decodes as the protocol's frame
        assert msgspec.json.decode(raw, type=frames.PresenceJoin) == frames.PresenceJoin(room, ALICE, 1)

    # Alice's second connection (another node) and a refresh: no announcement,
    # nothing listed (list_limit 0), the count unchanged.
    assert await c.b.presence_upsert(room, [("c2", alice)]) == PresencePage(1, [])
    assert await c.a.presence_upsert(room, [("c1", alice)]) == PresencePage(1, [])
    page = await c.b.presence_upsert(room, [("c3", bob)], list_limit=LIMIT)
    assert page.count == 2 and listed(page) == {"alice": 2, "bob": 1} and first_listed(page) == "bob"
    for rec in c.recorders:
        await rec.until(lambda rec=rec: "bob" in rec.presence(room, "join"))
        assert rec.presence(room, "join") == ["alice", "bob"] and rec.announced_counts(room) == [1, 2]
    for broker in (c.a, c.b):
        page = await broker.presence_members(room, LIMIT)
        assert page.count == 2 and listed(page) == {"alice": 2, "bob": 1}

    # One of alice's two connections leaves: she is still there, no announcement.
    await c.a.presence_remove(room, ["c1"])
    await c.a.presence_remove(room, ["c1", "unknown"])  # removing twice or unknown: no-op
    await ephemeral_barrier(c, room)
    for rec in c.recorders:
        assert rec.presence(room, "leave") == []
    page = await c.a.presence_members(room, LIMIT)
    assert page.count == 2 and listed(page) == {"alice": 1, "bob": 1}

    # Her last connection leaves: announced once, everywhere, with the count after it.
    await c.b.presence_remove(room, ["c2"])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "leave") == ["alice"])
        leave = [e for e in rec.events(room) if e["type"] == "presence_leave"]
        assert leave == [{"type": "presence_leave", "room": room, "user": {"id": "alice", "name": "Alice"}, "count": 1}]
    assert await c.b.presence_members(room, LIMIT) == PresencePage(1, [(bob, 1)])

    await c.a.presence_remove(room, ["c3"])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "leave") == ["alice", "bob"])
        assert rec.announced_counts(room) == [1, 2, 1, 0]
        assert rec.room_counts(room) == []  # never above the threshold: no count reports
    assert await c.a.presence_members(room, LIMIT) == PresencePage(0, [])
    assert await c.a.presence_members("nobody-here", LIMIT) == PresencePage(0, [])

    # Coming back is a new join.
    await c.b.presence_upsert(room, [("c4", alice)])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "join") == ["alice", "bob", "alice"])


async def test_upsert_of_many_entries(cluster: Cluster) -> None:
    c = cluster
    room = "many"
    await c.subscribe_all(room)
    entries = [("k1", user_json(ALICE)), ("k2", user_json(ALICE)), ("k3", user_json(BOB))]
    page = await c.a.presence_upsert(room, entries, list_limit=LIMIT)
    assert page.count == 2 and listed(page) == {"alice": 2, "bob": 1}
    await ephemeral_barrier(c, room)
    for rec in c.recorders:
        assert sorted(rec.presence(room, "join")) == ["alice", "bob"]
    await c.a.presence_remove(room, ["k1", "k2", "k3"])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: sorted(rec.presence(room, "leave")) == ["alice", "bob"])
    assert await c.b.presence_members(room, LIMIT) == PresencePage(0, [])


async def test_listing_is_capped_and_lists_the_joiner_first(cluster: Cluster) -> None:
    c = cluster
    room = "capped"
    await c.subscribe_all(room)
    # u0..u9 with one connection each, u0 with a second one on the other node.
    await c.a.presence_upsert(room, [(f"c{n}", user_json(u(n))) for n in range(10)])
    await c.b.presence_upsert(room, [("c0-b", user_json(u(0)))])
    everyone = {f"u{n}": 1 for n in range(10)} | {"u0": 2}

    page = await c.b.presence_upsert(room, [("joiner", user_json(ALICE))], list_limit=4)
    assert page.count == 11 and len(page.members) == 4
    assert page.members[0] == (user_json(ALICE), 1)  # the joiner sees itself
    assert listed(page).items() <= (everyone | {"alice": 1}).items()

    for limit in (1, 4, 11, 500):
        page = await c.a.presence_members(room, limit)
        assert page.count == 11 and len(page.members) == min(limit, 11)
        assert listed(page).items() <= (everyone | {"alice": 1}).items()
    assert listed(await c.a.presence_members(room, 500)) == everyone | {"alice": 1}

    # Re-joining (a known connection) lists the joiner first too, with its count.
    page = await c.a.presence_upsert(room, [("c0", user_json(u(0)))], list_limit=1)
    assert page == PresencePage(11, [(user_json(u(0)), 2)])


async def test_a_big_room_is_listed_within_the_limit(cluster: Cluster) -> None:
    c = cluster
    room = "stadium"
    users = 600
    await c.a.presence_upsert(room, [(f"c{n}", user_json(u(n))) for n in range(users)])
    page = await c.b.presence_upsert(room, [("me", user_json(ALICE))], list_limit=7)
    assert page.count == users + 1 and len(page.members) == 7 and first_listed(page) == "alice"
    page = await c.b.presence_members(room, 50)
    assert page.count == users + 1 and len(page.members) == 50 and len(listed(page)) == 50
    page = await c.b.presence_members(room, 10_000)
    assert len(listed(page)) == users + 1  # the whole room, when the limit allows it


async def test_above_the_threshold_counts_replace_announcements(cluster: Cluster) -> None:
    c = cluster
    room = "crowd"
    await c.subscribe_all(room)
    for n in (1, 2, 3):
        await c.a.presence_upsert(room, [(f"c{n}", user_json(u(n)))])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.presence(room, "join")) == 3)
        assert rec.announced_counts(room) == [1, 2, 3]

    # The 4th and 5th users: counted after the join, above 3 -> count reports, no names.
    await c.b.presence_upsert(room, [("c4", user_json(u(4)))])
    page = await c.a.presence_upsert(room, [("c5", user_json(u(5)))], list_limit=LIMIT)
    assert page.count == 5 and first_listed(page) == "u5"
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.room_counts(room) == [4, 5])
    # A second connection and a refresh change no count: nothing reported.
    await c.b.presence_upsert(room, [("c5-b", user_json(u(5)))])
    await c.a.presence_upsert(room, [(f"c{n}", user_json(u(n))) for n in (1, 2, 3, 5)])
    await c.a.presence_members(room, LIMIT)
    await c.a.presence_sweep([room])
    # Several users in one call: one report, with the final count.
    await c.a.presence_upsert(room, [(f"c{n}", user_json(u(n))) for n in (6, 7, 8)])
    await ephemeral_barrier(c, room)
    for rec in c.recorders:
        assert rec.room_counts(room) == [4, 5, 8]
        assert rec.presence(room, "join") == ["u1", "u2", "u3"]

    # u5 leaves one connection (still present), then the other: 7.
    await c.a.presence_remove(room, ["c5"])
    await c.b.presence_remove(room, ["c5-b"])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.room_counts(room) == [4, 5, 8, 7])

    # Down across the threshold in one call: 7 -> 6, 5, 4 (counted), 3 and 2
    # (announced, with their counts). The final count is at or below the
    # threshold, so the last announcement carried it: no report.
    await c.b.presence_remove(room, ["c6", "c7", "c8", "c4", "c3"])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.presence(room, "leave")) == 2)
        assert rec.presence(room, "leave") == ["u4", "u3"]
        assert rec.announced_counts(room)[-2:] == [3, 2]
    await ephemeral_barrier(c, room)
    for rec in c.recorders:
        assert rec.room_counts(room) == [4, 5, 8, 7]
    assert (await c.a.presence_members(room, LIMIT)).count == 2


async def test_expiry_updates_the_count(cluster: Cluster) -> None:
    c = cluster
    room = "exp"
    ttl = c.presence_ttl
    await c.subscribe_all(room)
    await c.a.presence_upsert(room, [("dead-node-conn", user_json(ALICE))])
    await c.b.presence_upsert(room, [("live-conn", user_json(BOB))])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: sorted(rec.presence(room, "join")) == ["alice", "bob"])

    c.clock.advance(ttl * 0.6)
    await c.b.presence_upsert(room, [("live-conn", user_json(BOB))])  # bob's node refreshes; alice's died
    await c.a.presence_sweep([room])
    assert (await c.b.presence_members(room, LIMIT)).count == 2  # nothing expired yet

    c.clock.advance(ttl * 0.6)  # alice: 1.2 TTL old; bob: 0.6 TTL
    # Both nodes sweep (as they would): the leave is announced once.
    await asyncio.gather(c.a.presence_sweep([room, "no-such-room"]), c.b.presence_sweep([room]))
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "leave") == ["alice"])
    assert await c.a.presence_members(room, LIMIT) == PresencePage(1, [(user_json(BOB), 1)])
    leave = [e for e in c.eb.events(room) if e["type"] == "presence_leave"]
    assert leave == [{"type": "presence_leave", "room": room, "user": {"id": "alice", "name": "Alice"}, "count": 1}]

    c.clock.advance(ttl)  # bob's node stops refreshing too: reading members expires him
    assert await c.a.presence_members(room, LIMIT) == PresencePage(0, [])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "leave") == ["alice", "bob"])
    await ephemeral_barrier(c, room)
    for rec in c.recorders:
        assert rec.presence(room, "leave") == ["alice", "bob"]

    # A refresh after expiry re-adds the entry (heals presence) and announces it.
    await c.b.presence_upsert(room, [("live-conn", user_json(BOB))])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.presence(room, "join") == ["alice", "bob", "bob"])
    assert (await c.a.presence_members(room, LIMIT)).count == 1

    # Above the threshold, a dead node's users expire as one count report.
    await c.a.presence_upsert(room, [(f"doomed{n}", user_json(u(n))) for n in range(3)])
    await c.b.presence_upsert(room, [(f"kept{n}", user_json(u(10 + n))) for n in range(3)])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.room_counts(room)[-1:] == [7])
    c.clock.advance(ttl * 0.6)
    await c.b.presence_upsert(room, [("live-conn", user_json(BOB))] + [(f"kept{n}", user_json(u(10 + n))) for n in range(3)])
    c.clock.advance(ttl * 0.6)
    await c.b.presence_sweep([room])
    for rec in c.recorders:
        await rec.until(lambda rec=rec: rec.room_counts(room)[-1:] == [4])
    page = await c.a.presence_members(room, LIMIT)
    assert page.count == 4 and set(listed(page)) == {"bob", "u10", "u11", "u12"}


# --- one call per join (Broker.join) -------------------------------------------------------


async def test_join_adds_presence_and_reads_the_room_in_one_call(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    for i in range(3):
        await a.publish("joinroom", MessageBody(user=BOB, text=f"m{i}", ts=1), None)
    await a.presence_upsert("joinroom", [("bob-1", user_json(BOB))])

    plain = await b.join("joinroom", "alice-1", user_json(ALICE), "alice", list_limit=10)
    assert plain.banned_s == 0
    assert (plain.snapshot.top, plain.snapshot.frames) == (3, [])
    assert plain.snapshot.epoch == (await a.position("joinroom")).epoch
    assert plain.page.count == 2
    assert json.loads(plain.page.members[0][0])["id"] == "alice"  # the joiner first

    last = await b.join("joinroom", "alice-2", user_json(ALICE), "alice", 10, "last", 0, 2)
    assert (last.snapshot.first, len(last.snapshot.frames)) == (2, 2)
    after = await b.join("joinroom", "alice-3", user_json(ALICE), "alice", 0, "after", 1, 100)
    assert (after.snapshot.first, len(after.snapshot.frames), after.page.members) == (2, 2, [])
    members = await a.presence_members("joinroom", 10)
    assert sorted(json.loads(u)["id"] for u, _ in members.members) == ["alice", "bob"]
    assert dict((json.loads(u)["id"], n) for u, n in members.members)["alice"] == 3


async def test_a_banned_join_changes_nothing(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await a.ban("alice", 100, room="guarded")
    refused = await b.join("guarded", "alice-1", user_json(ALICE), "alice", 10)
    assert 90 < refused.banned_s <= 100
    assert refused.page.count == 0 and refused.snapshot.epoch == ""
    assert (await a.presence_members("guarded", 10)).count == 0
    other = await b.join("guarded", "bob-1", user_json(BOB), "bob", 10)  # a room ban is per user
    assert other.banned_s == 0 and other.page.count == 1
    elsewhere = await b.join("open", "alice-1", user_json(ALICE), "alice", 10)  # and per room
    assert elsewhere.banned_s == 0
