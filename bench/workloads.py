"""The workloads, each a function of ``scale`` returning a ``Workload``: who
connects where, which room each connection joins, and what happens in the
measured phase.

Three kinds:

- ``traffic``: every connection joins during setup; in the measured phase
  some members publish on a schedule; deliveries, latency, CPU per delivery.
- ``idle``: only connect and join; RSS per connection, fill time and server
  CPU per join (the setup's server CPU / connections, handshake included).
- ``probe``: a room is filled during setup and ``probes`` more connections
  open (``welcome``) without joining; in the measured phase each probe joins
  once: server CPU per join into a room of that size, join round trip.

Full size (``scale`` 1):

- W1a: one room of 1,000 members over 2 server processes; 20 msg/s for 10 s
  from 20 of the members in turn: fan-out latency and CPU per delivery.
- W1b: the same room; 2,000 messages as fast as the publishers can write
  them (20 publishers x 100, back to back): saturation, delivered fraction,
  closes by code (1011 keepalive vs 1013 slow consumer).
- W2: 200 rooms of 5 members spanning both processes; every client
  publishes 1 msg/s for 10 s.
- W3: 5,000 idle joined connections (100 rooms of 50) on ONE process.
- W4: 10,000 connections over 4 processes, one room of 10,000, 1 msg/s for 10 s.
- ROOM5K: one room of 5,000 idle connections on ONE process: KB per
  connection and CPU per join in one big room (issue 11).
- JOIN10 / JOIN10K: the CPU of one join into a room of 10 (200 rooms of 10,
  each probe joins its own) vs into one room of 10,000 (every probe joins it),
  ONE process, 500 probes (contract §10: at most 2x).
- BIG20K: one room of 20,000 over 4 processes, 1 msg/s for 10 s: fill time,
  KB per connection, p99 at the largest size.

The naive design is left out of JOIN10K and BIG20K: it holds a Redis
connection per socket, beyond the file-descriptor limit of one process here.

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
    kind: str = "traffic"  # "traffic" | "idle" | "probe"
    publish: list[tuple[float, int, str]] = field(default_factory=list)  # (t_offset_s, conn, tag)
    probes: list[str] = field(default_factory=list)  # probe i joins this room in the measured phase
    duration_s: float = 0.0
    deadline_s: float = 0.0  # after go: stop waiting for deliveries
    stall_s: float = 5.0  # ... or when none arrived for this long after the last publish
    setup_timeout_s: float = 180.0
    skip: dict[str, str] = field(default_factory=dict)  # design -> why it does not run here

    @property
    def connections(self) -> int:
        return sum(n for _, n in self.rooms) + len(self.probes)

    @property
    def members(self) -> int:
        return sum(n for _, n in self.rooms)

    @property
    def fanout(self) -> bool:
        """Whether the measured phase delivers messages (the fast path matters)."""
        return self.kind == "traffic"

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


# The naive design holds a Redis connection per socket: over ~10,000 sockets
# in one process (or ~20,000 in all, for redis-server) it needs more file
# descriptors than this machine's limit (20,000 per process).
_NAIVE_FDS = {"naive": "a Redis connection per socket: beyond the 20,000 file descriptors per process here"}


def w1a(scale: float = 1.0) -> Workload:
    members = _n(1000, scale, 4)
    duration = _duration(10, scale)
    rate = 20
    pubs = _spread(members, 20)
    count = int(rate * duration)
    publish = [(i / rate, pubs[i % len(pubs)], f"w1a.{i}") for i in range(count)]
    return Workload("w1a", f"W1a: 1 room x {members}, {rate} msg/s for {duration:g} s, 2 servers", 2,
                    [("w1a", members)], publish=publish, duration_s=duration, deadline_s=duration + 15)


def w1b(scale: float = 1.0) -> Workload:
    members = _n(1000, scale, 4)
    messages = _n(2000, scale, 20)
    pubs = _spread(members, 20)
    per = math.ceil(messages / len(pubs))
    publish = [(0.0, pubs[i // per], f"w1b.{i}") for i in range(messages)]
    return Workload("w1b", f"W1b: 1 room x {members}, burst of {messages} messages, 2 servers", 2,
                    [("w1b", members)], publish=publish, deadline_s=60.0)


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
                    [(f"w2-{r}", size) for r in range(rooms)], publish=publish, duration_s=duration,
                    deadline_s=duration + 15)


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
                    rooms, kind="idle")


def w4(scale: float = 1.0) -> Workload:
    members = _n(10000, scale, 8)
    duration = _duration(10, scale)
    pubs = _spread(members, 10)
    publish = [(float(i), pubs[i % len(pubs)], f"w4.{i}") for i in range(int(duration))]
    return Workload("w4", f"W4: 1 room x {members}, 1 msg/s for {duration:g} s, 4 servers", 4,
                    [("w4", members)], publish=publish, duration_s=duration, deadline_s=duration + 20)


def room5k(scale: float = 1.0) -> Workload:
    members = _n(5000, scale, 10)
    return Workload("room5k", f"ROOM5K: 1 room x {members} idle, 1 server", 1, [("room5k", members)], kind="idle")


def join10(scale: float = 1.0) -> Workload:
    probes = _n(500, scale, 2)
    rooms = [(f"j10-{r}", 10) for r in range(probes)]
    return Workload("join10", f"JOIN10: {probes} joins, each into a room of 10, 1 server", 1, rooms,
                    kind="probe", probes=[room for room, _ in rooms])


def join10k(scale: float = 1.0) -> Workload:
    members = _n(10000, scale, 20)
    probes = _n(500, scale, 2)
    return Workload("join10k", f"JOIN10K: {probes} joins into a room of {members}, 1 server", 1,
                    [("j10k", members)], kind="probe", probes=["j10k"] * probes, skip=_NAIVE_FDS)


def big20k(scale: float = 1.0) -> Workload:
    members = _n(20000, scale, 8)
    duration = _duration(10, scale)
    pubs = _spread(members, 10)
    publish = [(float(i), pubs[i % len(pubs)], f"big.{i}") for i in range(int(duration))]
    return Workload("big20k", f"BIG20K: 1 room x {members}, 1 msg/s for {duration:g} s, 4 servers", 4,
                    [("big20k", members)], publish=publish, duration_s=duration, deadline_s=duration + 30,
                    setup_timeout_s=420.0,
                    skip=_NAIVE_FDS)


WORKLOADS = {"w1a": w1a, "w1b": w1b, "w2": w2, "w3": w3, "w4": w4,
             "room5k": room5k, "join10": join10, "join10k": join10k, "big20k": big20k}
DEFAULT = list(WORKLOADS)
