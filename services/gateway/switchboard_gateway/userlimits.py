"""Per-user limits that hold across the cluster: publish and typing rates
and MAX_CONNECTIONS_PER_USER, kept in the backplane (token buckets and
slots, see broker.base), so ten sockets of one user on five gateways share
one budget and reconnecting refills nothing.

Tokens are taken ahead, a little: when a user's rate is high, one Redis
call takes up to CREDIT_S worth of tokens (never more than the bucket
holds) and this gateway spends them locally for at most CREDIT_S. The user
can never exceed the limit (tokens are gone from the shared bucket before
they are spent); at worst a gateway drops CREDIT_S worth of unspent tokens.
At the default 10 publishes/s that is one call per publish; at the
benchmark's unlimited rates, one call per ~100,000. When tokens are taken
ahead, one call per user and action is in flight at a time: callers
arriving meanwhile (a user's many sockets on this gateway) wait for it and
spend what it took, instead of each taking CREDIT_S worth and emptying the
bucket for the others. At one token per call nothing is held, so calls go
out concurrently (pipelined).

Connection slots live SLOT_LIFETIME_S unless refreshed; this gateway
refreshes its own every SLOT_REFRESH_S, so the slots of a gateway that died
free themselves within a minute. If the backplane is down when a user
connects, the connection is let in (fail open: it cannot publish anyway)
and its slot is added by the next refresh. Likewise, while the shard
holding a user's bucket is unreachable, only each connection's own bucket
limits that user (a failover of one shard must not refuse publishes to
rooms on the others).
"""

from __future__ import annotations

import asyncio
import logging
import time

from switchboard_gateway.broker import Broker, BrokerUnavailable
from switchboard_gateway.settings import Settings

log = logging.getLogger("switchboard.userlimits")

SLOT_LIFETIME_S = 60.0
SLOT_REFRESH_S = 20.0
CREDIT_S = 0.1


class UserLimits:
    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self.slots: dict[str, set[str]] = {}  # user id -> this gateway's connections holding a slot
        self.credit: dict[tuple[str, str], tuple[int, float]] = {}  # (user, action) -> (tokens, spend by)
        self._taking: dict[tuple[str, str], asyncio.Future[None]] = {}  # (user, action) -> the call in flight
        self._task: asyncio.Task[None] | None = None

    async def publish_wait(self, user_id: str) -> float:
        """0.0 when the user may publish now, else seconds to wait."""
        s = self.settings
        return await self._take(user_id, "publish", s.publish_rate, s.publish_burst)

    async def typing_wait(self, user_id: str) -> float:
        s = self.settings
        return await self._take(user_id, "typing", s.typing_rate, s.typing_burst)

    async def _take(self, user_id: str, action: str, rate: float, burst: int) -> float:
        key = (user_id, action)
        want = max(1, min(burst, int(rate * CREDIT_S)))
        if want == 1:
            # One token per call, nothing held: concurrent calls waste nothing
            # (and go out pipelined, one round trip for a burst).
            return await self._take_from_backplane(key, rate, burst, want)
        while True:
            if self._spend_credit(key, time.monotonic()):
                return 0.0
            taking = self._taking.get(key)
            if taking is None:
                break
            await asyncio.shield(taking)  # then spend what it took, if anything is left
        taking = self._taking[key] = asyncio.get_running_loop().create_future()
        try:
            return await self._take_from_backplane(key, rate, burst, want)
        finally:
            del self._taking[key]
            taking.set_result(None)

    def _spend_credit(self, key: tuple[str, str], now: float) -> bool:
        held = self.credit.get(key)
        if held is None:
            return False
        tokens, spend_by = held
        if spend_by <= now:
            del self.credit[key]
            return False
        if tokens > 1:
            self.credit[key] = (tokens - 1, spend_by)
        else:
            del self.credit[key]
        return True

    async def _take_from_backplane(self, key: tuple[str, str], rate: float, burst: int, want: int) -> float:
        user_id, action = key
        now = time.monotonic()
        try:
            taken, wait_s = await self.broker.take_tokens(f"u:{user_id}", action, rate, burst, want)
        except BrokerUnavailable:
            # The user's bucket lives on one shard (its own hash tag); while
            # that shard fails over, only the connection's own bucket (taken
            # first) limits the user: publishes to healthy shards go on.
            return 0.0
        if taken == 0:
            return wait_s
        if taken > 1:
            if len(self.credit) > 10_000:
                self.credit = {k: v for k, v in self.credit.items() if v[1] > now}
            self.credit[key] = (taken - 1, now + CREDIT_S)
        return 0.0

    async def claim_connection(self, user_id: str, conn_id: str) -> bool:
        limit = self.settings.max_connections_per_user
        if limit <= 0:
            return True
        try:
            granted = await self.broker.claim_slot(f"u:{user_id}", conn_id, limit, SLOT_LIFETIME_S)
        except BrokerUnavailable:
            granted = True
        if granted:
            self.slots.setdefault(user_id, set()).add(conn_id)
        return granted

    async def release_connection(self, user_id: str, conn_id: str) -> None:
        held = self.slots.get(user_id)
        if held is None or conn_id not in held:
            return
        held.discard(conn_id)
        if not held:
            del self.slots[user_id]
        try:
            await self.broker.release_slot(f"u:{user_id}", conn_id)
        except BrokerUnavailable:
            pass  # it expires by itself

    async def refresh(self) -> None:
        calls = [
            self.broker.refresh_slots(f"u:{user}", sorted(held), SLOT_LIFETIME_S) for user, held in self.slots.items()
        ]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException) and not isinstance(result, BrokerUnavailable):
                log.error("refreshing connection slots failed: %r", result)

    async def start(self) -> None:
        if self.settings.max_connections_per_user > 0:
            self._task = asyncio.create_task(self._refresh_forever(), name="user-slots")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(SLOT_REFRESH_S)
            await self.refresh()
