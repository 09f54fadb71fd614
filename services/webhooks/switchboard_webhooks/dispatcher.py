"""The delivery loop: read events through the consumer group, POST them in
batches, acknowledge what the receiver accepted.

- Sharing: every dispatcher reads with XREADGROUP ``>`` in the one group
  ``webhooks``, so Redis hands each event to exactly one of them.
- At least once: an event is acknowledged (XACK) only after a 2xx. A failed
  attempt is retried after a capped exponential backoff with jitter, the
  batch held by the same dispatcher; the attempt counter lives in Redis.
- Failure of a dispatcher: its pending events stay in the group; after
  WEBHOOK_CLAIM_IDLE without a touch another dispatcher claims them
  (XAUTOCLAIM) and carries on counting attempts.
- Giving up: an event whose WEBHOOK_MAX_ATTEMPTS-th attempt failed (or that
  is not an event at all) goes to the dead-letter stream and is acknowledged.
- Stopping (SIGTERM): no new reads; a POST in flight finishes, then its
  batch is acknowledged or released (marked idle so another dispatcher takes
  it at once); a batch waiting for its next attempt is released at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from switchboard_webhooks.delivery import Outcome, Poster, batch_body
from switchboard_webhooks.metrics import Metrics
from switchboard_webhooks.settings import Settings
from switchboard_webhooks.source import EventSource, Item

log = logging.getLogger("switchboard.webhooks")

READ_BLOCK_S = 1.0  # a blocked read returns at least this often (stop, health)
PRUNE_INTERVAL_S = 600.0  # how often stopped dispatchers are removed from the group
PRUNE_IDLE_MS = 3_600_000  # ... once idle this long with nothing pending


def consumer_name() -> str:
    """Unique per process: a restarted dispatcher does not take a dead one's
    pending events for its own (they are claimed after WEBHOOK_CLAIM_IDLE)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Wait after failed attempt number `attempt` (1-based): base·2^(n−1),
    capped, then "equal jitter" (between half and all of it) so retries of
    many batches spread out without ever coming back at once."""
    delay = min(max_s, base_s * 2.0 ** min(attempt - 1, 30))
    return delay / 2 + random.uniform(0, delay / 2)


class Batch:
    """Events delivered together; `touched` is when this dispatcher last
    read or claimed them (monotonic), to tell them from events another
    dispatcher took over meanwhile."""

    __slots__ = ("items", "touched")

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.touched = time.monotonic()


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        connect: Callable[[], Awaitable[EventSource]],
        poster: Poster,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.consumer = consumer_name()
        self.poster = poster
        self.metrics = metrics
        self._connect = connect
        self.source: EventSource | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._stopping = asyncio.Event()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._claim_idle_ms = int(settings.claim_idle_s * 1000)

    # --- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Deliver until ``stop()``; then finish or release what is held."""
        try:
            self.source = await self._open()
            if self.source is None:
                return
            log.info("dispatching as %s to %s", self.consumer, self.poster.url)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_loop())
                group.create_task(self._maintenance_loop())
            while self._deliveries:  # each finishes its POST, then acks or releases
                await asyncio.gather(*list(self._deliveries))
        finally:
            if self.source is not None:
                await self.source.close()
            log.info("stopped")

    async def _open(self) -> EventSource | None:
        attempt = 0
        while not self.stopping:
            try:
                source = await self._connect()
                self.metrics.redis_available.set(1)
                return source
            except (RedisError, OSError) as exc:
                attempt += 1
                self.metrics.redis_available.set(0)
                log.warning("redis unreachable (%s); retrying", exc)
                await self._sleep(backoff_delay(attempt, 0.2, 5.0))
        return None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short by stop(); True when stopping."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass
        return self.stopping

    async def _slot(self) -> bool:
        """Wait for room for one more batch; False when stopping instead."""
        while not self.stopping:
            try:
                async with asyncio.timeout(READ_BLOCK_S):
                    await self._slots.acquire()
                return True
            except TimeoutError:
                continue
        return False

    def _spawn(self, items: list[Item]) -> None:
        """Deliver `items` in batches of at most WEBHOOK_BATCH_MAX; the
        caller holds one slot, each further batch takes its own."""
        size = self.settings.batch_max
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        for index, chunk in enumerate(chunks):
            task = asyncio.create_task(self._deliver(Batch(chunk), has_slot=index == 0))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    # --- reading new events and claiming abandoned ones ----------------------

    async def _read_loop(self) -> None:
        assert self.source is not None
        failures = 0
        while await self._slot():
            try:
                items = await self.source.read_new(self.consumer, self.settings.batch_max, READ_BLOCK_S)
                failures = 0
                self.metrics.redis_available.set(1)
            except (RedisError, OSError) as exc:
                self._slots.release()
                failures += 1
                self.metrics.redis_available.set(0)
                log.warning("reading the events stream failed (%s); retrying", exc)
                if await self._sleep(backoff_delay(failures, 0.2, 5.0)):
                    return
                await self._refresh()
                continue
            if not items:
                self._slots.release()
                continue
            if self.stopping:  # read while stop arrived: hand them on untried
                self._slots.release()
                try:
                    await self._release(Batch(items))
                except (RedisError, OSError) as exc:
                    log.warning("could not release %d events (%s): claimed after WEBHOOK_CLAIM_IDLE", len(items), exc)
                return
            self._spawn(items)

    async def _refresh(self) -> None:
        assert self.source is not None
        try:
            await self.source.refresh()
        except (RedisError, OSError) as exc:
            log.warning("refreshing the streams failed: %s", exc)

    async def _maintenance_loop(self) -> None:
        """Claim abandoned events, find new streams, forget stopped
        dispatchers, update the backlog gauges."""
        assert self.source is not None
        # Often enough for both jobs: discovery must not wait for the claim
        # cadence (a long WEBHOOK_CLAIM_IDLE would delay new streams).
        interval = min(max(self.settings.claim_idle_s / 4, 0.1), 15.0, self.settings.discovery_interval_s)
        next_discovery = time.monotonic() + self.settings.discovery_interval_s
        next_prune = time.monotonic() + PRUNE_INTERVAL_S / 10
        while not await self._sleep(interval):
            try:
                if time.monotonic() >= next_discovery:
                    next_discovery = time.monotonic() + self.settings.discovery_interval_s
                    await self.source.refresh()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                    if removed := await self.source.prune_consumers(self.consumer, PRUNE_IDLE_MS):
                        log.info("removed %d stopped dispatchers from the group", removed)
                backlog = await self.source.backlog()
                self.metrics.lag.set(sum(b.lag for b in backlog.values()))
                self.metrics.pending.set(sum(b.pending for b in backlog.values()))
                # Only streams with pending events can have abandoned ones.
                await self._claim_abandoned([s for s, b in backlog.items() if b.pending])
                self.metrics.streams.set(len(self.source.streams()))
                self.metrics.redis_available.set(1)
            except (RedisError, OSError) as exc:
                self.metrics.redis_available.set(0)
                log.warning("claim/backlog round failed: %s", exc)

    async def _claim_abandoned(self, streams: list[str]) -> None:
        assert self.source is not None
        for stream in streams:
            while not self.stopping and not self._slots.locked():
                await self._slots.acquire()
                try:
                    items, trimmed = await self.source.claim_abandoned(
                        self.consumer, stream, self._claim_idle_ms, self.settings.batch_max
                    )
                except BaseException:
                    self._slots.release()
                    raise
                if trimmed:
                    self.metrics.lost.inc(trimmed)
                    log.error("%d pending events of %s were trimmed before delivery (EVENTS_MAXLEN)", trimmed, stream)
                if not items:
                    self._slots.release()
                    break
                self.metrics.claimed.inc(len(items))
                log.info("claimed %d abandoned events of %s", len(items), stream)
                self._spawn(items)

    # --- one batch -----------------------------------------------------------

    async def _deliver(self, batch: Batch, has_slot: bool) -> None:
        if not has_slot:
            await self._slots.acquire()  # further chunks of one read: wait for room
        self.metrics.in_flight.inc()
        try:
            await self._attempts(batch)
        except (RedisError, OSError) as exc:
            # Not acknowledged: still pending in the group, so another round
            # (ours or another dispatcher's) claims it after WEBHOOK_CLAIM_IDLE.
            log.warning("batch of %d left pending: redis failed (%s)", len(batch.items), exc)
        except Exception:
            log.exception("batch of %d left pending after an unexpected error", len(batch.items))
        finally:
            self.metrics.in_flight.dec()
            self._slots.release()

    async def _attempts(self, batch: Batch) -> None:
        assert self.source is not None
        settings = self.settings
        # Malformed entries, and entries claimed after their last attempt.
        unusable = [i for i in batch.items if i.malformed is not None or i.attempts > settings.max_attempts]
        if unusable:
            await self._dead_letter(unusable, f"gave up after {settings.max_attempts} attempts")
            batch.items = [i for i in batch.items if i.malformed is None and i.attempts <= settings.max_attempts]
        while batch.items:
            outcome = await self.poster.post(batch_body([i.body for i in batch.items]))
            self.metrics.requests.labels(outcome.label).inc()
            self.metrics.request_seconds.observe(outcome.seconds)
            if outcome.ok:
                await self.source.ack(batch.items)
                self._delivered(batch.items)
                return
            spent = [i for i in batch.items if i.attempts >= settings.max_attempts]
            if spent:
                await self._dead_letter(spent, outcome.detail)
                batch.items = [i for i in batch.items if i.attempts < settings.max_attempts]
                if not batch.items:
                    return
            attempt = max(i.attempts for i in batch.items)
            log.warning("delivery of %d events failed (%s), attempt %d", len(batch.items), outcome.detail, attempt)
            if await self._sleep(backoff_delay(attempt, settings.backoff_base_s, settings.backoff_max_s)):
                await self._release(batch)
                return
            batch.items = await self.source.reclaim(self.consumer, batch.items, self._min_idle_ms(batch))
            batch.touched = time.monotonic()
            self.metrics.retried.inc(len(batch.items))

    def _min_idle_ms(self, batch: Batch) -> int:
        """Idle time below which an entry was touched by someone else since
        we last did: another dispatcher's claim resets it, and that happens
        at least WEBHOOK_CLAIM_IDLE after our touch."""
        elapsed_ms = (time.monotonic() - batch.touched) * 1000
        return max(0, int(elapsed_ms - self._claim_idle_ms / 2))

    async def _release(self, batch: Batch) -> None:
        assert self.source is not None
        await self.source.release(
            self.consumer, batch.items, self._min_idle_ms(batch), self._claim_idle_ms + 1000
        )
        log.info("released %d events for another dispatcher", len(batch.items))

    async def _dead_letter(self, items: list[Item], reason: str) -> None:
        assert self.source is not None
        await self.source.dead_letter(items, reason)
        self.metrics.dead_lettered.inc(len(items))
        log.error("dead-lettered %d events: %s", len(items), reason)

    def _delivered(self, items: list[Item]) -> None:
        self.metrics.delivered.inc(len(items))
        now_ms = time.time() * 1000
        for item in items:
            if item.ts_ms is not None:
                self.metrics.delivery_delay_seconds.observe(max(0.0, (now_ms - item.ts_ms) / 1000))


__all__ = ["Dispatcher", "Outcome", "backoff_delay", "consumer_name"]
