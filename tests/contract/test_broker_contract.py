"""One suite of broker semantics, run against MemoryBroker and RedisBroker
(two brokers on one backplane each = two gateways). See broker/base.py."""

from __future__ import annotations

import asyncio
import json
import time

from broker_harness import Cluster, Recorder, delete_prefix, ephemeral_barrier, keys_with_prefix, user_json

from switchboard_harness import RedisProcess
from switchboard.protocol.frames import MessageBody, User
from switchboard.roomlog import Heard, Snapshot
from switchboard.roster import PresencePage
from switchboard_gateway.broker import Broker
from switchboard_gateway.broker.memory import MemoryBroker, MemoryHub
from switchboard_gateway.broker.redis import RedisBroker

ALICE = User("alice", "Alice")
BOB = User("bob", "Bob")


def body(text: str, user: User = ALICE) -> MessageBody:
    return MessageBody(user=user, text=text, ts=int(time.time() * 1000))


def frame_offsets(frames: list[bytes]) -> list[int]:
    return [json.loads(f)["offset"] for f in frames]


async def barrier(c: Cluster, room: str = "barrier") -> None:
    """Publish a marker on a room both brokers subscribe, and wait until both
    saw it: anything published earlier has been delivered by then."""
    await c.subscribe_all(room)
    before = [len(r.offsets(room)) for r in c.recorders]
    await c.a.publish(room, body("marker"), None)
    for rec, n in zip(c.recorders, before):
        await rec.until(lambda rec=rec, n=n: len(rec.offsets(room)) > n)


# --- publish and delivery -----------------------------------------------------------------


async def test_publish_offsets_and_delivery_in_order(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("r")
    sent = [body("one"), body("two", BOB), body('three "quoted" \\ ✓\n')]
    results = [await c.a.publish("r", m, None) for m in sent]
    epoch = results[0].epoch
    assert epoch
    assert [(r.offset, r.epoch, r.duplicate) for r in results] == [(1, epoch, False), (2, epoch, False), (3, epoch, False)]
    results.append(await c.b.publish("r", body("four"), None))  # from the other node: same sequence
    assert (results[3].offset, results[3].epoch) == (4, epoch)
    sent.append(body("four"))
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("r")) >= 4)
        assert rec.offsets("r") == [1, 2, 3, 4]
        for (room, offset, ep, ts, frame), m in zip(rec.messages, sent):
            decoded = json.loads(frame)
            assert (room, ep) == ("r", epoch)
            assert decoded == {
                "type": "message",
                "room": "r",
                "offset": offset,
                "epoch": epoch,
                "msg_id": decoded["msg_id"],
                "kind": "message",
                "user": {"id": m.user.id, "name": m.user.name},
                "text": m.text,
                "ts": ts,
            }
            assert isinstance(decoded["msg_id"], str) and decoded["msg_id"]
            assert ts == rec.messages[offset - 1][3] and isinstance(ts, int)
        assert len({f["msg_id"] for f in rec.frames("r")}) == 4
    assert [m[4] for m in c.ea.messages] == [m[4] for m in c.eb.messages]  # the very same frames
    assert [m[3] for m in c.ea.messages][:3] == [m.ts for m in sent[:3]]


async def test_concurrent_publishers_get_one_order(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("busy")
    calls = [
        (c.a if i % 2 else c.b).publish("busy", body(f"m{i}", ALICE if i % 3 else BOB), None) for i in range(40)
    ]
    results = await asyncio.gather(*calls)
    assert sorted(r.offset for r in results) == list(range(1, 41))
    assert len({r.epoch for r in results}) == 1
    by_offset = {r.offset: f"m{i}" for i, r in enumerate(results)}
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("busy")) >= 40)
        assert rec.offsets("busy") == list(range(1, 41))
        assert [f["text"] for f in rec.frames("busy")] == [by_offset[o] for o in range(1, 41)]


async def test_unsubscribed_room_delivers_nothing(cluster: Cluster) -> None:
    c = cluster
    await c.a.subscribe("mine")
    await c.a.publish("quiet", body("nobody listens"), None)
    await c.b.publish("mine", body("only a listens"), None)
    await barrier(c)
    assert c.ea.offsets("quiet") == [] and c.eb.offsets("quiet") == []
    assert c.ea.offsets("mine") == [1] and c.eb.offsets("mine") == []

    await c.a.unsubscribe("mine")
    await c.a.subscribe("other")  # confirmed on the same connection: the unsubscribe took effect first
    await c.b.publish("mine", body("after unsubscribe"), None)
    await barrier(c)
    assert c.ea.offsets("mine") == [1]


async def test_subscribe_is_idempotent_and_delivers_once(cluster: Cluster) -> None:
    c = cluster
    await c.a.subscribe("twice")
    await c.a.subscribe("twice")
    await c.b.publish("twice", body("x"), None)
    await barrier(c)
    assert c.ea.offsets("twice") == [1]


# --- reads -----------------------------------------------------------------------------------


async def read(broker: Broker, mode: str, offset: int, count: int) -> Snapshot:
    if mode == "after":
        return await broker.read_after("h", offset, count)
    if mode == "before":
        return await broker.read_before("h", offset, count)
    return await broker.read_last("h", count)


async def test_read_modes(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("h")
    epoch = ""
    for i in range(1, 5):
        epoch = (await c.a.publish("h", body(f"t{i}"), None)).epoch
    await c.ea.until(lambda: len(c.ea.offsets("h")) == 4)
    live = {offset: frame for room, offset, _, _, frame in c.ea.messages}

    async def check(mode: str, offset: int, count: int, expected: list[int]) -> None:
        for broker in (c.a, c.b):
            snap = await read(broker, mode, offset, count)
            assert (snap.epoch, snap.top) == (epoch, 4), (mode, offset, count)
            assert frame_offsets(snap.frames) == expected, (mode, offset, count)
            assert snap.first == (expected[0] if expected else 0), (mode, offset, count)
            assert [f.decode() for f in snap.frames] == [live[o] for o in expected]  # history == live bytes

    snap = await c.a.position("h")
    assert (snap.epoch, snap.top, snap.first, snap.frames) == (epoch, 4, 0, [])
    await check("after", 0, 10, [1, 2, 3, 4])
    await check("after", 1, 10, [2, 3, 4])
    await check("after", 1, 2, [2, 3])
    await check("after", 3, 100, [4])
    await check("after", 4, 10, [])
    await check("after", 9, 10, [])
    await check("after", 0, 0, [])
    await check("before", 4, 2, [2, 3])
    await check("before", 5, 10, [1, 2, 3, 4])
    await check("before", 100, 2, [3, 4])
    await check("before", 2, 10, [1])
    await check("before", 1, 10, [])
    await check("before", 3, 0, [])
    await check("last", 0, 2, [3, 4])
    await check("last", 0, 100, [1, 2, 3, 4])
    await check("last", 0, 1, [4])
    await check("last", 0, 0, [])


async def test_reads_create_no_epoch(cluster: Cluster) -> None:
    """A read of an unknown room writes nothing (history/join of made-up
    names must not leave keys behind): its epoch is "" until a publish."""
    c = cluster
    assert await c.a.positions(["fresh"]) == {"fresh": (None, 0)}
    for snap in (
        await c.a.read_last("fresh", 10),
        await c.a.read_after("fresh", 0, 10),
        await c.a.read_before("fresh", 5, 10),
        await c.b.position("fresh"),
    ):
        assert (snap.epoch, snap.top, snap.first, snap.frames) == ("", 0, 0, [])
    assert await c.b.positions(["fresh"]) == {"fresh": (None, 0)}
    result = await c.b.publish("fresh", body("first"), None)
    assert result.offset == 1 and result.epoch
    assert (await c.a.position("fresh")).epoch == result.epoch


async def test_catch_up_creates_a_stable_epoch_adopted_by_publish(cluster: Cluster) -> None:
    c = cluster
    snap = await c.a.catch_up("made", 0, 10)
    assert snap.epoch and (snap.top, snap.first, snap.frames) == (0, 0, [])
    assert (await c.b.catch_up("made", 0, 10)).epoch == snap.epoch
    assert (await c.b.position("made")).epoch == snap.epoch
    assert await c.b.positions(["made"]) == {"made": (snap.epoch, 0)}
    result = await c.b.publish("made", body("first"), None)
    assert (result.offset, result.epoch) == (1, snap.epoch)


async def test_offsets_up_to_2_53_are_read_as_integers(cluster: Cluster) -> None:
    """Lua prints numbers >= 1e14 as "1e+14"; stream ids must stay digits."""
    c = cluster
    for i in range(3):
        await c.a.publish("big", body(f"t{i}"), None)
    for offset in (10**14, 2**53 - 1):
        after = await c.a.read_after("big", offset, 10)
        assert (after.top, after.frames) == (3, [])
        before = await c.a.read_before("big", offset, 10)
        assert frame_offsets(before.frames) == [1, 2, 3]


async def test_history_is_capped(cluster: Cluster) -> None:
    c = cluster
    size = c.history_size
    for i in range(1, size + 4):
        await c.a.publish("cap", body(f"t{i}"), None)
    top = size + 3
    snap = await c.b.read_last("cap", 100)
    assert snap.top == top
    assert frame_offsets(snap.frames) == list(range(4, top + 1)) and snap.first == 4
    # A reader whose position is older than retention sees the gap: first > offset + 1.
    snap = await c.b.read_after("cap", 1, 100)
    assert snap.first == 4 and snap.first > 1 + 1
    assert frame_offsets(snap.frames) == list(range(4, top + 1))
    snap = await c.a.read_after("cap", 3, 100)
    assert snap.first == 4  # exactly at the edge: no gap
    snap = await c.a.read_before("cap", 5, 100)
    assert frame_offsets(snap.frames) == [4] and snap.first == 4
    snap = await c.a.read_before("cap", 3, 100)
    assert (snap.first, snap.frames) == (0, [])


# --- idempotency ----------------------------------------------------------------------------------


async def test_idempotent_publish(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("idem")
    first = await c.a.publish("idem", body("original"), "c1")
    assert (first.offset, first.duplicate) == (1, False)
    retry = await c.b.publish("idem", body("retried text is ignored"), "c1")  # a retry through another node
    assert (retry.offset, retry.epoch, retry.duplicate) == (1, first.epoch, True)
    again = await c.a.publish("idem", body("again"), "c1")
    assert (again.offset, again.duplicate) == (1, True)
    other_user = await c.a.publish("idem", body("bob's", BOB), "c1")
    assert (other_user.offset, other_user.duplicate) == (2, False)
    other_id = await c.a.publish("idem", body("new id"), "c2")
    assert (other_id.offset, other_id.duplicate) == (3, False)
    no_id = await c.a.publish("idem", body("no id"), None)
    assert (no_id.offset, no_id.duplicate) == (4, False)
    # Ids that could collide if user and client_msg_id were simply joined.
    tricky_a = await c.a.publish("idem", body("x", User("u:1", "U")), "x")
    tricky_b = await c.a.publish("idem", body("y", User("u", "U")), "1:x")
    assert (tricky_a.offset, tricky_b.offset, tricky_b.duplicate) == (5, 6, False)
    # Another room is another key space.
    elsewhere = await c.a.publish("idem2", body("elsewhere"), "c1")
    assert (elsewhere.offset, elsewhere.duplicate) == (1, False)

    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("idem")) >= 6)
    await barrier(c)
    for rec in c.recorders:
        assert rec.offsets("idem") == [1, 2, 3, 4, 5, 6]  # the retries were not delivered again
        assert [f["text"] for f in rec.frames("idem")][:2] == ["original", "bob's"]
    snap = await c.a.read_last("idem", 100)
    assert snap.top == 6 and len(snap.frames) == 5  # history_size 5: 2..6
    assert frame_offsets(snap.frames) == [2, 3, 4, 5, 6]


# --- ephemeral --------------------------------------------------------------------------------------


async def test_publish_ephemeral(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("eph")
    frame = '{"type":"typing","room":"eph","user":{"id":"alice","name":"Alice ✓"}}'
    await c.a.publish_ephemeral("eph", frame.encode())
    for rec in c.recorders:
        await rec.until(lambda rec=rec: bool(rec.ephemeral))
        assert rec.ephemeral == [("eph", frame)]
        assert rec.offsets("eph") == []
    await c.b.publish_ephemeral("not-subscribed", frame.encode())
    assert (await c.a.position("eph")).top == 0  # not stored
    await ephemeral_barrier(c, "eph")
    assert all(room == "eph" for rec in c.recorders for room, _ in rec.ephemeral)


# --- positions ------------------------------------------------------------------------------------------


async def test_positions(cluster: Cluster) -> None:
    c = cluster
    assert await c.a.positions([]) == {}
    assert await c.a.positions(["u1", "u2"]) == {"u1": (None, 0), "u2": (None, 0)}
    first = await c.a.publish("p1", body("a"), None)
    await c.b.publish("p1", body("b"), None)
    await c.a.publish("p2", body("c"), None)
    positions = await c.b.positions(["p1", "p2", "u1"])
    epoch2 = (await c.a.position("p2")).epoch
    assert positions == {"p1": (first.epoch, 2), "p2": (epoch2, 1), "u1": (None, 0)}
    # Presence alone is not history: a room with only members has no position.
    await c.a.presence_upsert("members-only", [("c1", user_json(ALICE))])
    assert await c.a.positions(["members-only"]) == {"members-only": (None, 0)}
    assert await c.b.positions(["members-only"]) == {"members-only": (None, 0)}


async def test_renew_epoch_starts_a_new_epoch_once(cluster: Cluster) -> None:
    """What a node does when the backplane lost writes its members saw: a
    fresh epoch at offset 0, history dropped, renewed once however many
    gateways notice; the old epoch's idempotency results no longer stand."""
    c = cluster
    await c.subscribe_all("renew")
    first = await c.a.publish("renew", body("one"), "k1")
    await c.a.publish("renew", body("two"), None)
    stale = first.epoch
    renewed = await c.b.renew_epoch("renew", stale)
    assert renewed.epoch != stale and (renewed.top, renewed.frames) == (0, [])
    again = await c.a.renew_epoch("renew", stale)  # the other gateway noticed too
    assert (again.epoch, again.top) == (renewed.epoch, 0)
    assert await c.a.positions(["renew"]) == {"renew": (renewed.epoch, 0)}
    assert (await c.b.read_last("renew", 10)).frames == []
    retried = await c.a.publish("renew", body("one, retried"), "k1")  # stored again, in the new epoch
    assert (retried.offset, retried.epoch, retried.duplicate) == (1, renewed.epoch, False)
    assert (await c.a.publish("renew", body("ignored"), "k1")).duplicate  # and idempotent from then on
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("renew")) == 3)
        assert [(o, e) for r, o, e, _, _ in rec.messages if r == "renew"] == [(1, stale), (2, stale), (1, renewed.epoch)]
    # A room with no state yet simply gets one.
    fresh = await c.a.renew_epoch("never-used", "whatever")
    assert fresh.epoch and fresh.top == 0 and (await c.b.position("never-used")).epoch == fresh.epoch


async def test_publish_that_heard_of_more_than_the_backplane_holds_opens_a_new_epoch(cluster: Cluster) -> None:
    """A failover lost writes a gateway had heard of: the next publish through
    it must not reuse their offsets, even before any member's check noticed."""
    c = cluster
    await c.subscribe_all("lossy")
    first = await c.a.publish("lossy", body("one"), "k1")
    stale = first.epoch
    same = await c.a.publish("lossy", body("two"), None, Heard(stale, 1))  # heard of less: nothing lost
    assert (same.offset, same.epoch) == (2, stale)
    other = await c.b.publish("lossy", body("three"), None, Heard("another-epoch", 9))  # another epoch: no claim
    assert (other.offset, other.epoch) == (3, stale)
    renewed = await c.b.publish("lossy", body("four"), "k1", Heard(stale, 5))  # offsets 4 and 5 were lost
    assert renewed.epoch != stale and (renewed.offset, renewed.duplicate) == (1, False)
    assert (await c.a.position("lossy")).epoch == renewed.epoch
    assert [f for f in (await c.a.read_last("lossy", 10)).frames if b'"four"' in f]
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("lossy")) == 4)
        got = [(o, e) for r, o, e, _, _ in rec.messages if r == "lossy"]
        assert got == [(1, stale), (2, stale), (3, stale), (1, renewed.epoch)]


# --- RedisBroker only: presence expiry on the real clock ----------------------------------------------------


async def test_redis_presence_expires_on_the_real_clock(redis_url: str, redis_prefix: str) -> None:
    ttl = 0.5
    events = Recorder("real")
    broker = RedisBroker(redis_url, prefix=redis_prefix, presence_ttl_s=ttl)
    try:
        await broker.start(events)
        await broker.subscribe("rt")
        started = time.monotonic()
        await broker.presence_upsert("rt", [("c1", user_json(ALICE))])
        assert (await broker.presence_members("rt", 10)).members == [(user_json(ALICE), 1)]

        async def swept() -> None:
            while True:
                await broker.presence_sweep(["rt"])
                if events.presence("rt", "leave"):
                    return
                await asyncio.sleep(0.05)  # polling a condition that only time makes true

        async with asyncio.timeout(5):
            await swept()
        assert time.monotonic() - started >= ttl * 0.9
        assert events.presence("rt", "leave") == ["alice"]
        assert await broker.presence_members("rt", 10) == PresencePage(0, [])
    finally:
        await broker.close()
        await delete_prefix(redis_url, redis_prefix)


async def test_lost_history_gets_a_new_epoch(cluster: Cluster) -> None:
    c = cluster
    assert c.lose_history is not None
    await c.subscribe_all("lost")
    old = await c.a.publish("lost", body("before"), "k1")
    await c.a.publish("lost", body("before 2"), None)
    await c.lose_history()
    assert await c.b.positions(["lost"]) == {"lost": (None, 0)}
    new = await c.b.publish("lost", body("after"), "k1")  # idempotency keys went with the history
    assert (new.offset, new.duplicate) == (1, False) and new.epoch != old.epoch
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("lost")) == 3)
        assert [(o, e) for r, o, e, _, _ in rec.messages if r == "lost"] == [
            (1, old.epoch),
            (2, old.epoch),
            (1, new.epoch),
        ]
    snap = await c.a.read_last("lost", 10)
    assert (snap.epoch, snap.top, frame_offsets(snap.frames)) == (new.epoch, 1, [1])


async def test_room_names_with_every_allowed_character(cluster: Cluster) -> None:
    c = cluster
    room = "Rm-1_x.y:z" + "9" * 54  # 64 characters
    await c.subscribe_all(room)
    result = await c.a.publish(room, body("hi"), None)
    await c.b.publish_ephemeral(room, b'{"type":"typing","room":"x","user":{"id":"b","name":"b"}}')
    for rec in c.recorders:
        await rec.until(lambda rec=rec: bool(rec.offsets(room)) and bool(rec.ephemeral))
        assert rec.messages[0][:3] == (room, 1, result.epoch)
        assert json.loads(rec.messages[0][4])["room"] == room
        assert rec.ephemeral[0][0] == room


# --- per-subject limits: token buckets and slots, shared by every gateway ------------------------------


async def _let_time_pass(c: Cluster, seconds: float) -> None:
    """The memory hub runs on the fake clock; the Redis scripts on Redis's own."""
    if c.kind == "memory":
        c.clock.advance(seconds)
    else:
        await asyncio.sleep(seconds)


async def test_token_bucket_is_shared_by_gateways(cluster: Cluster) -> None:
    c = cluster
    rate, burst = 20.0, 3

    async def take(broker: Broker, subject: str = "u:alice", action: str = "publish", want: int = 1) -> tuple[int, float]:
        return await broker.take_tokens(subject, action, rate, burst, want)

    assert [await take(b) for b in (c.a, c.b, c.a)] == [(1, 0.0)] * 3
    taken, wait = await take(c.b)  # the other gateway: the same bucket
    assert taken == 0 and 0 < wait <= 1 / rate + 0.002
    # Other subjects and other actions have buckets of their own.
    assert await take(c.a, "u:bob") == (1, 0.0)
    assert await take(c.a, action="typing") == (1, 0.0)
    await _let_time_pass(c, wait + 0.01)
    assert await take(c.a) == (1, 0.0)
    assert (await take(c.a))[0] == 0


async def test_tokens_taken_ahead_never_exceed_the_bucket(cluster: Cluster) -> None:
    c = cluster
    assert await c.a.take_tokens("u:carol", "publish", 10.0, 5, 3) == (3, 0.0)
    assert await c.b.take_tokens("u:carol", "publish", 10.0, 5, 3) == (2, 0.0)  # only two were left
    taken, wait = await c.a.take_tokens("u:carol", "publish", 10.0, 5, 3)
    assert taken == 0 and 0 < wait <= 0.1 + 0.002


async def test_slots_are_limited_across_gateways(cluster: Cluster) -> None:
    c = cluster
    assert await c.a.claim_slot("u:alice", "gw1-1", 2, 30)
    assert await c.b.claim_slot("u:alice", "gw2-1", 2, 30)
    assert not await c.b.claim_slot("u:alice", "gw2-2", 2, 30)
    assert await c.a.claim_slot("u:alice", "gw1-1", 2, 30)  # a slot already held: still granted
    assert await c.a.claim_slot("u:bob", "gw1-2", 2, 30)
    await c.a.release_slot("u:alice", "gw1-1")
    assert await c.b.claim_slot("u:alice", "gw2-2", 2, 30)
    assert not await c.a.claim_slot("u:alice", "gw1-3", 2, 30)


async def test_slots_of_a_dead_gateway_expire_unless_refreshed(cluster: Cluster) -> None:
    c = cluster
    assert await c.a.claim_slot("u:carol", "dead-1", 2, 0.3)
    assert await c.b.claim_slot("u:carol", "live-1", 2, 0.3)
    await c.b.refresh_slots("u:carol", ["live-1"], 5)
    await _let_time_pass(c, 0.4)
    assert await c.b.claim_slot("u:carol", "live-2", 2, 5)  # dead-1 expired, live-1 was kept
    assert not await c.b.claim_slot("u:carol", "live-3", 2, 5)


async def test_redis_reads_of_unknown_rooms_write_no_keys(redis_url: str, redis_prefix: str) -> None:
    broker = RedisBroker(redis_url, prefix=redis_prefix)
    events = Recorder("reads")
    try:
        await broker.start(events)
        for n in range(20):
            room = f"made-up-{n}"
            await broker.position(room)
            await broker.read_last(room, 50)
            await broker.read_before(room, 10, 50)
            await broker.read_after(room, 0, 50)
            await broker.presence_members(room, 100)
            await broker.positions([room])
        assert await keys_with_prefix(redis_url, redis_prefix) == []
    finally:
        await broker.close()
        await delete_prefix(redis_url, redis_prefix)


# --- RedisBroker only: its own subscription connection ----------------------------------------------


async def test_redis_resubscribes_after_its_connection_is_killed() -> None:
    server = RedisProcess().start()
    events = Recorder("resub")
    broker = RedisBroker(server.url, prefix="sb")
    try:
        await broker.start(events)
        assert broker.available and events.availability == [True]
        await broker.subscribe("r")
        await broker.publish("r", body("one"), None)
        await events.until(lambda: events.offsets("r") == [1])

        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await events.until(lambda: events.resubscribed >= 1)
        assert events.availability[:3] == [True, False, True] and broker.available
        await broker.publish("r", body("two"), None)
        await events.until(lambda: events.offsets("r") == [1, 2])

        # Redis restarts empty: the broker reconnects by itself; history has a new epoch.
        epoch = (await broker.position("r")).epoch
        server.stop()
        await events.until(lambda: events.availability[-1] is False)
        server.start()
        await events.until(lambda: events.resubscribed >= 2 and events.availability[-1] is True)
        assert await broker.positions(["r"]) == {"r": (None, 0)}
        result = await broker.publish("r", body("three"), None)  # scripts reloaded by themselves
        assert result.offset == 1 and result.epoch != epoch
        await events.until(lambda: len(events.offsets("r")) == 3)
    finally:
        await broker.close()
        server.cleanup()


# --- offsets are never reused: renew_epoch ----------------------------------------------------------


async def test_renew_epoch_replaces_a_stale_epoch_once(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("renew")
    stale = (await c.a.publish("renew", body("one"), None)).epoch
    await c.a.publish("renew", body("two"), None)
    renewed = await c.a.renew_epoch("renew", stale)
    assert renewed.epoch != stale and (renewed.top, renewed.first, renewed.frames) == (0, 0, [])
    # A second gateway that noticed the same reuse gets the same fresh epoch: no second renewal.
    again = await c.b.renew_epoch("renew", stale)
    assert (again.epoch, again.top) == (renewed.epoch, 0)
    assert (await c.b.read_last("renew", 10)).frames == []  # the old history went with its epoch
    assert await c.a.positions(["renew"]) == {"renew": (renewed.epoch, 0)}
    result = await c.b.publish("renew", body("three"), None)
    assert (result.offset, result.epoch) == (1, renewed.epoch)
    # A renewal asked about an epoch that is already gone changes nothing.
    assert (await c.a.renew_epoch("renew", stale)).epoch == renewed.epoch
    assert (await c.a.renew_epoch("renew", stale)).top == 1
    for rec in c.recorders:
        await rec.until(lambda rec=rec: len(rec.offsets("renew")) == 3)
        assert [(o, e) for r, o, e, _, _ in rec.messages if r == "renew"] == [
            (1, stale),
            (2, stale),
            (1, renewed.epoch),
        ]


async def test_renew_epoch_of_a_room_without_state_creates_one(cluster: Cluster) -> None:
    snap = await cluster.a.renew_epoch("never-used", "whatever")
    assert snap.epoch and snap.epoch != "whatever" and snap.top == 0
    assert (await cluster.b.position("never-used")).epoch == snap.epoch


# --- one frame template for both backplanes ------------------------------------------------------------


async def test_memory_and_redis_build_byte_identical_frames(redis_url: str, redis_prefix: str) -> None:
    """MemoryBroker builds frames with switchboard.protocol.codec; publish.lua
    builds them in Lua. For the same room, epoch, offset and body they must
    be the same bytes (live and in history)."""
    room = "Rm-1_x.y:z"
    sent = body('quotes " backslash \\ newline \n unicode ✓ \u2028 emoji 🎉 </script>', User("u:1", 'N "q"'))
    events = Recorder("redis")
    redis = RedisBroker(redis_url, prefix=redis_prefix)
    try:
        await redis.start(events)
        await redis.subscribe(room)
        result = await redis.publish(room, sent, None)
        await events.until(lambda: len(events.offsets(room)) == 1)
        redis_live = events.messages[0][4]
        redis_stored = (await redis.read_last(room, 1)).frames[0]
    finally:
        await redis.close()
        await delete_prefix(redis_url, redis_prefix)

    hub = MemoryHub(history_size=10, idempotency_window_s=120, presence_entry_lifetime_s=15, presence_events_max=200)
    hub.room(room).epoch = result.epoch  # the same epoch Redis chose
    memory_events = Recorder("memory")
    memory = MemoryBroker(hub)
    await memory.start(memory_events)
    await memory.subscribe(room)
    assert (await memory.publish(room, sent, None)).offset == result.offset == 1
    await memory_events.until(lambda: len(memory_events.offsets(room)) == 1)
    memory_stored = (await memory.read_last(room, 1)).frames[0]
    await memory.close()

    assert memory_stored == redis_stored
    assert memory_events.messages[0][4] == redis_live == redis_stored.decode()
