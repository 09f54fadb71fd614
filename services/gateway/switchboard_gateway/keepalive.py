"""WebSocket keepalive that detects dead peers, not busy ones.

uvicorn's websockets-sansio protocol pings every ``WS_PING_INTERVAL`` and
closes with 1011 "keepalive ping timeout" when no pong came within
``WS_PING_TIMEOUT`` of *writing* the ping. But a ping and its pong are
frames in the stream like any other:

- inbound, the pong waits behind whatever the peer sent before it, and the
  gateway reads a connection's frames one at a time (a publish awaits
  Redis). Measured in bench W1b on a busy machine: the 20 publishers, whose
  100-message bursts the gateway was still working through, were closed
  with 1011 although the gateway, not they, was behind;
- outbound, the ping waits behind every frame already queued for the peer
  (our transport buffer and the kernel's send queue), so a reader that is
  behind but reading would be cut off by the ping instead of being governed
  by the slow-consumer policy (the bounded outbox, 1013).

So ``GatewayWebSocketProtocol`` (uvicorn's class with one decision changed)
gives the peer another ``WS_PING_TIMEOUT`` at the pong deadline, the ping
still outstanding and its pong still counted, when:

1. the gateway has not read everything the peer sent (uvicorn pauses
   reading while the application works through a frame): the pong may be
   among it;
2. frames for the peer are still queued on our side and the peer's TCP
   acknowledged more of our bytes since the previous deadline
   (``TCP_INFO.tcpi_bytes_acked``): it is reading, only behind, and the
   ping may be behind those frames;
3. once, the queue emptied since the previous deadline: the ping reached
   the peer only recently.

Otherwise 1011 as before: a peer that acknowledged nothing for a whole
``WS_PING_TIMEOUT`` while frames wait for it, or that has everything and
does not answer, is gone. A reader that stays behind is closed by its
outbox bound (1013), like any slow consumer. Rules 2 and 3 need Linux's
``TCP_INFO`` and ``SIOCOUTQ``; elsewhere only rule 1 applies.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from websockets.frames import Frame

from switchboard_gateway.lean import LeanWebSocketProtocol

try:  # Linux
    import fcntl
    import termios

    _TCP_INFO: int | None = socket.TCP_INFO
    _OUTQ: int | None = termios.TIOCOUTQ  # == SIOCOUTQ: bytes not yet acknowledged by the peer
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _TCP_INFO = _OUTQ = None

# struct tcp_info (linux/tcp.h): __u64 tcpi_bytes_acked at offset 120 (Linux >= 4.1).
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 120
_INT = struct.Struct("=i")


def send_progress(transport: Any) -> tuple[int, int] | None:
    """(bytes of ours the peer has acknowledged, bytes still queued for it
    in the kernel and in the transport), or None where the kernel does not
    tell (not Linux, not TCP)."""
    sock = transport.get_extra_info("socket")
    if sock is None or _TCP_INFO is None or _OUTQ is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 192)
        kernel = _INT.unpack(fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return None
    if len(info) < _BYTES_ACKED_OFFSET + 8:
        return None
    acked = _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_OFFSET)[0]
    return acked, kernel + transport.get_write_buffer_size()


class GatewayWebSocketProtocol(LeanWebSocketProtocol):
    """uvicorn's websockets-sansio protocol (with lighter per-socket objects,
    ``lean``) and the pong deadline above."""

    # Per outstanding ping, set only once its deadline passed (so an idle
    # connection carries nothing extra): (bytes acknowledged at that
    # deadline, whether the "queue just emptied" grace was used).
    _behind: tuple[int, bool] | None = None

    def keepalive_timeout(self) -> None:
        if not self.close_sent and not self.transport.is_closing() and self._peer_is_behind():
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)  # type: ignore[arg-type]
            return
        self._behind = None
        super().keepalive_timeout()

    def handle_pong(self, event: Frame) -> None:
        super().handle_pong(event)
        if self._behind is not None and self.pending_ping_payload is None:
            self._behind = None  # answered: the next ping starts afresh

    def _peer_is_behind(self) -> bool:
        if self.read_paused:
            return True  # rule 1: we have not read what the peer sent
        progress = send_progress(self.transport)
        if progress is None:
            return False
        acked, queued = progress
        previous = self._behind
        if queued:  # rule 2
            self._behind = (acked, previous[1] if previous else False)
            return previous is None or acked > previous[0]
        if previous is not None and not previous[1]:  # rule 3
            self._behind = (acked, True)
            return True
        return False
