"""The node driving its room cores over the in-memory broker, with faults
injected into the broker: failed reads are retried under supervision, lag is
measured at delivery, reused offsets give the room a new epoch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from node_doubles import Socket, connect

from switchboard.protocol import frames
from switchboard.roomlog import Snapshot
from switchboard_gateway.broker.base import BrokerEvents
from switchboard_gateway.broker.memory import MemoryBroker, MemoryHub
from switchboard_gateway.connection import Connection
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.node import Node
from switchboard_gateway.settings import Settings

SECRET = "node-test-secret-0123456789abcdef-xyz"
ROOM = "r"


class _Filter:
    """BrokerEvents between the broker and the node that can lose live messages."""

    def __init__(self, events: BrokerEvents, lose: set[int]) -> None:
        self.events = events
        self.lose = lose

    def on_message(self, room: str, offset: int, epoch: str, ts: int, frame: str) -> None:
        if offset in self.lose:
            self.lose.discard(offset)
            return
        self.events.on_message(room, offset, epoch, ts, frame)

    def on_ephemeral(self, room: str, frame: str) -> None:
        self.events.on_ephemeral(room, frame)

    def on_resubscribed(self) -> None:
        self.events.on_resubscribed()

    def on_availability(self, available: bool) -> None:
        self.events.on_availability(available)


class FaultyBroker(MemoryBroker):
    """A MemoryBroker whose pub/sub loses the offsets in ``lose`` and whose
    next reads raise the exceptions in ``read_errors``."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.lose: set[int] = set()
        self.read_errors: list[Exception] = []

    async def start(self, events: BrokerEvents) -> None:
        await super().start(_Filter(events, self.lose))

    async def read_after(self, room: str, offset: int, count: int) -> Snapshot:
        if self.read_errors:
            raise self.read_errors.pop(0)
        return await super().read_after(room, offset, count)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    settings = Settings.from_env(
        {"REDIS_URL": "memory://", "JWT_SECRET": SECRET, "NODE_ID": "n1", "POSITION_CHECK_INTERVAL": "60"}
    )
    hub = MemoryHub(history_size=100, idempotency_window_s=120, presence_entry_lifetime_s=15, presence_events_max=200)
    node = Node(settings, FaultyBroker(hub), Metrics())
    await node.start()
    yield node
    await node.stop()


def broker_of(node: Node) -> FaultyBroker:
    assert isinstance(node.broker, FaultyBroker)
    return node.broker


async def member(node: Node, user: str = "alice") -> tuple[Connection, Socket]:
    socket = connect(node, user)
    assert socket.conn is not None
    await node.join(socket.conn, frames.Join(room=ROOM))
    assert socket.of("joined")
    return socket.conn, socket


async def publish(node: Node, count: int, text: str = "m") -> None:
    for n in range(count):
        await node.publish(frames.User("pub", "pub"), ROOM, f"{text}{n}", None)


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_failed_catch_up_read_is_logged_counted_and_retried(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 8: one ValueError from a catch-up read left the room filling
    forever: every later message went to an unbounded backlog, none was
    delivered, and the only trace was "Task exception was never retrieved"."""
    _, socket = await member(node)
    broker = broker_of(node)
    broker.lose.add(2)  # a gap: the room catches up from history ...
    broker.read_errors.append(ValueError("a bug in a read"))  # ... and that read fails
    with caplog.at_level(logging.DEBUG, logger="switchboard.tasks"):
        await publish(node, 22)
        await socket.until(lambda: len(socket.of("message")) >= 22)
    assert socket.offsets() == list(range(1, 23))
    assert sample(node, "switchboard_task_failures_total", task="catch_up") == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ValueError)
    assert any("recovered" in r.getMessage() for r in caplog.records)


async def test_repeated_failures_back_off_and_log_once(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    _, socket = await member(node)
    broker = broker_of(node)
    broker.lose.add(1)
    broker.read_errors.extend(ValueError(f"failure {n}") for n in range(4))
    with caplog.at_level(logging.DEBUG, logger="switchboard.tasks"):
        await publish(node, 3)
        await socket.until(lambda: socket.offsets() == [1, 2, 3])
    assert sample(node, "switchboard_task_failures_total", task="catch_up") == 4
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


async def test_lag_is_observed_at_delivery_also_for_gap_fills(node: Node) -> None:
    _, socket = await member(node)
    broker_of(node).lose.update({2, 3})
    await publish(node, 5)
    await socket.until(lambda: socket.offsets() == [1, 2, 3, 4, 5])
    # 2 and 3 came from history, 4 and 5 from the backlog behind them: all measured.
    assert sample(node, "switchboard_delivery_lag_seconds_count") == 5
    assert sample(node, "switchboard_gap_fills_total") == 1


async def test_reused_offsets_give_the_room_a_new_epoch(node: Node) -> None:
    _, socket = await member(node)
    await publish(node, 3)
    await socket.until(lambda: socket.offsets() == [1, 2, 3])
    old_epoch = socket.of("message")[0]["epoch"]
    # A failover loses the newest two writes: offsets 2 and 3 will be reused.
    state = broker_of(node).hub.rooms[ROOM]
    state.top = 1
    while state.history and state.history[-1][0] > 1:
        state.history.pop()
    # Published through a gateway that had heard of nothing: stored as offset 2 again, other content.
    body = frames.MessageBody(frames.User("pub", "pub"), "after the failover0", 0)
    await broker_of(node).publish(ROOM, body, None)
    await socket.until(lambda: bool(socket.of("reset")))
    reset = socket.of("reset")[0]
    assert reset["epoch"] != old_epoch and reset["offset"] == 0
    assert sample(node, "switchboard_offset_reuses_total") == 1
    await publish(node, 1, text="new epoch")
    await socket.until(lambda: socket.frames[-1]["type"] == "message")
    last = socket.frames[-1]
    assert (last["epoch"], last["offset"], last["text"]) == (reset["epoch"], 1, "new epoch0")
    assert socket.offsets() == [1, 2, 3, 1]  # the reused offset 2 was never delivered


async def test_a_publish_through_a_node_that_heard_of_lost_writes_opens_a_new_epoch(node: Node) -> None:
    """The publisher's own gateway knows what it heard: its next publish
    renews the epoch, whatever the members' checks have seen so far."""
    _, socket = await member(node)
    await publish(node, 3)
    await socket.until(lambda: socket.offsets() == [1, 2, 3])
    old_epoch = socket.of("message")[0]["epoch"]
    state = broker_of(node).hub.rooms[ROOM]
    state.top = 1  # a failover lost offsets 2 and 3
    await publish(node, 1, text="after the failover")
    await socket.until(lambda: bool(socket.of("reset")))
    reset = socket.of("reset")[0]
    assert reset["epoch"] != old_epoch
    await socket.until(lambda: socket.frames[-1]["type"] == "message")
    last = socket.frames[-1]
    assert (last["epoch"], last["offset"], last["text"]) == (reset["epoch"], 1, "after the failover0")
    assert socket.offsets() == [1, 2, 3, 1]
