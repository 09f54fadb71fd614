"""The dispatcher on a Redis Cluster: one events stream per slot holding
rooms, each in its room's slot; streams on every primary are found and read.

A small private cluster (3 primaries, no replicas) is started here; when the
harness gains a shared cluster launcher, this fixture should use it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from switchboard.backplane import scripts
from switchboard.backplane.events import EventsLayout
from switchboard.backplane.keys import RoomKeys
from switchboard.backplane.slots import key_slot
from switchboard_harness import free_port
from switchboard_harness.receiver import WebhookReceiver

from .conftest import DispatcherFactory, wait_until

# The dispatcher on one redis-server; test_cluster.py covers a Redis Cluster.
pytestmark = pytest.mark.single_redis


@pytest.fixture(scope="module")
def cluster_urls() -> Iterator[list[str]]:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is not installed (apt-get install redis-tools)")
    workdir = tempfile.mkdtemp(prefix="switchboard-cluster-")
    ports = [_cluster_port() for _ in range(3)]
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{p}.conf", "--cluster-node-timeout", "2000",
             "--save", "", "--appendonly", "no", "--dir", workdir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        wait_until(lambda: all(_answers(p) for p in ports), 10, "cluster nodes up")
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        wait_until(lambda: all(_cluster_ok(p) for p in ports), 20, "cluster_state:ok")
        yield [f"redis://127.0.0.1:{p}/0" for p in ports]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free as well."""
    for _ in range(100):
        port = free_port()
        if port + 10000 <= 65535 and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        return bool(info.get("cluster_state") == "ok")
    finally:
        client.close()


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
