"""Redis Cluster layout, without a server: every key and the channel of a
room share one hash slot; the slot map; node URLs built from a seed; the
name a gateway's subscription connections carry."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchboard.backplane.cluster import SLOTS, SlotMap, _url_for, parse_cluster_slots, slot_of
from switchboard.backplane.keys import RoomKeys
from switchboard.protocol.names import ROOM_PATTERN
from switchboard_gateway.broker import subscription_client_name

rooms = st.from_regex(ROOM_PATTERN, fullmatch=True)


@given(room=rooms, prefix=st.sampled_from(["sb", "t0123456789", "app:chat"]), user=st.text(), cmid=st.text())
def test_a_room_lives_in_one_slot(room: str, prefix: str, user: str, cmid: str) -> None:
    k = RoomKeys(prefix, room)
    names = [k.channel, k.meta, k.log, *k.presence_keys(), k.idempotency(user, cmid)]
    assert {slot_of(name) for name in names} == {slot_of("{" + room + "}")}


def test_slots_match_redis() -> None:
    # Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert slot_of("foo") == 12182
    assert slot_of("{user1000}.following") == slot_of("{user1000}.followers") == slot_of("user1000")
    assert slot_of("foo{}{bar}") != slot_of("bar")  # an empty tag: the whole key is hashed
    assert slot_of(b"{a}x") == slot_of("a")


def test_parse_cluster_slots() -> None:
    reply = [
        [0, 5460, [b"10.0.0.1", 7000, b"id1", {}], [b"10.0.0.4", 7003, b"id4", {}]],
        [5461, 10922, [b"", 7001, b"id2"]],  # "" = the node that was asked
        [10923, 16383, [b"?", 7002, b"id3"]],
    ]
    assert parse_cluster_slots(reply, ("seed", 7009)) == [
        (0, 5460, ("10.0.0.1", 7000)),
        (5461, 10922, ("seed", 7001)),
        (10923, 16383, ("seed", 7002)),
    ]


def test_slot_map_load_and_patch() -> None:
    slots = SlotMap()
    assert not slots.loaded and slots.owner(0) is None and slots.primaries() == set()
    a, b = ("h", 1), ("h", 2)
    assert slots.load([(0, 99, a), (100, SLOTS - 1, b)]) is True
    assert slots.loaded and (slots.owner(99), slots.owner(100), slots.owner(SLOTS - 1)) == (a, b, b)
    assert slots.load([(0, 99, a), (100, SLOTS - 1, b)]) is False  # unchanged
    assert slots.patch(5, b) is True and slots.owner(5) == b and slots.owner(4) == a
    assert slots.patch(5, b) is False
    assert slots.load([(0, 99, a)]) is True and slots.owner(100) is None  # uncovered slots
    assert slots.primaries() == {a}


def test_node_urls_keep_the_seeds_credentials_and_options() -> None:
    assert _url_for("redis://:secret@seed:7000", ("10.0.0.2", 7001)) == "redis://:secret@10.0.0.2:7001/0"
    assert _url_for("rediss://user:pw@seed:7000/0?ssl_cert_reqs=none", ("n", 1)) == (
        "rediss://user:pw@n:1/0?ssl_cert_reqs=none"
    )
    assert _url_for("redis://seed", ("::1", 7000)) == "redis://[::1]:7000/0"


def test_subscription_client_name() -> None:
    assert subscription_client_name("gw-a") == "switchboard-sub-gw-a"
    assert subscription_client_name("my host\n1") == "switchboard-sub-my_host_1"
