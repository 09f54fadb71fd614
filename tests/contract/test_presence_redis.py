"""The presence scripts on a private Redis: a join's and a leave's work does
not grow with the room (measured by the commands the scripts run, counted
by Redis itself in ``INFO commandstats``: deterministic), nor its time in
Redis; and the listing copes with state an older gateway version left."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from switchboard.backplane import Backplane
from switchboard.backplane.commands import StandaloneCommands, load_scripts
from switchboard_harness import RedisProcess

# Commands whose cost is O(1), O(log N) or O(what they are asked for), never
# O(members): the only ones a join or a leave may run. A whole-room read
# (HVALS, HGETALL, HKEYS, ZRANGE of everything, ...) is not among them.
BOUNDED = {"evalsha", "hsetnx", "hincrby", "hset", "hget", "hmget", "hdel", "hlen", "hscan",
           "zadd", "zrem", "zrangebyscore", "expire", "publish"}  # fmt: skip
_ids = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    process = RedisProcess().start()
    try:
        yield process
    finally:
        process.cleanup()


@pytest.fixture
async def redis(server: RedisProcess) -> AsyncIterator[Redis]:
    client = Redis.from_url(server.url)
    await client.flushall()
    await load_scripts(client)
    try:
        yield client
    finally:
        await client.aclose()


def user(n: int | str) -> bytes:
    return json.dumps({"id": f"u{n}", "name": f"User {n}"}, separators=(",", ":")).encode()


async def fill(plane: Backplane, room: str, users: int) -> None:
    for start in range(0, users, 500):
        entries = [(f"c{n}", user(n)) for n in range(start, min(start + 500, users))]
        await plane.presence_upsert(room, entries, 1_000, list_limit=0)


async def commands_of(redis: Redis, work) -> Counter[str]:  # type: ignore[no-untyped-def]
    """The commands Redis ran for `work()`, scripts' inner commands included."""
    await redis.config_resetstat()
    await work()
    stats = await redis.info("commandstats")
    calls = Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})
    del calls["config|resetstat"], calls["config"]  # our own bookkeeping, if listed
    return +calls


async def joins_and_leaves(plane: Backplane, room: str, list_limit: int, rounds: int = 20) -> None:
    """`rounds` new users join (each lists `list_limit`) and leave again."""
    for _ in range(rounds):
        n = f"j{next(_ids)}"
        page = await plane.presence_upsert(room, [(f"c{n}", user(n))], 1_000, list_limit=list_limit)
        assert page.members[0] == (user(n), 1)
        await plane.presence_remove(room, [f"c{n}"], 1_000)


@pytest.mark.parametrize(("small", "list_limit"), [(10, 5), (200, 100)])
async def test_join_and_leave_work_does_not_grow_with_the_room(redis: Redis, small: int, list_limit: int) -> None:
    """The commands behind 20 joins + leaves are the same in a room of
    `small` users as in one of 5,000 (both above `list_limit`), and all of
    them are bounded. 20 rounds: what a round costs cannot hide in noise."""
    plane = Backplane(StandaloneCommands(redis), prefix="cost", presence_events_max=3)  # above the threshold: count reports
    await fill(plane, "small", small)
    await fill(plane, "big", 5_000)
    in_small = await commands_of(redis, lambda: joins_and_leaves(plane, "small", list_limit))
    in_big = await commands_of(redis, lambda: joins_and_leaves(plane, "big", list_limit))
    assert set(in_big) <= BOUNDED, f"unbounded commands: {set(in_big) - BOUNDED}"
    # HSCAN returns about COUNT entries a round; a round more is allowed (it
    # depends on how Redis's hash table happens to be laid out).
    assert in_small["hscan"] <= in_big["hscan"] <= in_small["hscan"] + 20
    del in_small["hscan"], in_big["hscan"]
    assert in_big == in_small
    # And what a join lists did not change: the cap, the joiner first.
    page = await plane.presence_members("big", 1_000, list_limit)
    assert page.count == 5_000 and len(page.members) == list_limit


async def test_join_time_in_redis_does_not_grow_with_the_room(redis: Redis) -> None:
    """Redis's own time for a join script (``usec_per_call`` of EVALSHA) in a
    room of 5,000 stays within 2x of a room of 10 (the contract's bound for
    a whole join). Interleaved rounds, the fastest round of each counted, so
    a busy machine slows both or neither; a whole-room read would cost 10x."""
    plane = Backplane(StandaloneCommands(redis), prefix="time", presence_events_max=3)
    await fill(plane, "small", 10)
    await fill(plane, "big", 5_000)

    async def usec_per_join(room: str) -> float:
        await redis.config_resetstat()
        for _ in range(30):
            n = f"t{next(_ids)}"
            await plane.presence_upsert(room, [(f"c{n}", user(n))], 1_000, list_limit=5)
        stats = await redis.info("commandstats")
        evalsha = stats["cmdstat_evalsha"]
        return int(evalsha["usec"]) / int(evalsha["calls"])

    best = {"small": float("inf"), "big": float("inf")}
    for _ in range(6):
        for room in ("small", "big"):
            best[room] = min(best[room], await usec_per_join(room))
    print(f"presence_upsert in Redis: {best['small']:.1f} us (10 users), {best['big']:.1f} us (5,000 users)")
    assert best["big"] <= 2 * best["small"], best


async def test_listing_drops_profiles_of_users_who_left(redis: Redis) -> None:
    """An older gateway version's script removes a user without dropping
    its profile: the listing skips it, drops it, and counts it nowhere."""
    plane = Backplane(StandaloneCommands(redis), prefix="old")
    await fill(plane, "r", 3)
    keys = plane.keys("r")
    await redis.hset(keys.presence_profiles, "ghost", user("ghost"))
    page = await plane.presence_members("r", 1_000, 10)
    assert page.count == 3 and sorted(u for u, _ in page.members) == sorted(user(n) for n in range(3))
    assert not await redis.hexists(keys.presence_profiles, "ghost")


async def test_a_joiner_without_a_profile_is_listed(redis: Redis) -> None:
    """A connection an older gateway version added has no profile: when it
    joins again it is still listed first (and its profile is stored)."""
    plane = Backplane(StandaloneCommands(redis), prefix="old")
    await fill(plane, "r", 3)
    keys = plane.keys("r")
    await redis.hdel(keys.presence_profiles, "u1")
    page = await plane.presence_upsert("r", [("c1", user(1))], 1_000, list_limit=1)
    assert page.count == 3 and page.members == [(user(1), 1)]
    assert await redis.hget(keys.presence_profiles, "u1") == user(1)
