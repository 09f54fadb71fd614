"""An application's webhook endpoint for Switchboard, in one file.

It checks each delivery's signature and timestamp, then keeps the chat for
good in SQLite (Switchboard's own history is a capped buffer). Deliveries
are at least once and not necessarily in order, so every write is
idempotent: events are deduplicated by ``id`` (a repeated event changes
nothing), messages are keyed by room, epoch and offset, and an edit or
deletion that arrives before its message is applied when the message does.

    WEBHOOK_SECRET=... RECEIVER_DB=chat.sqlite3 python docs/examples/webhook_receiver.py
    # then run the dispatcher with WEBHOOK_URL=http://<this host>:9000/webhooks

Settings: WEBHOOK_SECRET (the dispatcher's), RECEIVER_DB (default
webhooks.sqlite3), HOST / PORT (0.0.0.0:9000), MAX_SKEW (seconds a
timestamp may be off, default 300). Needs only Starlette and uvicorn.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, room TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL, epoch TEXT NOT NULL, offset INTEGER NOT NULL, msg_id TEXT NOT NULL,
    user_id TEXT NOT NULL, user_name TEXT NOT NULL, text TEXT NOT NULL, ts INTEGER NOT NULL,
    edited_at INTEGER NOT NULL DEFAULT 0,  -- log offset of the edit applied, 0 when never edited
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, epoch, offset)
);
CREATE TABLE IF NOT EXISTS changes (
    room TEXT NOT NULL, epoch TEXT NOT NULL, offset INTEGER NOT NULL, target INTEGER NOT NULL,
    kind TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (room, epoch, offset)
);
"""


def expected_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Store:
    """SQLite, one connection behind a lock (requests are short)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def save(self, events: list[dict[str, Any]]) -> int:
        """Store a batch in one transaction; returns how many were new."""
        new = 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for event in events:
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                        (event["id"], event["type"], event["room"], event["ts"], json.dumps(event)),
                    )
                    if cursor.rowcount == 0:
                        continue  # delivered before
                    new += 1
                    if event["type"] == "message":
                        self._message(event)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def _message(self, event: dict[str, Any]) -> None:
        room, epoch, kind = event["room"], event["epoch"], event.get("kind", "message")
        if kind == "message":
            user = event["user"]
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO messages (room, epoch, offset, msg_id, user_id, user_name, text, ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (room, epoch, event["offset"], event["msg_id"], user["id"], user["name"], event["text"], event["ts"]),
            ).rowcount
            if inserted:  # edits or deletions that arrived before it
                for change_kind, text, offset in self._db.execute(
                    "SELECT kind, text, offset FROM changes WHERE room = ? AND epoch = ? AND target = ?"
                    " ORDER BY offset",
                    (room, epoch, event["offset"]),
                ).fetchall():
                    self._change(room, epoch, change_kind, event["offset"], text, offset)
        elif kind in ("edit", "delete"):
            self._db.execute(
                "INSERT OR IGNORE INTO changes VALUES (?, ?, ?, ?, ?, ?)",
                (room, epoch, event["offset"], event["target"], kind, event.get("text", "")),
            )
            self._change(room, epoch, kind, event["target"], event.get("text", ""), event["offset"])
        # Reactions are kept in the events table only.

    def _change(self, room: str, epoch: str, kind: str, target: int, text: str, offset: int) -> None:
        """Apply an edit or deletion; a later edit (by log offset) wins."""
        if kind == "delete":
            self._db.execute(
                "UPDATE messages SET text = '', deleted = 1 WHERE room = ? AND epoch = ? AND offset = ?",
                (room, epoch, target),
            )
        else:
            self._db.execute(
                "UPDATE messages SET text = ?, edited_at = ? WHERE room = ? AND epoch = ? AND offset = ?"
                " AND edited_at < ? AND deleted = 0",
                (text, offset, room, epoch, target, offset),
            )

    def messages(self, room: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT msg_id, offset, user_id, user_name, text, ts, edited_at > 0, deleted FROM messages"
                " WHERE room = ? ORDER BY ts, epoch, offset",
                (room,),
            ).fetchall()
        keys = ("msg_id", "offset", "user_id", "user_name", "text", "ts", "edited", "deleted")
        return [dict(zip(keys, row)) for row in rows]


def create_app(secret: str, db_path: str, max_skew_s: float = 300.0) -> Starlette:
    store = Store(db_path)

    async def webhooks(request: Request) -> Response:
        body = await request.body()  # the raw bytes: the signature covers exactly these
        signature = request.headers.get("x-switchboard-signature", "")
        if not hmac.compare_digest(signature.encode(), expected_signature(secret, body).encode()):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            stamp = int(request.headers.get("x-switchboard-timestamp", ""))
        except ValueError:
            return JSONResponse({"error": "bad timestamp"}, status_code=401)
        if abs(time.time() - stamp) > max_skew_s:
            return JSONResponse({"error": "stale timestamp"}, status_code=401)
        events = json.loads(body)
        # A non-2xx answer makes the dispatcher retry, so answer 2xx only
        # once the batch is stored.
        new = store.save(events)
        return JSONResponse({"stored": new, "received": len(events)})

    async def messages(request: Request) -> Response:
        return JSONResponse({"messages": store.messages(request.query_params.get("room", ""))})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks", webhooks, methods=["POST"]),
            Route("/messages", messages),
            Route("/healthz", healthz),
        ]
    )


if __name__ == "__main__":
    import uvicorn

    app = create_app(
        os.environ["WEBHOOK_SECRET"],
        os.environ.get("RECEIVER_DB", "webhooks.sqlite3"),
        float(os.environ.get("MAX_SKEW", "300")),
    )
    uvicorn.run(app, host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "9000")))
