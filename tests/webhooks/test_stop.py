"""SIGTERM: the POST in flight finishes and is acknowledged; a batch
waiting to be retried is released at once for another dispatcher; exit 0."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from switchboard.backplane.events import WEBHOOK_GROUP
from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, EventsWriter, ids_of, wait_until


def test_sigterm_when_idle_exits_0(start_dispatcher: DispatcherFactory) -> None:
    dispatcher = start_dispatcher()
    started = time.monotonic()
    dispatcher.signal(signal.SIGTERM)
    assert dispatcher.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "stopped" in dispatcher.output()


def test_sigterm_lets_the_post_in_flight_finish(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.hold()
    dispatcher = start_dispatcher(WEBHOOK_TIMEOUT="10", WEBHOOK_CLAIM_IDLE="20")
    events.many(10)
    receiver.wait_for(lambda r: r.held == 1, 10, "a POST in flight")
    dispatcher.signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        dispatcher.wait(0.5)  # still waiting for the receiver's answer
    receiver.release()
    assert dispatcher.wait(10) == 0
    assert sorted(ids_of(receiver.accepted_events())) == sorted(events.event_ids())
    assert events.pending() == 0  # acknowledged before exiting


def test_sigterm_releases_a_batch_waiting_for_its_retry(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.fail_always = True
    first = start_dispatcher(WEBHOOK_BACKOFF_BASE="20", WEBHOOK_BACKOFF_MAX="20", WEBHOOK_CLAIM_IDLE="30")
    events.many(5)
    receiver.wait_for(lambda r: len(r.deliveries) == 1, 10, "a failed attempt")
    started = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait(10) == 0
    assert time.monotonic() - started < 5  # did not sit out the 10-20 s backoff

    # Released: still pending, one attempt counted, and idle past
    # WEBHOOK_CLAIM_IDLE so that the next claim round takes them.
    rows = events.redis.xpending_range(events.stream, WEBHOOK_GROUP, "-", "+", 10)
    assert len(rows) == 5
    assert {r["times_delivered"] for r in rows} == {1}
    assert min(r["time_since_delivered"] for r in rows) >= 30_000

    receiver.fail_always = False
    start_dispatcher()
    accepted = receiver.wait_accepted(5)
    assert sorted(ids_of(accepted)) == sorted(events.event_ids())
    wait_until(lambda: events.pending() == 0, 10, "acknowledged")
