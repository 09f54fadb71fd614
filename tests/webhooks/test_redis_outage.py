"""Redis away, Redis emptied, events trimmed before delivery: the
dispatcher waits, recovers by itself, and counts what it could not send."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from switchboard_harness import RedisProcess, free_port
from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, EventsWriter, ids_of, wait_until

# The dispatcher on one redis-server; test_cluster.py covers a Redis Cluster.
pytestmark = pytest.mark.single_redis


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """Not started: the test decides when Redis is there."""
    server = RedisProcess(port=free_port())
    yield server
    server.cleanup()


def test_the_dispatcher_waits_for_redis_and_survives_losing_it(
    private_redis: RedisProcess, start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, redis_prefix: str
) -> None:
    dispatcher = start_dispatcher(REDIS_URL=private_redis.url)  # nothing listens there yet
    assert dispatcher.metric("switchboard_webhook_redis_available") == 0
    private_redis.start()
    events = EventsWriter(private_redis.url, redis_prefix)
    try:
        events.many(5)
        first = receiver.wait_accepted(5)
        assert sorted(ids_of(first)) == sorted(events.event_ids())
        wait_until(lambda: dispatcher.metric("switchboard_webhook_redis_available") == 1, 10, "redis available")

        # Redis restarts empty (no persistence): stream and group are gone.
        private_redis.stop()
        private_redis.start()
        events.many(3)
        receiver.wait_accepted(8, timeout=30)
        assert sorted(ids_of(receiver.accepted_events()[5:])) == sorted(events.event_ids())
    finally:
        events.close()


def test_events_trimmed_before_delivery_are_counted_as_lost(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.hold()
    first = start_dispatcher(WEBHOOK_CONCURRENCY="1", WEBHOOK_BATCH_MAX="10")
    events.many(10)
    receiver.wait_for(lambda r: r.held == 1, 10, "a batch in flight")
    first.signal(signal.SIGKILL)
    first.wait(10)
    receiver.release(status=503)
    # The gateways keep writing into a short stream: the 10 pending entries
    # are trimmed away before anyone delivered them.
    events.maxlen = 10
    for _ in range(5):
        events.many(100)
    assert events.pending() == 10 and events.redis.xlen(events.stream) < 300

    second = start_dispatcher()
    wait_until(lambda: second.metric("switchboard_webhook_events_lost") == 10, 15, "lost metric")
    wait_until(lambda: events.pending() == 0, 15, "nothing left pending")
    assert "trimmed before delivery" in second.output()
