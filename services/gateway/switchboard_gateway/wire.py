"""The fan-out fast path: one prebuilt WebSocket frame per message, written
straight to every member's transport.

Through ASGI, every member costs a ``send`` coroutine (uvicorn's, awaiting
its ``writable`` event), a ``str.encode`` of the same text, and websockets'
``Frame``/``serialize``/``data_to_send``/``join``. A server-to-client text
frame is unmasked, so its bytes are the same for every member: a 2-, 4- or
10-byte header and the UTF-8 payload. The fan-out builds them once
(``text_frame``) and ``Outbound.send`` hands them to ``write``, which writes
them to the transport when, and only when, uvicorn's own ``send`` would have
written at once:

- the ASGI ``send`` is a bound method of uvicorn's websockets-sansio
  protocol (``SUPPORTED``; any other server or protocol class: never);
- no extension was negotiated (permessage-deflate would change the bytes);
- the handshake is complete, no close was sent or received
  (``close_sent``, ``disconnected``, the websockets state ``OPEN``);
- the transport is below its high-water mark (uvicorn's ``writable`` event is
  set). When it is not, uvicorn's ``send`` would suspend: the caller falls
  back to it, and ``Outbound`` moves the connection to its bounded outbox
  exactly as without this module (never blocking, overflow -> 1013).

Everything uvicorn and websockets keep per connection stays true because
their ``send`` of a text frame changes no state either: it checks the same
flags, serialises, and calls ``transport.write``. The attributes relied on
are pinned by tests/unit/test_wire.py (the class, the attributes, and
byte-identical frames through both paths on a real uvicorn server), so a
uvicorn or websockets upgrade that changes them fails there, not on the wire.
``WS_FAST_PATH=false`` turns the fast path off.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from switchboard_gateway.keepalive import GatewayWebSocketProtocol

# Protocol classes whose `send` of a text frame is exactly "check, serialise,
# transport.write" (see the module doc). Subclasses are added explicitly
# (the gateway's own changes only the keepalive).
SUPPORTED: set[type] = {WebSocketsSansIOProtocol, GatewayWebSocketProtocol}

_OPEN = State.OPEN
_HEAD_SHORT = struct.Struct("!BB")
_HEAD_MEDIUM = struct.Struct("!BBH")
_HEAD_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x81  # FIN + opcode 1 (text); no RSV bits: no extension


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented WebSocket text frame carrying `payload`
    (UTF-8), as a server sends it (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = _HEAD_SHORT.pack(_FIN_TEXT, n)
    elif n < 65536:
        head = _HEAD_MEDIUM.pack(_FIN_TEXT, 126, n)
    else:
        head = _HEAD_LONG.pack(_FIN_TEXT, 127, n)
    return head + payload


def writer_for(send: Callable[..., Any]) -> WebSocketsSansIOProtocol | None:
    """The protocol object `write` can write prebuilt frames to for the
    connection whose ASGI ``send`` this is, or None (use ``send``). Call it
    after the handshake: extensions are known then."""
    protocol = getattr(send, "__self__", None)
    if type(protocol) not in SUPPORTED:
        return None
    assert isinstance(protocol, WebSocketsSansIOProtocol)
    if protocol.conn.extensions:
        return None
    return protocol


def write(protocol: WebSocketsSansIOProtocol, frame: bytes) -> bool:
    """Write a prebuilt frame if uvicorn's ``send`` would write at once;
    False (nothing written) means: use ``send``."""
    if (
        protocol.close_sent
        or protocol.disconnected
        or not protocol.handshake_complete
        or not protocol.writable.is_set()
        or protocol.conn.state is not _OPEN
    ):
        return False
    protocol.transport.write(frame)
    return True
