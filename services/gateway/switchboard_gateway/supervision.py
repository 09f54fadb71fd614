"""Background tasks that cannot fail silently.

Every task the gateway runs in the background goes through a ``Supervisor``:

- it holds a reference to the task (the event loop keeps only weak ones, and
  an unreferenced task can vanish mid-flight);
- a failure is counted in ``switchboard_task_failures_total{task}`` every
  time, and logged with its traceback once per *streak*: repeats of a failure
  are logged at debug level until the same job succeeds again, which is
  logged too. An outage therefore costs a few log lines, not one per retry;
- ``stop`` cancels every task and waits for them.

Retrying is the caller's: periodic jobs run again at their next tick, and a
room's catch-up retries with ``Backoff``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("switchboard.tasks")


_detached: set[asyncio.Task[None]] = set()


def run_detached(task: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """For code that runs before a ``Supervisor`` is at hand: hold the task and
    log its failure (uncounted)."""
    running = asyncio.get_running_loop().create_task(coro, name=task)
    _detached.add(running)

    def done(finished: asyncio.Task[None]) -> None:
        _detached.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.error("background task %s failed", task, exc_info=finished.exception())

    running.add_done_callback(done)
    return running


class Backoff:
    """Capped exponential backoff with jitter: ``first``, 2x, 4x ... up to
    ``cap`` seconds, each delay scaled by a random factor in [0.5, 1)."""

    def __init__(self, first: float = 0.1, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.first = first
        self.cap = cap
        self._next = first
        self._random = (rng or random.Random()).random

    def next(self) -> float:
        delay = self._next * (0.5 + self._random() / 2)
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class Supervisor:
    def __init__(self, failures: Counter) -> None:
        self._failures = failures
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing: dict[tuple[str, str], int] = {}  # (task, key) -> failures in the current streak

    @property
    def running(self) -> int:
        return len(self._tasks)

    # --- reporting -------------------------------------------------------------

    def failed(self, task: str, exc: BaseException, key: str = "") -> None:
        """Count a failure of `task` (`key` tells instances apart, e.g. a
        room: each has its own streak); log it if it starts a streak."""
        self._failures.labels(task=task).inc()
        streak = (task, key)
        count = self._failing.get(streak, 0) + 1
        self._failing[streak] = count
        where = f"{task} ({key})" if key else task
        if count == 1:
            log.error("background task %s failed; retrying", where, exc_info=exc)
        else:
            log.debug("background task %s failed again (%d in a row): %r", where, count, exc)

    def succeeded(self, task: str, key: str = "") -> None:
        count = self._failing.pop((task, key), 0)
        if count:
            log.warning("background task %s%s recovered after %d failures", task, f" ({key})" if key else "", count)

    def forget(self, task: str, key: str) -> None:
        """The instance is gone (e.g. the room was released) mid-streak."""
        self._failing.pop((task, key), None)

    # --- running -----------------------------------------------------------------

    def spawn(self, task: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` once in the background; an exception is reported."""
        running = asyncio.get_running_loop().create_task(coro, name=task)
        self._tasks.add(running)
        running.add_done_callback(self._done)
        return running

    def _done(self, running: asyncio.Task[None]) -> None:
        self._tasks.discard(running)
        if running.cancelled():
            return
        exc = running.exception()
        if exc is not None:
            self.failed(running.get_name(), exc)

    def every(self, task: str, interval: float, job: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `job` every `interval` seconds until stopped; a failure is
        reported and the job runs again at the next tick."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await job()
                except Exception as exc:
                    self.failed(task, exc)
                else:
                    self.succeeded(task)

        return self.spawn(task, loop())

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for running in tasks:
            running.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
