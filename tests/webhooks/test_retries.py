"""At least once: a failing receiver gets every event once it recovers;
after WEBHOOK_MAX_ATTEMPTS failed attempts an event is dead-lettered."""

from __future__ import annotations

import json
from collections import Counter

from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, EventsWriter, ids_of, wait_until


def test_a_receiver_failing_the_first_attempts_gets_every_event(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.fail_next = 3  # 503, 503, 503, then fine
    dispatcher = start_dispatcher()
    events.many(30)

    accepted = receiver.wait_accepted(30)
    assert sorted(ids_of(accepted)) == sorted(events.event_ids())
    assert Counter(ids_of(accepted)).most_common(1)[0][1] == 1  # each accepted once
    assert [d.status for d in receiver.deliveries[:3]] == [503, 503, 503]
    assert all(d.signature_ok for d in receiver.deliveries)  # every retry re-signed
    wait_until(lambda: events.pending() == 0, 10, "all acknowledged")
    metrics = dispatcher.metrics()
    assert metrics["switchboard_webhook_events_retried_total"] >= 3
    assert metrics['switchboard_webhook_requests_total{outcome="5xx"}'] == 3
    assert metrics["switchboard_webhook_events_dead_lettered_total"] == 0


def test_a_timeout_is_retried(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.hold()  # requests wait unanswered
    dispatcher = start_dispatcher(WEBHOOK_TIMEOUT="0.5", WEBHOOK_CLAIM_IDLE="2")
    events.room_event("user_joined", "lobby")
    # The first attempt times out, the retry arrives while it is still held.
    receiver.wait_for(lambda r: r.held >= 2, 10, "a retry after the timeout")
    receiver.release()
    accepted = receiver.wait_accepted(1)
    assert ids_of(accepted)[0] == events.event_ids()[0]
    wait_until(lambda: events.pending() == 0, 10, "acknowledged")
    assert dispatcher.metrics()['switchboard_webhook_requests_total{outcome="timeout"}'] >= 1


def test_dead_letter_after_max_attempts(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.fail_always = True
    receiver.fail_status = 500
    dispatcher = start_dispatcher(WEBHOOK_MAX_ATTEMPTS="3")
    events.many(5)

    wait_until(lambda: len(events.dead_letters()) == 5, 15, "five dead letters")
    wait_until(lambda: dispatcher.metric("switchboard_webhook_events_dead_lettered") == 5, 10, "dead metric")
    # Three attempts in all, the first included, then no more.
    attempts = Counter(e["id"] for d in receiver.deliveries for e in d.events)
    assert set(attempts) == set(events.event_ids()) and set(attempts.values()) == {3}
    dead = events.dead_letters()
    assert {d["attempts"] for d in dead} == {"3"} and {d["reason"] for d in dead} == {"HTTP 500"}
    assert sorted(json.loads(d["e"])["id"] for d in dead) == sorted(events.event_ids())
    assert sorted(d["entry"] for d in dead) == sorted(events.entry_ids())
    wait_until(lambda: events.pending() == 0, 10, "acknowledged after dead-lettering")
    assert dispatcher.metric("switchboard_webhook_events_delivered") == 0
