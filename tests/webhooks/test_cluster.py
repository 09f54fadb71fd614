"""The dispatcher on a Redis Cluster: one events stream per slot holding
rooms, each in its room's slot; streams on every primary are found and read.
On the suite's shared cluster (3 primaries + 3 replicas): cluster topology only.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from redis.cluster import RedisCluster

from switchboard.backplane import scripts
from switchboard.backplane.events import EventsLayout
from switchboard.backplane.keys import RoomKeys
from switchboard.backplane.slots import key_slot
from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, wait_until

pytestmark = pytest.mark.cluster_only


@pytest.fixture
def cluster_urls(redis_url: str) -> list[str]:
    return redis_url.split(",")


def _append(client: RedisCluster, layout: EventsLayout, room: str, user: str) -> None:
    event = json.dumps({"type": "user_joined", "room": room, "ts": int(time.time() * 1000),
                        "user": {"id": user, "name": user}})
    client.eval(scripts.APPEND_EVENT.source, 1, layout.stream_for_tag(room), 1000, event)


def test_events_of_rooms_on_every_primary_are_delivered(
    cluster_urls: list[str], start_dispatcher: DispatcherFactory, receiver: WebhookReceiver, redis_prefix: str
) -> None:
    layout = EventsLayout(redis_prefix, cluster=True)
    rooms = [f"room-{i}" for i in range(24)]
    for room in rooms:  # the stream is in the slot of the room's own keys
        assert key_slot(layout.stream_for_tag(room)) == key_slot(RoomKeys(redis_prefix, room).log)
    client = RedisCluster.from_url(cluster_urls[0])
    try:
        for room in rooms[:12]:  # before the dispatcher starts
            _append(client, layout, room, "early")
        dispatcher = start_dispatcher(REDIS_URL=",".join(cluster_urls), WEBHOOK_DISCOVERY_INTERVAL="0.3")
        for room in rooms:  # new streams among them: found by discovery
            _append(client, layout, room, "late")
        accepted = receiver.wait_accepted(36, timeout=30)
        assert Counter((e["room"], e["user"]["id"]) for e in accepted) == Counter(
            [(r, "early") for r in rooms[:12]] + [(r, "late") for r in rooms]
        )
        ids = [e["id"] for e in accepted]
        assert len(set(ids)) == 36
        for event in accepted:  # "<slot>-<entry id>": the slot is the room's
            assert int(event["id"].split("-")[0]) == key_slot(RoomKeys(redis_prefix, event["room"]).log)
        owners = {client.get_node_from_key(layout.stream_for_tag(r)).port for r in rooms}
        assert len(owners) == 3  # the rooms really are spread over the primaries
        wait_until(lambda: dispatcher.metric("switchboard_webhook_streams") == 24, 10, "24 streams read")
        wait_until(lambda: dispatcher.metric("switchboard_webhook_pending_events") == 0, 10, "nothing pending")
    finally:
        client.close()
