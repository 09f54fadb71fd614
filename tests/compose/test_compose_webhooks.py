"""The webhooks override for real: the documented command

    docker compose -f docker-compose.yml -f deploy/compose.webhooks.yml \\
        --env-file deploy/offline.env up -d --build --scale gateway=2

runs the gateways with EVENTS_MAXLEN set, a webhook dispatcher and the
example receiver (docs/examples/webhook_receiver.py, SQLite on a volume).
Checked from outside, through the load balancer and the receiver's port: a
message published on one gateway is stored by the application once, and the
room's occupancy and membership events reach it too. ``down -v`` cleans up.

Skips with the reason when no Docker engine runs (see test_compose_stack.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from compose_harness import ROOT, Stack, connect, wait_ready

from switchboard.client import make_token
from switchboard_harness import free_port

GATEWAYS = 2
JWT_SECRET = "compose-webhooks-secret-" + uuid.uuid4().hex

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def stack(compose_env_file: list[str]) -> Iterator[Stack]:
    project = f"sbhooks{uuid.uuid4().hex[:8]}"
    port, receiver_port = free_port(), free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_PORT": str(port),
        "RECEIVER_PORT": str(receiver_port),
        "JWT_SECRET": JWT_SECRET,
        "GATEWAY_IMAGE": "switchboard-gateway:compose-test",
    }
    s = Stack(project, port, env)
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "deploy" / "compose.webhooks.yml")]
    s.compose = ["docker", "compose", "-p", project, *files, *compose_env_file]
    try:
        s.dc("up", "-d", "--build", "--scale", f"gateway={GATEWAYS}", timeout=900)
        wait_ready(s, GATEWAYS, deadline=time.monotonic() + 120)
        yield s
    finally:
        s.save_logs()
        s.down()


def _receiver(s: Stack) -> str:
    return f"http://127.0.0.1:{s.env['RECEIVER_PORT']}"


def _stored_events(s: Stack) -> list[dict[str, Any]]:
    """Every event the example receiver stored (its `events` table)."""
    script = (
        "import json, sqlite3; c = sqlite3.connect('/data/chat.sqlite3');"
        "print(json.dumps([json.loads(r[0]) for r in c.execute('SELECT body FROM events')]))"
    )
    return json.loads(s.dc("exec", "-T", "receiver", "python", "-c", script))  # type: ignore[no-any-return]


def test_the_gateways_events_reach_the_example_receiver(stack: Stack) -> None:
    config = stack.dc("config", "--format", "json")
    gateway_env = json.loads(config)["services"]["gateway"]["environment"]
    assert int(gateway_env["EVENTS_MAXLEN"]) > 0  # the override turns the stream on

    room = f"hooks-{uuid.uuid4().hex[:8]}"
    text = f"kept by the application {uuid.uuid4().hex[:6]}"

    async def chat() -> dict[str, Any]:
        deadline = time.monotonic() + 60
        client = await connect(stack, make_token(JWT_SECRET, "ann", name="Ann"), deadline)
        try:
            assert (await client.join(room))["type"] == "joined"
            ack = await client.publish(room, text, client_msg_id=uuid.uuid4().hex)
            assert ack["type"] == "ack", ack
            await client.leave(room)
            return ack
        finally:
            await client.close()

    ack = asyncio.run(chat())
    deadline = time.monotonic() + 60
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        reply = httpx.get(f"{_receiver(stack)}/messages", params={"room": room}, timeout=5)
        messages = reply.json()["messages"]
        if messages:
            break
        time.sleep(0.5)
    assert [(m["offset"], m["text"], m["user_id"]) for m in messages] == [(ack["offset"], text, "ann")]

    kinds: list[str] = []
    while time.monotonic() < deadline:
        kinds = [e["type"] for e in _stored_events(stack) if e.get("room") == room]
        if "room_vacated" in kinds:
            break
        time.sleep(0.5)
    assert sorted(kinds) == sorted(["room_occupied", "user_joined", "message", "user_left", "room_vacated"])
