"""A user's direct rooms and a direct room's peer mark (our addition to
protocol §11) at the broker seam, for MemoryBroker and RedisBroker alike:
the list is shared by every node, newest activity first, capped, and says
when it gained a room; ``read_state`` reads the other user's mark with the
reader's own."""

from __future__ import annotations

import json
import time

from broker_harness import Cluster

from switchboard.directs import DIRECT_ROOMS_MAX
from switchboard.protocol.frames import MessageBody, User
from switchboard.roomlog import ReadState

ALICE = User("alice", "Alice")
BOB = User("bob", "Bob")
DM = "dm:alice+bob"


def as_json(user: User) -> bytes:
    return json.dumps({"id": user.id, "name": user.name}, separators=(",", ":")).encode()


async def test_a_users_direct_rooms_are_shared_newest_first(cluster: Cluster) -> None:
    c = cluster
    assert await c.a.touch_direct("bob", DM, as_json(ALICE), 1_000, overwrite=True) is True  # new to bob
    # Known already (on any node): not new; without overwrite the stored user stays.
    assert await c.b.touch_direct("bob", DM, b'{"id":"alice","name":"alice"}', 3_000, overwrite=False) is False
    assert await c.b.touch_direct("bob", "dm:bob+carol", b'{"id":"carol","name":"Carol"}', 2_000, overwrite=True)
    listing = await c.a.direct_rooms("bob", 10)
    assert [(e.room, e.ts) for e in listing] == [(DM, 3_000), ("dm:bob+carol", 2_000)]
    assert json.loads(listing[0].peer or b"") == {"id": "alice", "name": "Alice"}
    assert [e.room for e in await c.b.direct_rooms("bob", 1)] == [DM]
    # With overwrite the other user's name is replaced (they wrote under a new one).
    assert await c.a.touch_direct("bob", DM, b'{"id":"alice","name":"Ally"}', 4_000, overwrite=True) is False
    assert json.loads((await c.b.direct_rooms("bob", 1))[0].peer or b"")["name"] == "Ally"
    assert await c.a.direct_rooms("alice", 10) == []  # only bob's list was written
    assert await c.a.direct_rooms("nobody", 10) == []


async def test_the_list_keeps_the_newest_rooms_only(cluster: Cluster) -> None:
    c = cluster
    for i in range(DIRECT_ROOMS_MAX + 2):
        peer = f"u{i:03d}"
        await c.a.touch_direct("dave", f"dm:dave+{peer}", as_json(User(peer, peer)), 10_000 + i, overwrite=True)
    listing = await c.b.direct_rooms("dave", 100)
    assert len(listing) == DIRECT_ROOMS_MAX
    assert listing[0].room == f"dm:dave+u{DIRECT_ROOMS_MAX + 1:03d}"
    assert {e.room for e in listing}.isdisjoint({"dm:dave+u000", "dm:dave+u001"})  # the two oldest went
    assert all(e.peer is not None for e in listing)
    # A room that dropped out is new again when it is active again.
    assert await c.a.touch_direct("dave", "dm:dave+u000", as_json(User("u000", "u000")), 99_999, overwrite=True)


async def test_read_state_carries_the_peers_mark(cluster: Cluster) -> None:
    c = cluster
    now = int(time.time() * 1000)
    first = await c.a.publish(DM, MessageBody(user=ALICE, text="hi", ts=now), None)
    await c.a.publish(DM, MessageBody(user=ALICE, text="there", ts=now), None)
    assert await c.b.mark_read(DM, BOB, first.epoch, 2)
    # Alice: nothing unread (her own messages), bob has read up to 2.
    assert await c.a.read_state(DM, "alice", first.epoch, 2, "bob") == ReadState(0, 0, 2)
    # Bob: read all, alice never read.
    assert await c.b.read_state(DM, "bob", first.epoch, 2, "alice") == ReadState(2, 0, 0)
    assert await c.a.read_state(DM, "alice", first.epoch, 2) == ReadState(0, 0, 0)  # no peer asked
    assert await c.a.read_state(DM, "alice", "other-epoch", 2, "bob") == ReadState(0, 0, 0)
