"""Protocol §11 at the broker seam, for MemoryBroker and RedisBroker alike:
changes are log entries checked in the same atomic step (author, deleted,
in history, one reaction per user and emoji, at most 20 emoji), their state
is trimmed with history, and read state moves forward only."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from broker_harness import Cluster, FakeClock, Recorder, delete_prefix

from switchboard.protocol.frames import EntryKind, MessageBody, User
from switchboard.roomlog import MAX_EMOJI_PER_MESSAGE, ReadState
from switchboard_gateway.broker.memory import MemoryBroker, MemoryHub
from switchboard_gateway.broker.redis import RedisBroker

ALICE = User("alice", "Alice")
BOB = User("bob", "Bob")


def entry(
    kind: EntryKind, user: User = ALICE, target: int | None = None, text: str = "", emoji: str | None = None
) -> MessageBody:
    return MessageBody(user=user, text=text, ts=int(time.time() * 1000), kind=kind, target=target, emoji=emoji)


def message(text: str, user: User = ALICE) -> MessageBody:
    return entry("message", user, text=text)


async def test_only_the_author_edits_or_deletes_and_a_moderator_deletes_anything(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("r")
    first = await c.a.publish("r", message("helo"), None)
    refused = await c.b.publish("r", entry("edit", BOB, 1, "hacked"), None)
    assert (refused.offset, refused.status) == (0, "forbidden")
    assert (await c.b.publish("r", entry("delete", BOB, 1), None)).status == "forbidden"
    edited = await c.b.publish("r", entry("edit", ALICE, 1, "hello"), None)
    assert (edited.offset, edited.epoch, edited.status) == (2, first.epoch, "")
    system = User("system", "system")
    deleted = await c.a.publish("r", entry("delete", system, 1), None, moderator=True)
    assert (deleted.offset, deleted.status) == (3, "")
    for rec in c.recorders:  # the changes are delivered like messages, in the one order
        await rec.until(lambda rec=rec: len(rec.offsets("r")) == 3)
        kinds = [(f["kind"], f.get("target"), f["text"], f["user"]["id"]) for f in rec.frames("r")]
        assert kinds == [("message", None, "helo", "alice"), ("edit", 1, "hello", "alice"), ("delete", 1, "", "system")]


async def test_bad_targets_store_nothing(cluster: Cluster) -> None:
    c = cluster
    nothing = await c.a.publish("empty", entry("react", ALICE, 1, emoji="👍"), None)
    assert (nothing.offset, nothing.status) == (0, "no_target")  # a room without history
    await c.a.publish("r", message("one"), None)
    await c.a.publish("r", entry("edit", ALICE, 1, "uno"), None)
    assert (await c.a.publish("r", entry("edit", ALICE, 2, "x"), None)).status == "no_target"  # not a message
    assert (await c.a.publish("r", entry("react", ALICE, 9, emoji="x"), None)).status == "no_target"  # beyond
    await c.a.publish("r", entry("delete", ALICE, 1), None)
    for kind in ("edit", "delete", "react", "unreact"):
        refused = await c.b.publish("r", entry(kind, ALICE, 1, "t", "👍"), None)  # type: ignore[arg-type]
        assert refused.status == "deleted"
    assert (await c.a.position("r")).top == 3  # nothing refused was stored


@pytest.fixture(params=["memory", "redis-standalone", "redis-cluster"])
async def roomy(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Two brokers on one backplane with a history of 100 entries (the
    ``cluster`` fixture keeps 5, too few for 20 reactions to one message)."""
    if request.param == "memory":
        hub = MemoryHub(history_size=100, idempotency_window_s=120, presence_entry_lifetime_s=15, presence_events_max=200)
        a, b = MemoryBroker(hub), MemoryBroker(hub)
    else:
        url: str = request.getfixturevalue(f"{request.param.removeprefix('redis-')}_redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        a, b = (RedisBroker(url, prefix=prefix, history_size=100) for _ in range(2))
    ea, eb = Recorder("a"), Recorder("b")
    await a.start(ea)
    await b.start(eb)
    yield Cluster(request.param, a, b, ea, eb, FakeClock(), history_size=100)
    await a.close()
    await b.close()
    if request.param != "memory":
        await delete_prefix(url, prefix)


async def test_one_reaction_per_user_and_emoji_and_at_most_20_emoji(roomy: Cluster) -> None:
    c = roomy
    await c.a.publish("r", message("react to me"), None)
    assert (await c.a.publish("r", entry("react", BOB, 1, emoji="👍"), None)).offset == 2
    again = await c.b.publish("r", entry("react", BOB, 1, emoji="👍"), None)
    assert (again.offset, again.status) == (0, "noop")
    assert (await c.a.publish("r", entry("react", ALICE, 1, emoji="👍"), None)).offset == 3  # another user
    assert (await c.a.publish("r", entry("unreact", BOB, 1, emoji="👍"), None)).offset == 4
    assert (await c.a.publish("r", entry("unreact", BOB, 1, emoji="👍"), None)).status == "noop"
    assert (await c.a.publish("r", entry("unreact", BOB, 1, emoji="🎉"), None)).status == "noop"
    # Emoji whose bytes could be confused with a user id's are told apart.
    assert (await c.a.publish("r", entry("react", User("b:c", "x"), 1, emoji="a"), None)).status == ""
    assert (await c.a.publish("r", entry("react", User("c", "x"), 1, emoji="a:b"), None)).status == ""
    distinct = 2  # 👍 and "a"; "a:b" makes 3
    for n in range(MAX_EMOJI_PER_MESSAGE - distinct - 1):
        assert (await c.a.publish("r", entry("react", ALICE, 1, emoji=f"e{n}"), None)).status == ""
    over = await c.b.publish("r", entry("react", BOB, 1, emoji="one-too-many"), None)
    assert (over.offset, over.status) == (0, "emoji_limit")
    assert (await c.b.publish("r", entry("react", BOB, 1, emoji="e0"), None)).status == ""  # a known emoji is fine
    assert (await c.b.publish("r", entry("unreact", ALICE, 1, emoji="e1"), None)).status == ""  # e1 is gone
    assert (await c.b.publish("r", entry("react", BOB, 1, emoji="one-too-many"), None)).status == ""


async def test_a_retried_change_gets_its_first_ack(cluster: Cluster) -> None:
    c = cluster
    await c.a.publish("r", message("x"), None)
    first = await c.a.publish("r", entry("delete", ALICE, 1), "del-1")
    retry = await c.b.publish("r", entry("delete", ALICE, 1), "del-1")  # would be "deleted" without the key
    assert (retry.offset, retry.duplicate, retry.status) == (first.offset, True, "")


async def test_change_state_leaves_with_history(cluster: Cluster) -> None:
    c = cluster
    await c.a.publish("r", message("old"), None)
    await c.a.publish("r", entry("react", BOB, 1, emoji="👍"), None)
    for n in range(c.history_size):
        await c.a.publish("r", message(f"m{n}"), None)
    assert (await c.a.publish("r", entry("edit", ALICE, 1, "late"), None)).status == "no_target"
    newest = (await c.a.position("r")).top
    assert (await c.a.publish("r", entry("edit", ALICE, newest, "fine"), None)).status == ""
    if isinstance(c.a, RedisBroker):  # the state hash holds only what history holds
        # Trim past the react entry too: its reaction fields go with it.
        for n in range(c.history_size):
            await c.a.publish("r", message(f"n{n}"), None)
        state = c.a.backplane.keys("r").state
        fields = await c.a.backplane.commands.execute(state, "HKEYS", state)
        names = sorted(f.decode() for f in fields)
        top = (await c.a.position("r")).top
        assert names == sorted(["e", "f"] + [f"a:{o}" for o in range(top - c.history_size + 1, top + 1)])
        ttl = await c.a.backplane.commands.execute(state, "TTL", state)
        assert 0 < ttl <= c.a.backplane.history_ttl


async def test_read_state_moves_forward_and_is_announced(cluster: Cluster) -> None:
    c = cluster
    await c.subscribe_all("r")
    for n, user in enumerate([ALICE, BOB, BOB, ALICE, BOB]):
        await c.a.publish("r", message(f"m{n}", user), None)
    snap = await c.a.position("r")
    assert await c.b.read_state("r", "alice", snap.epoch, snap.top) == ReadState(0, 3)  # bob's three
    assert await c.b.read_state("r", "carol", snap.epoch, snap.top) == ReadState(0, 5)
    assert await c.a.mark_read("r", ALICE, snap.epoch, 3)
    assert await c.b.read_state("r", "alice", snap.epoch, snap.top) == ReadState(3, 1)
    assert not await c.b.mark_read("r", ALICE, snap.epoch, 2)  # never backwards
    assert not await c.b.mark_read("r", ALICE, "another-epoch", 5)
    await c.a.publish("r", entry("delete", BOB, 5), None)
    assert await c.b.read_state("r", "alice", snap.epoch, snap.top + 1) == ReadState(3, 0)  # deleted: not unread
    for rec in c.recorders:
        await rec.until(lambda rec=rec: any('"type":"read"' in e for _, e in rec.ephemeral))
        reads = [json.loads(e) for room, e in rec.ephemeral if '"type":"read"' in e]
        assert reads == [{"type": "read", "room": "r", "user": {"id": "alice", "name": "Alice"}, "offset": 3}]


async def test_memory_and_redis_build_byte_identical_change_frames(redis_url: str, redis_prefix: str) -> None:
    room = "dm:alice+bob"
    bodies = [
        message('say "hi"'),
        entry("edit", ALICE, 1, "new \u2028 text"),
        entry("react", BOB, 1, emoji="🇫🇷"),
        entry("unreact", BOB, 1, emoji="🇫🇷"),
        entry("delete", ALICE, 1),
    ]
    events = Recorder("redis")
    redis = RedisBroker(redis_url, prefix=redis_prefix)
    try:
        await redis.start(events)
        for body in bodies:
            result = await redis.publish(room, body, None)
            assert result.status == ""
        redis_frames = (await redis.read_last(room, 10)).frames
    finally:
        await redis.close()
        await delete_prefix(redis_url, redis_prefix)
    hub = MemoryHub(history_size=10, idempotency_window_s=120, presence_entry_lifetime_s=15, presence_events_max=200)
    hub.room(room).epoch = result.epoch
    memory = MemoryBroker(hub)
    await memory.start(Recorder("memory"))
    for body in bodies:
        assert (await memory.publish(room, body, None)).status == ""
    assert (await memory.read_last(room, 10)).frames == redis_frames
    await memory.close()
