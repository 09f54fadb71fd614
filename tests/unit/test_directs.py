"""A new direct room reaches the other user (directs.py, our addition to
protocol §11), on two nodes sharing one in-memory backplane: the peer's
connections on both nodes get ``direct`` once, the list is written for
both users, nobody else hears of it, and recording is throttled per room."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from node_doubles import Socket
from node_doubles import connect as connect_as

from switchboard.backplane.cluster import slot_of
from switchboard.backplane.directs import user_keys
from switchboard.protocol import frames
from switchboard_gateway import control
from switchboard_gateway.broker.memory import MemoryBroker, MemoryHub
from switchboard_gateway.directs import TouchThrottle
from switchboard_gateway.metrics import Metrics
from switchboard_gateway.node import Node
from switchboard_gateway.settings import Settings

SECRET = "directs-test-secret-0123456789abcdef-xyz"
DM = "dm:alice+bob"
ALICE = frames.User("alice", "Alice")


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Node, Node]]:
    hub = MemoryHub(history_size=100, idempotency_window_s=120, presence_entry_lifetime_s=15, presence_events_max=200)
    started = []
    for name in ("n1", "n2"):
        settings = Settings.from_env({"REDIS_URL": "memory://", "JWT_SECRET": SECRET, "NODE_ID": name})
        node = Node(settings, MemoryBroker(hub), Metrics())
        await node.start()
        started.append(node)
    yield started[0], started[1]
    for node in started:
        await node.stop()


def connect(node: Node, user: str, tag: str = "") -> Socket:
    return connect_as(node, user, f"c-{user}-{node.name}{tag}")


def test_a_room_is_recorded_at_most_once_per_interval() -> None:
    throttle = TouchThrottle(interval_s=60)
    assert throttle.due("dm:a+b", 0.0)
    assert not throttle.due("dm:a+b", 59.0)
    assert throttle.due("dm:a+c", 59.0)  # per room
    assert throttle.due("dm:a+b", 60.0)
    throttle.forget("dm:a+b")  # a failed write: the next message tries again
    assert throttle.due("dm:a+b", 61.0)


async def test_the_peer_hears_of_a_new_direct_room_once_on_every_node(nodes: tuple[Node, Node]) -> None:
    n1, n2 = nodes
    bob_here, bob_there, carol = connect(n1, "bob"), connect(n2, "bob"), connect(n2, "carol")
    bob_in_room = connect(n2, "bob", "-in-room")
    assert bob_in_room.conn is not None
    await n2.join(bob_in_room.conn, frames.Join(room=DM))
    await n1.publish(ALICE, DM, "hi bob", None)
    for socket in (bob_here, bob_there):
        await socket.until(lambda socket=socket: bool(socket.of("direct")))
        assert socket.of("direct") == [{"type": "direct", "room": DM, "user": {"id": "alice", "name": "Alice"}}]
    # The other node records the room again (its own throttle), but bob's list
    # has it already: no second notice. A marker command through the control
    # channel, once delivered, shows that everything before it was.
    await n2.publish(ALICE, DM, "again", None)
    marker = connect(n1, "zed")
    marker_command = control.Direct(user="zed", room="dm:marker+zed", peer=frames.User("marker", "m"))
    await n2.broker.publish_control(control.encode(marker_command))
    await marker.until(lambda: bool(marker.of("direct")))
    assert len(bob_here.of("direct")) == len(bob_there.of("direct")) == 1
    assert carol.of("direct") == []
    assert bob_in_room.of("direct") == []  # it has the room: the message itself says enough
    bob_list = await n2.direct_rooms("bob", 20)
    assert [(r.room, r.user.name) for r in bob_list.rooms] == [(DM, "Alice")]
    alice_list = await n1.direct_rooms("alice", 20)
    assert [(r.room, r.user.id, r.user.name) for r in alice_list.rooms] == [(DM, "bob", "bob")]  # name unknown yet
    assert (await n1.direct_rooms("carol", 20)).rooms == []


async def test_messages_by_others_and_other_rooms_record_nothing(nodes: tuple[Node, Node]) -> None:
    n1, _ = nodes
    await n1.publish(frames.User("system", "system"), DM, "from the app", None)
    await n1.publish(ALICE, "lobby", "hello", None)
    assert (await n1.direct_rooms("bob", 20)).rooms == []
    assert (await n1.direct_rooms("alice", 20)).rooms == []


@given(user=st.text(min_size=1), prefix=st.sampled_from(["sb", "t0123456789", "app:chat"]))
def test_a_users_direct_list_lives_in_one_slot(user: str, prefix: str) -> None:
    assert len({slot_of(key) for key in user_keys(prefix, user)}) == 1
