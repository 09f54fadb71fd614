"""Crash expiry of abandoned rooms, for the events stream.

A gateway refreshes and sweeps presence only in the rooms it has members in
(presence.py). When every gateway serving a room dies, nobody would sweep
it: its members would vanish with the keys' TTL, without the ``user_left``
/ ``room_vacated`` events the contract promises. So, while events are on,
every gateway runs this loop; one of them at a time (a lock in Redis) sweeps
the rooms whose connections have all expired (``Backplane.
sweep_abandoned_rooms``), each about every PRESENCE_TTL/4 as the regular
refresh: a dead gateway's members leave within 3/4 of PRESENCE_TTL either way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from redis.exceptions import RedisError

from switchboard.backplane import Backplane

log = logging.getLogger("switchboard.broker.janitor")


async def sweep_abandoned_rooms_forever(backplane: Backplane, interval_s: float) -> None:
    lock_ms = max(100, int(interval_s * 900))  # expires before the next round of whoever holds it
    while True:
        # Jittered, so that the gateways' rounds spread out over the interval.
        await asyncio.sleep(interval_s * (0.5 + random.random()))
        try:
            swept = await backplane.sweep_abandoned_rooms(int(time.time() * 1000), lock_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("sweeping abandoned rooms failed (next round retries): %s", exc)
            continue
        except Exception:  # a bug must not stop crash expiry for good
            log.exception("sweeping abandoned rooms failed")
            continue
        if swept:
            log.info("swept %d rooms whose gateways died", swept)
