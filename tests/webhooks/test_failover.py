"""Dispatchers share the work, and one killed mid-batch loses nothing."""

from __future__ import annotations

import signal
from collections import Counter

from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, EventsWriter, ids_of, wait_until


def test_a_dispatcher_killed_mid_batch_loses_nothing(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.hold()
    first = start_dispatcher(WEBHOOK_CONCURRENCY="2", WEBHOOK_BATCH_MAX="20")
    events.many(100)
    receiver.wait_for(lambda r: r.held == 2, 10, "two batches in flight")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert events.pending() == 40  # its two batches, unacknowledged
    receiver.release(status=503)  # what the dead dispatcher was sending never counts

    second = start_dispatcher(WEBHOOK_BATCH_MAX="20")
    accepted = receiver.wait_accepted(100, timeout=30)
    assert sorted(set(ids_of(accepted))) == sorted(events.event_ids())
    wait_until(lambda: events.pending() == 0, 10, "all acknowledged")
    # The 40 held by the dead one were claimed after WEBHOOK_CLAIM_IDLE.
    wait_until(lambda: second.metric("switchboard_webhook_events_claimed") == 40, 10, "claimed metric")
    wait_until(lambda: second.metric("switchboard_webhook_events_delivered") == 100, 10, "delivered metric")


def test_two_dispatchers_share_the_work_without_duplicates(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.hold()
    # No retries or take-overs here (the tests above cover them): a batch held
    # longer than the POST timeout or the claim idle time on a loaded machine
    # would be sent twice, which at-least-once allows but this count does not.
    settings = {"WEBHOOK_CONCURRENCY": "1", "WEBHOOK_BATCH_MAX": "10", "WEBHOOK_TIMEOUT": "20",
                "WEBHOOK_CLAIM_IDLE": "60"}
    one = start_dispatcher(**settings)
    two = start_dispatcher(**settings)
    events.many(200)
    # Each may hold one batch at a time: two held requests are one from each.
    receiver.wait_for(lambda r: r.held == 2, 10, "one batch held by each dispatcher")
    receiver.release()
    accepted = receiver.wait_accepted(200)
    counts = Counter(ids_of(accepted))
    assert sorted(counts) == sorted(events.event_ids()) and set(counts.values()) == {1}
    wait_until(lambda: events.pending() == 0, 10, "all acknowledged")
    # (the counter moves just after the acknowledgement)
    wait_until(lambda: sum(d.metric("switchboard_webhook_events_delivered") for d in (one, two)) == 200, 10,
               "delivered metrics")
    delivered = [d.metric("switchboard_webhook_events_delivered") for d in (one, two)]
    assert min(delivered) >= 10
