"""docs/examples/webhook_receiver.py, run as the application would run it,
fed by a real dispatcher: it verifies signatures and timestamps and keeps
the messages in SQLite, once each, edits applied."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchboard.signing import signed_headers
from switchboard_harness import free_port, http_status

from .conftest import SECRET, DispatcherFactory, EventsWriter, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "webhook_receiver.py"


@pytest.fixture
def example(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    db = tmp_path / "chat.sqlite3"
    env = {**os.environ, "WEBHOOK_SECRET": SECRET, "RECEIVER_DB": str(db), "HOST": "127.0.0.1", "PORT": str(port)}
    with open(tmp_path / "receiver.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(EXAMPLE)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: proc.poll() is None and http_status(url + "/healthz") == 200, 20, "example receiver up")
        yield url, db
    finally:
        proc.terminate()
        proc.wait(10)


def _messages(url: str, room: str) -> list[dict[str, object]]:
    return httpx.get(f"{url}/messages", params={"room": room}, timeout=5).json()["messages"]  # type: ignore[no-any-return]


def test_the_example_receiver_stores_what_the_dispatcher_sends(
    example: tuple[str, Path], start_dispatcher: DispatcherFactory, events: EventsWriter
) -> None:
    url, db = example
    start_dispatcher(WEBHOOK_URL=f"{url}/webhooks")
    events.room_event("user_joined", "lobby")
    events.message("lobby", 1, "hello")
    events.message("lobby", 2, "second", user=("u2", "Bob"))
    now = int(time.time() * 1000)
    edit = {"type": "message", "room": "lobby", "ts": now, "offset": 3, "epoch": "ep01", "msg_id": "ep01-3",
            "user": {"id": "u1", "name": "Ann"}, "text": "hello, edited", "kind": "edit", "target": 1}
    delete = {**edit, "offset": 4, "msg_id": "ep01-4", "text": "", "kind": "delete", "target": 2}
    events.redis.xadd(events.stream, {"e": json.dumps(edit)})
    events.redis.xadd(events.stream, {"e": json.dumps(delete)})

    wait_until(lambda: len(_messages(url, "lobby")) == 2 and _messages(url, "lobby")[1]["deleted"] == 1, 20,
               "two messages stored, the second deleted")
    first, second = _messages(url, "lobby")
    assert (first["text"], first["user_name"], first["edited"], first["offset"]) == ("hello, edited", "Ann", 1, 1)
    assert (second["text"], second["user_id"], second["deleted"]) == ("", "u2", 1)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (5,)


def test_the_example_receiver_refuses_bad_signatures_and_stale_timestamps(example: tuple[str, Path]) -> None:
    url, db = example
    event = {"id": "1-0", "type": "message", "room": "r", "ts": 1, "offset": 1, "epoch": "e", "msg_id": "e-1",
             "user": {"id": "u", "name": "U"}, "text": "x"}
    body = json.dumps([event]).encode()

    def post(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{url}/webhooks", content=body, headers=headers, timeout=5)

    good = signed_headers(SECRET, body)
    forged = signed_headers("another-secret-0123456789abcdef0123", body)
    stale = signed_headers(SECRET, body, now=time.time() - 3600)
    assert post(forged).status_code == 401
    assert post({**good, "X-Switchboard-Timestamp": "soon"}).status_code == 401
    assert post(stale).status_code == 401
    assert post({k: v for k, v in good.items() if k != "X-Switchboard-Signature"}).status_code == 401
    assert _messages(url, "r") == []
    # Delivered twice (at least once): stored once.
    assert post(good).json() == {"stored": 1, "received": 1}
    assert post(signed_headers(SECRET, body)).json() == {"stored": 0, "received": 1}
    assert [m["text"] for m in _messages(url, "r")] == ["x"]
