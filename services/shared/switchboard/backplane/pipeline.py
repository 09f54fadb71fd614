"""``AutoPipeline``: every call to one Redis node goes through one pipeline.

Calls made while a batch is in flight are sent together as the next batch,
so a thousand concurrent publishers cost a handful of round trips on one
pooled connection, not a thousand connections (redis-py's asyncio pool is
capped and raises when exhausted, see docs/performance.md).

Durability: a call made with ``durable=True`` is confirmed by a replica
before its future resolves. One ``WAIT <replicas> <timeout>`` closes the
batch: it runs on the same connection right after the batch's writes, and
Redis answers it once that many replicas acknowledged every write this
connection made so far, so one WAIT covers the whole batch. If fewer
confirm in time, every durable call of the batch fails with
``NotReplicated`` (the write may or may not survive a failover: the caller
answers ``unavailable`` and a retry with the same idempotency key is safe).

Outcome unknown: connecting is separate from sending. A batch whose
connection could not be had never left (a plain connection error: callers
may say "not stored"); a batch sent and not (completely) answered may have
run, so its calls fail with ``WriteOutcomeUnknown``.

Redirects: a call may ask for ``ASKING`` to precede it (a slot being
migrated, see ``cluster.py``); the pair is sent back to back in the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError


class NotReplicated(RedisError):
    """WAIT timed out: no replica confirmed the write within the durability timeout."""


class WriteOutcomeUnknown(RedisConnectionError):
    """The command was sent but no answer came (a timeout, a connection lost
    mid-reply): Redis may or may not have run it. A connection error, so an
    idempotent call may still be retried (``cluster.py``)."""


@dataclass(frozen=True, slots=True)
class Durability:
    replicas: int = 1
    timeout_ms: int = 1000


@dataclass(slots=True)
class _Call:
    command: tuple[Any, ...]
    future: asyncio.Future[Any]
    durable: bool
    asking: bool


class AutoPipeline:
    def __init__(
        self,
        redis: Redis,
        load_scripts: Callable[[Redis], Awaitable[None]],
        durability: Durability | None = None,
        max_batch: int = 512,
    ) -> None:
        self._redis = redis
        self._load_scripts = load_scripts
        self._durability = durability
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    def call(self, *command: Any, durable: bool = False, asking: bool = False) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(command, future, durable and self._durability is not None, asking))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return future

    @property
    def idle(self) -> bool:
        return self._flusher is None

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._execute(batch, retry_noscript=True)
        finally:
            self._flusher = None

    async def _execute(self, batch: list[_Call], retry_noscript: bool) -> None:
        pipe = self._redis.pipeline(transaction=False)
        positions = []  # index of each call's own reply in the pipeline's replies
        for call in batch:
            if call.asking:
                pipe.execute_command("ASKING")
            positions.append(len(pipe.command_stack))
            pipe.execute_command(*call.command)
        durability = self._durability if any(call.durable for call in batch) else None
        if durability is not None:
            pipe.execute_command("WAIT", durability.replicas, durability.timeout_ms)
        try:
            # Connecting is separate from sending: a failure here means the
            # batch never left, so callers may say "not stored".
            pipe.connection = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            _fail(batch, exc if isinstance(exc, Exception) else RedisConnectionError("cancelled"))
            await pipe.reset()  # type: ignore[no-untyped-call]
            if not isinstance(exc, Exception):
                raise
            return
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # sent, then no (complete) answer (or cancelled): it may have run
            unknown = WriteOutcomeUnknown(str(exc) or type(exc).__name__)
            unknown.__cause__ = exc
            _fail(batch, unknown)
            if not isinstance(exc, Exception):
                raise
            return
        replicated = True
        if durability is not None:
            confirmed = results[-1]
            replicated = isinstance(confirmed, int) and confirmed >= durability.replicas
        missing = []
        for call, position in zip(batch, positions, strict=False):
            result = results[position]
            if call.future.done():
                continue
            if isinstance(result, NoScriptError) and retry_noscript:
                missing.append(call)  # Redis restarted (or a replica was promoted) without the scripts
            elif isinstance(result, Exception):
                call.future.set_exception(result)
            elif call.durable and not replicated:
                call.future.set_exception(NotReplicated("no replica confirmed the write in time"))
            else:
                call.future.set_result(result)
        if missing:
            try:
                await self._load_scripts(self._redis)
            except Exception as exc:
                for call in missing:
                    call.future.set_exception(exc)
                return
            await self._execute(missing, retry_noscript=False)


def _fail(batch: list[_Call], exc: Exception) -> None:
    for call in batch:
        if not call.future.done():
            call.future.set_exception(exc)
