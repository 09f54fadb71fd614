"""The workloads, each a function of ``scale`` returning a ``Workload``: who
connects where, which room each connection joins, and who publishes when.

Full size (``scale`` 1):

- W1a: one room of 1,000 members over 2 server processes; 20 msg/s for 10 s
  from 20 of the members in turn: fan-out latency and CPU per delivery.
- W1b: the same room; 2,000 messages as fast as the publishers can write
  them (20 publishers x 100, back to back): saturation, delivered fraction.
- W2: 200 rooms of 5 members spanning both processes; every client
  publishes 1 msg/s for 10 s.
- W3: 5,000 idle joined connections (100 rooms of 50) on ONE process: server
  RSS per connection.
- W4: 10,000 connections over 4 processes, one room of 10,000, 1 msg/s for
  10 s: p99 and CPU at scale (in the default set: it fits the budget).

``scale`` multiplies connection and message counts; durations shrink with
it below 1 but never under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Workload:
    key: str
    title: str
    servers: int
    rooms: list[tuple[str, int]]  # (room, members); members are laid out room after room
    publish: list[tuple[float, int, str]] = field(default_factory=list)  # (t_offset_s, conn, tag)
    duration_s: float = 0.0
    deadline_s: float = 0.0  # after go: stop waiting for deliveries
    stall_s: float = 5.0  # ... or when none arrived for this long after the last publish
    idle: bool = False  # only connect, join and measure memory

    @property
    def connections(self) -> int:
        return sum(n for _, n in self.rooms)

    def messages_per_room(self) -> dict[str, int]:
        room_of = self.room_of_conn()
        counts: dict[str, int] = {room: 0 for room, _ in self.rooms}
        for _, conn, _ in self.publish:
            counts[room_of[conn]] += 1
        return counts

    def room_of_conn(self) -> list[str]:
        out: list[str] = []
        for room, n in self.rooms:
            out.extend([room] * n)
        return out

    def server_of_conn(self, conn: int) -> int:
        return conn % self.servers  # consecutive members alternate servers: rooms span them

    @property
    def expected_deliveries(self) -> int:
        members = dict(self.rooms)
        return sum(members[room] * n for room, n in self.messages_per_room().items())


def _n(full: int, scale: float, least: int) -> int:
    return max(least, round(full * scale))


def _duration(full: float, scale: float) -> float:
    return max(1.0, full * min(1.0, scale))


def _spread(members: int, publishers: int) -> list[int]:
    """`publishers` member indexes spread over the room (both servers)."""
    publishers = min(publishers, members)
    step = members / publishers
    return [int(i * step) for i in range(publishers)]


def w1a(scale: float = 1.0) -> Workload:
    members = _n(1000, scale, 4)
    duration = _duration(10, scale)
    rate = 20
    pubs = _spread(members, 20)
    count = int(rate * duration)
    publish = [(i / rate, pubs[i % len(pubs)], f"w1a.{i}") for i in range(count)]
    return Workload("w1a", f"W1a: 1 room x {members}, {rate} msg/s for {duration:g} s, 2 servers", 2,
                    [("w1a", members)], publish, duration, duration + 15)


def w1b(scale: float = 1.0) -> Workload:
    members = _n(1000, scale, 4)
    messages = _n(2000, scale, 20)
    pubs = _spread(members, 20)
    per = math.ceil(messages / len(pubs))
    publish = []
    for i in range(messages):
        publish.append((0.0, pubs[i // per], f"w1b.{i}"))
    return Workload("w1b", f"W1b: 1 room x {members}, burst of {messages} messages, 2 servers", 2,
                    [("w1b", members)], publish, 0.0, 60.0)


def w2(scale: float = 1.0) -> Workload:
    rooms = _n(200, scale, 2)
    size = 5
    duration = _duration(10, scale)
    conns = rooms * size
    publish = []
    for second in range(int(duration)):
        for c in range(conns):
            publish.append((second + c / conns, c, f"w2.{second}.{c}"))
    publish.sort()
    return Workload("w2", f"W2: {rooms} rooms x {size}, every client 1 msg/s for {duration:g} s, 2 servers", 2,
                    [(f"w2-{r}", size) for r in range(rooms)], publish, duration, duration + 15)


def w3(scale: float = 1.0) -> Workload:
    conns = _n(5000, scale, 10)
    size = min(50, conns)
    rooms = []
    left, r = conns, 0
    while left:
        n = min(size, left)
        rooms.append((f"w3-{r}", n))
        left -= n
        r += 1
    return Workload("w3", f"W3: {conns} idle joined connections ({len(rooms)} rooms), 1 server", 1,
                    rooms, idle=True)


def w4(scale: float = 1.0) -> Workload:
    members = _n(10000, scale, 8)
    duration = _duration(10, scale)
    pubs = _spread(members, 10)
    count = int(duration)
    publish = [(float(i), pubs[i % len(pubs)], f"w4.{i}") for i in range(count)]
    return Workload("w4", f"W4: 1 room x {members}, 1 msg/s for {duration:g} s, 4 servers", 4,
                    [("w4", members)], publish, duration, duration + 20)


WORKLOADS = {"w1a": w1a, "w1b": w1b, "w2": w2, "w3": w3, "w4": w4}
DEFAULT = ["w1a", "w1b", "w2", "w3", "w4"]  # about 6 minutes on 2 cores
