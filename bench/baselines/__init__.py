"""The two designs Switchboard is measured against (see docs/performance.md):

- ``floor``: a raw ``websockets`` server with ``websockets.broadcast()`` and
  ONE Redis pub/sub subscription per process: no ASGI, no history, no
  guarantees. What the hardware and the event loop allow.
- ``naive``: Starlette on uvicorn with one Redis pub/sub subscription per
  WebSocket connection and an ``await redis.publish`` per publish frame.

Both speak the subset of the wire protocol the benchmark uses: ``welcome``
after accept, ``join`` -> ``joined`` (once the subscription is confirmed),
``publish`` -> a ``message`` frame to every member of the room (no ack).
"""

import json
import time
from typing import Any


def decode_frame(raw: str | bytes) -> tuple[str | None, dict[str, Any]]:
    """(type, frame) of a client frame; (None, {}) for anything unusable."""
    try:
        frame = json.loads(raw)
        return frame["type"], frame
    except (ValueError, KeyError, TypeError):
        return None, {}


def message_payload(room: str, msg_id: str, user: dict[str, str], text: str) -> str:
    """The ``message`` frame both baselines publish (no offset, no epoch)."""
    message = {"type": "message", "room": room, "offset": 0, "epoch": "", "msg_id": msg_id,
               "user": user, "text": text, "ts": int(time.time() * 1000)}
    return json.dumps(message, separators=(",", ":"))
