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
