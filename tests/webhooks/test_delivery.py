"""Events written as the gateway writes them reach the receiver, signed,
in batches of at most 100, each exactly once when nothing fails."""

from __future__ import annotations

import time

import msgspec

from switchboard.protocol.events import MessageEvent, RoomOccupied, RoomVacated, UserJoined, UserLeft, decode_batch
from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, EventsWriter, ids_of, wait_until


def test_every_event_type_arrives_signed(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    dispatcher = start_dispatcher()
    events.room_event("room_occupied", "lobby")
    events.room_event("user_joined", "lobby")
    events.message("lobby", 1, 'hello "world" \u00e9 \U0001f44b')
    events.room_event("user_left", "lobby")
    events.room_event("room_vacated", "lobby")

    accepted = receiver.wait_accepted(5)
    assert len(accepted) == 5
    for delivery in receiver.deliveries:
        assert delivery.signature_ok
        assert delivery.timestamp is not None and abs(delivery.timestamp - time.time()) < 60
    # The ids are the stream entry ids, in stream order within a batch.
    assert sorted(ids_of(accepted)) == sorted(events.event_ids())
    typed = [e for d in receiver.deliveries for e in decode_batch(d.body)]
    assert [type(e) for e in typed] == [RoomOccupied, UserJoined, MessageEvent, UserLeft, RoomVacated]
    message = typed[2]
    assert isinstance(message, MessageEvent)
    assert (message.room, message.offset, message.epoch, message.msg_id) == ("lobby", 1, "ep01", "ep01-1")
    assert (message.user.id, message.user.name, message.text, message.kind) == ("u1", "Ann", 'hello "world" é 👋', "message")
    assert all(e.user.id == "u1" for e in typed)
    wait_until(lambda: dispatcher.metric("switchboard_webhook_events_delivered") == 5, 10, "delivered metric")
    wait_until(lambda: events.pending() == 0, 10, "all acknowledged")


def test_batches_hold_at_most_100_events(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    events.many(250)  # written before the dispatcher starts: the group reads from the beginning
    start_dispatcher()
    accepted = receiver.wait_accepted(250)
    assert sorted(ids_of(accepted)) == sorted(events.event_ids())
    assert len(set(ids_of(accepted))) == 250
    assert max(len(d.events) for d in receiver.deliveries) == 100
    assert all(d.accepted for d in receiver.deliveries)


def test_a_malformed_entry_is_dead_lettered_and_the_rest_delivered(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    dispatcher = start_dispatcher()
    events.room_event("user_joined", "lobby")
    bad_no_field = events.raw({"x": "1"})
    bad_json = events.raw({"e": "{not json"})
    events.room_event("user_left", "lobby")

    accepted = receiver.wait_accepted(2)
    wait_until(lambda: len(events.dead_letters()) == 2, 10, "two dead letters")
    assert [e["type"] for e in accepted] == ["user_joined", "user_left"]
    dead = {d["entry"]: d for d in events.dead_letters()}
    assert set(dead) == {bad_no_field, bad_json}
    assert dead[bad_no_field]["reason"] == "no field 'e'"
    assert dead[bad_json]["reason"].startswith("not an event") and dead[bad_json]["e"] == "{not json"
    assert dead[bad_json]["stream"] == events.stream
    wait_until(lambda: dispatcher.metric("switchboard_webhook_events_dead_lettered") == 2, 10, "dead metric")
    wait_until(lambda: events.pending() == 0, 10, "all acknowledged")
    # Never shown to the receiver.
    assert all(msgspec.json.decode(d.body) for d in receiver.deliveries)
    assert sum(len(d.events) for d in receiver.deliveries) == 2


def test_lag_and_pending_gauges(
    start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, events: EventsWriter
) -> None:
    receiver.hold()
    dispatcher = start_dispatcher(WEBHOOK_CONCURRENCY="1", WEBHOOK_BATCH_MAX="10")
    events.many(50)
    receiver.wait_for(lambda r: r.held == 1, 10, "one batch in flight")
    # 10 read and unacknowledged, 40 not read yet by the group.
    wait_until(
        lambda: (dispatcher.metric("switchboard_webhook_pending_events"),
                 dispatcher.metric("switchboard_webhook_lag_events")) == (10, 40),
        10, "pending 10, lag 40",
    )
    assert dispatcher.metric("switchboard_webhook_batches_in_flight") == 1
    receiver.release()
    receiver.wait_accepted(50)
    wait_until(
        lambda: (dispatcher.metric("switchboard_webhook_pending_events"),
                 dispatcher.metric("switchboard_webhook_lag_events")) == (0, 0),
        10, "pending 0, lag 0",
    )
