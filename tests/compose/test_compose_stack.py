"""The shipped stack for real: docker-compose.yml with 4 gateways behind HAProxy.

Runs ``deploy/prepare-offline.sh`` (idempotent: seconds when everything is
cached) so no registry is needed, then

    docker compose -p <unique> --env-file deploy/offline.env up -d --build --scale gateway=4

and checks, through the load balancer only: connections spread over the
gateways, a message reaches clients on every gateway, and stopping one gateway
(graceful drain) costs its clients nothing: they see 1012, reconnect through
the LB to another gateway and recover exactly the messages published meanwhile
with ``join(since=...)``. Finally ``down -v`` leaves nothing of the project.

Skips with the reason when no Docker engine runs. Set
``SWITCHBOARD_COMPOSE_ONLINE=1`` on a host that can pull the default public
images to skip the offline preparation and use them instead.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from compose_harness import ROOT, Stack, connect, wait_ready

from switchboard.client import Client, ClientClosed, guest_token, make_token
from switchboard_harness import free_port

GATEWAYS = 4
CLIENTS = 40
JWT_SECRET = "compose-test-secret-" + uuid.uuid4().hex  # > 32 bytes
DRAIN_NOTICE = 2.0
DRAIN_TIMEOUT = 10.0

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def stack(compose_env_file: list[str]) -> Iterator[Stack]:
    project = f"sbtest{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_PORT": str(port),
        "JWT_SECRET": JWT_SECRET,
        "DRAIN_NOTICE": str(DRAIN_NOTICE),
        "DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
        "GATEWAY_IMAGE": "switchboard-gateway:compose-test",
    }
    s = Stack(project, port, env)
    s.compose = ["docker", "compose", "-p", project, "-f", str(ROOT / "docker-compose.yml"), *compose_env_file]
    try:
        started = time.monotonic()
        s.dc("up", "-d", "--build", "--scale", f"gateway={GATEWAYS}", timeout=900)
        print(f"compose up --build: {time.monotonic() - started:.1f} s")
        wait_ready(s, GATEWAYS, deadline=time.monotonic() + 120)
        print(f"stack ready after {time.monotonic() - started:.1f} s")
        yield s
    finally:
        s.save_logs()
        s.down()


async def _drain_messages(c: Client, room: str) -> list[dict[str, Any]]:
    """Messages already queued on a (possibly closed) client."""
    out = []
    while True:
        try:
            frame = await c.recv(timeout=0.2)
        except (ClientClosed, TimeoutError):
            return out
        if frame.get("type") == "message" and frame.get("room") == room:
            out.append(frame)


async def test_guest_login_through_lb(stack: Stack) -> None:
    token = await guest_token(stack.http, "compose")
    async with await Client.connect(stack.ws, token) as c:
        assert c.welcome["user"]["id"].startswith("guest:"), c.welcome


async def test_spread_fanout_and_drain_recovery(stack: Stack) -> None:
    room = f"deploy-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 60
    tokens = [make_token(JWT_SECRET, f"user{i}", name=f"User {i}") for i in range(CLIENTS)]
    clients = list(await asyncio.gather(*(connect(stack, t, deadline) for t in tokens)))
    try:
        # 1. HAProxy spreads the sockets over the gateways (leastconn).
        nodes = Counter(c.node for c in clients)
        print(f"sockets per gateway: {dict(nodes)}")
        assert len(nodes) >= 3, f"40 sockets landed on too few gateways: {dict(nodes)}"

        # 2. One publish reaches every member on every gateway.
        joined = await asyncio.gather(*(c.join(room) for c in clients))
        assert all(j["type"] == "joined" for j in joined), joined[:3]
        ack = await clients[0].publish(room, "hello everyone", client_msg_id=uuid.uuid4().hex)
        assert ack["type"] == "ack", ack
        first = await asyncio.gather(*(c.recv_type("message", timeout=15) for c in clients))
        assert {(m["room"], m["offset"], m["text"]) for m in first} == {(room, ack["offset"], "hello everyone")}
        epoch = ack["epoch"]

        # 3. Stop (drain) one gateway that holds clients, not the publisher's.
        publisher = clients[0]
        victim_node = next(n for n, _ in nodes.most_common() if n != publisher.node)
        victims = [c for c in clients if c.node == victim_node]
        survivors = [c for c in clients if c.node != victim_node]
        container = next(
            (cid for cid in stack.gateway_ids() if cid.startswith(victim_node) or victim_node.startswith(cid[:12])),
            None,
        )
        if container is None:  # NODE_ID is not the hostname: match on Config.Hostname
            by_host = {c["Config"]["Hostname"]: c["Id"] for c in stack.inspect(stack.gateway_ids())}
            container = by_host.get(victim_node)
        assert container, f"no gateway container for node {victim_node!r}"

        stop_started = time.monotonic()
        stopper = await asyncio.create_subprocess_exec(
            "docker", "stop", "--time", "30", container,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        # Its clients see the server close the socket: 1012 (service restart).
        closes = await asyncio.gather(*(c.wait_closed(timeout=DRAIN_NOTICE + DRAIN_TIMEOUT + 10) for c in victims))
        assert {code for code, _ in closes} == {1012}, f"close codes of the drained gateway: {closes}"
        # What each victim had received before the close: it resumes from there.
        seen: dict[int, int] = {}
        for i, c in enumerate(victims):
            got = await _drain_messages(c, room)
            seen[i] = max([ack["offset"], *(m["offset"] for m in got)])

        # Published while the victims are disconnected (through a survivor).
        meanwhile = []
        for k in range(5):
            a = await publisher.publish(room, f"while you were away {k}", client_msg_id=uuid.uuid4().hex)
            assert a["type"] == "ack" and a["epoch"] == epoch, a
            meanwhile.append(a["offset"])

        _, err = await asyncio.wait_for(stopper.communicate(), timeout=DRAIN_NOTICE + DRAIN_TIMEOUT + 30)
        assert stopper.returncode == 0, err
        stopped_after = time.monotonic() - stop_started
        state = stack.inspect([container])[0]["State"]
        assert state["Running"] is False
        assert state["ExitCode"] == 0, f"drained gateway exited {state['ExitCode']} (137 = killed)"
        assert stopped_after < DRAIN_NOTICE + DRAIN_TIMEOUT + 5, f"drain took {stopped_after:.1f} s"
        print(f"stopped {victim_node} ({len(victims)} clients) in {stopped_after:.1f} s, exit 0")

        # Survivors got everything live, in order.
        for c in survivors:
            got = [await c.recv_type("message", timeout=15) for _ in meanwhile]
            assert [m["offset"] for m in got] == meanwhile

        # 4. Victims reconnect through the LB (to another gateway) and recover
        #    exactly the messages published meanwhile.
        deadline = time.monotonic() + 60
        reconnected = list(
            await asyncio.gather(*(connect(stack, tokens[clients.index(c)], deadline) for c in victims))
        )
        try:
            assert victim_node not in {c.node for c in reconnected}, "LB routed to the stopped gateway"
            print(f"reconnected to {dict(Counter(c.node for c in reconnected))}")
            for i, c in enumerate(reconnected):
                j = await c.join(room, since={"offset": seen[i], "epoch": epoch})
                assert j["type"] == "joined" and j["recovered"] is True, j
                expected = [o for o in [ack["offset"], *meanwhile] if o > seen[i]]
                assert [m["offset"] for m in j["messages"]] == expected, (seen[i], j["messages"])
                assert all(m["epoch"] == epoch for m in j["messages"])
        finally:
            await asyncio.gather(*(c.close() for c in reconnected), return_exceptions=True)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def test_down_removes_everything(stack: Stack) -> None:
    assert any(stack.leftovers().values()), "the stack should exist before down"
    stack.down()
    assert stack.leftovers() == {"container": [], "volume": [], "network": []}
