"""The webhook tier: a real Redis, real ``python -m switchboard_webhooks``
processes and a real HTTP receiver on loopback. On both topologies: on a
Redis Cluster the events go to the stream of one slot (the layout's), which
the dispatcher finds by itself.

Events are written the way the gateway's scripts write them: by the Lua
functions of ``backplane/scripts/events.lua``, with a message event
assembled exactly as ``publish.lua`` assembles the message frame.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from switchboard.backplane import scripts
from switchboard.backplane.events import WEBHOOK_GROUP, EventsLayout
from switchboard.protocol import codec, frames
from switchboard_harness import DispatcherProcess
from switchboard_harness.receiver import WebhookReceiver

SECRET = "webhooks-test-secret-0123456789abcdef"

# Same concatenation as publish.lua, then the include's append_event().
_MESSAGE_EVENT = scripts.EVENTS_PRELUDE + """
local offset, epoch = ARGV[4], ARGV[5]
local frame = ARGV[2] .. offset .. ',"epoch":"' .. epoch .. '","msg_id":"' .. epoch .. '-' .. offset .. '"' .. ARGV[3]
append_event(KEYS[1], ARGV[1], frame)
return frame
"""
_ROOM_EVENT = scripts.EVENTS_PRELUDE + """
append_event(KEYS[1], ARGV[1], room_event(ARGV[2], ARGV[3], ARGV[4], ARGV[5]))
"""


class EventsWriter:
    """Writes events into the test's key space as a gateway would."""

    def __init__(self, url: str, prefix: str, maxlen: int = 100_000, *, cluster: bool = False) -> None:
        self.redis: redis.Redis | RedisCluster = (
            RedisCluster.from_url(url.split(",")[0]) if cluster else redis.Redis.from_url(url)
        )
        self.layout = EventsLayout(prefix, cluster=cluster)
        self.stream = self.layout.stream_for_tag("any room")
        self.maxlen = maxlen

    def message(
        self, room: str, offset: int, text: str, user: tuple[str, str] = ("u1", "Ann"), epoch: str = "ep01"
    ) -> bytes:
        """Appends the message event; returns the message frame as publish.lua builds it."""
        body = frames.MessageBody(user=frames.User(*user), text=text, ts=int(time.time() * 1000))
        frame: bytes = self.redis.eval(
            _MESSAGE_EVENT, 1, self.stream, self.maxlen, codec.message_head(room), codec.message_tail(body), offset, epoch
        )
        return frame

    def room_event(self, kind: str, room: str, user: tuple[str, str] = ("u1", "Ann")) -> None:
        user_json = json.dumps({"id": user[0], "name": user[1]})
        self.redis.eval(
            _ROOM_EVENT, 1, self.stream, self.maxlen, kind, json.dumps(room), int(time.time() * 1000), user_json
        )

    def many(self, count: int, room: str = "bulk") -> None:
        """`count` user_joined events in one script call (one atomic burst)."""
        now = int(time.time() * 1000)
        events = [
            json.dumps({"type": "user_joined", "room": room, "ts": now, "user": {"id": f"u{i}", "name": f"N{i}"}})
            for i in range(count)
        ]
        self.redis.eval(scripts.APPEND_EVENT.source, 1, self.stream, self.maxlen, *events)

    def raw(self, fields: dict[str, str]) -> str:
        """An entry that no gateway writes (malformed)."""
        return self.redis.xadd(self.stream, fields).decode()  # type: ignore[union-attr]

    def entry_ids(self) -> list[str]:
        """The stream entry ids, in stream order."""
        return [eid.decode() for eid, _ in self.redis.xrange(self.stream)]

    def event_ids(self) -> list[str]:
        """The events' public ids (on a cluster: "<slot>-<entry id>")."""
        return [self.layout.event_id(self.stream, eid) for eid in self.entry_ids()]

    def dead_letters(self) -> list[dict[str, str]]:
        return [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in self.redis.xrange(self.layout.dead_letter)
        ]

    def pending(self) -> int:
        try:
            return int(self.redis.xpending(self.stream, WEBHOOK_GROUP)["pending"])
        except redis.ResponseError:  # no group yet
            return 0

    def close(self) -> None:
        self.redis.close()


@pytest.fixture
def events(redis_url: str, redis_prefix: str, topology: str) -> Iterator[EventsWriter]:
    writer = EventsWriter(redis_url, redis_prefix, cluster=topology == "cluster")
    yield writer
    writer.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


DispatcherFactory = Callable[..., DispatcherProcess]

# Fast retries and claims, still valid (CLAIM_IDLE > TIMEOUT + BACKOFF_MAX).
FAST = {
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_BACKOFF_BASE": "0.05",
    "WEBHOOK_BACKOFF_MAX": "0.2",
    "WEBHOOK_CLAIM_IDLE": "3",
    "WEBHOOK_DISCOVERY_INTERVAL": "0.3",  # a cluster's new streams are found at once
    "EVENTS_MAXLEN": "100000",
}


@pytest.fixture
def start_dispatcher(
    redis_url: str, redis_prefix: str, tmp_path: Path, receiver: WebhookReceiver
) -> Iterator[DispatcherFactory]:
    """``start_dispatcher(**env)``: a dispatcher on the test's key space,
    posting to the test's receiver; keyword arguments override the env."""
    started: list[DispatcherProcess] = []

    def start(wait_ready: bool = True, **env: Any) -> DispatcherProcess:
        settings = {
            **FAST,
            "REDIS_PREFIX": redis_prefix,
            "WEBHOOK_URL": receiver.url,
            "WEBHOOK_SECRET": SECRET,
            **env,
        }
        dispatcher = DispatcherProcess(redis_url, name=f"d{len(started) + 1}", log_dir=str(tmp_path), **settings)
        started.append(dispatcher)
        return dispatcher.start(wait_ready=wait_ready)

    yield start
    for dispatcher in started:
        dispatcher.stop()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` (a metric, a Redis count) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def ids_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]
