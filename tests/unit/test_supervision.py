"""Supervised background tasks: nothing fire-and-forget, nothing silent."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from prometheus_client import CollectorRegistry, Counter

from switchboard_gateway.supervision import Backoff, Supervisor, run_detached


def supervisor() -> tuple[Supervisor, CollectorRegistry]:
    registry = CollectorRegistry()
    failures = Counter("t_task_failures", "test", ["task"], registry=registry)
    return Supervisor(failures), registry


def failures(registry: CollectorRegistry, task: str) -> float:
    return registry.get_sample_value("t_task_failures_total", {"task": task}) or 0.0


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    backoff = Backoff(first=0.1, cap=1.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for delay, base in zip(delays, bases):
        assert base * 0.5 <= delay < base
    backoff.reset()
    assert backoff.next() < 0.1


async def test_a_periodic_job_that_fails_is_counted_logged_once_and_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup, registry = supervisor()
    runs = 0
    recovered = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise ValueError(f"failure {runs}")
        recovered.set()

    with caplog.at_level(logging.DEBUG, logger="switchboard.tasks"):
        sup.every("sweep", 0.001, job)
        await asyncio.wait_for(recovered.wait(), 5)
        await sup.stop()
    assert failures(registry, "sweep") == 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None and "sweep" in errors[0].getMessage()
    assert any("recovered after 3 failures" in r.getMessage() for r in caplog.records)
    assert sup.running == 0


async def test_a_one_shot_task_failure_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    sup, registry = supervisor()

    async def boom() -> None:
        raise KeyError("lost")

    with caplog.at_level(logging.ERROR, logger="switchboard.tasks"):
        task = sup.spawn("heal", boom())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert failures(registry, "heal") == 1
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and isinstance(logged[0], KeyError)
    assert sup.running == 0


async def test_streaks_are_per_key() -> None:
    sup, registry = supervisor()
    sup.failed("catch_up", ValueError(), key="a")
    sup.failed("catch_up", ValueError(), key="b")
    sup.failed("catch_up", ValueError(), key="a")
    assert failures(registry, "catch_up") == 3
    assert sup._failing == {("catch_up", "a"): 2, ("catch_up", "b"): 1}
    sup.succeeded("catch_up", "a")
    sup.forget("catch_up", "b")
    assert sup._failing == {}


async def test_stop_cancels_everything() -> None:
    sup, _ = supervisor()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = sup.spawn("forever", forever())
    sup.every("tick", 3600, forever)
    await started.wait()
    await sup.stop()
    assert task.cancelled() and sup.running == 0


async def test_detached_tasks_are_held_and_their_failure_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("close failed")

    with caplog.at_level(logging.ERROR, logger="switchboard.tasks"):
        task = run_detached("close", boom())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)
