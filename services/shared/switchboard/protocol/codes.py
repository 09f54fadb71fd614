"""Close codes and error codes, with what a client should do about each.

Close codes (WebSocket close frame):

====  ======================  ==================================================
code  name                    client behaviour
====  ======================  ==================================================
1000  NORMAL                  done; reconnect only if the user asks
1001  GOING_AWAY              reconnect with backoff
1008  POLICY_VIOLATION        sustained abuse (errors, a ping flood); do not retry
                              in a loop
1009  MESSAGE_TOO_BIG         a frame exceeded MAX_FRAME_BYTES; fix the client
1011  INTERNAL_ERROR          reconnect with backoff
1012  SERVICE_RESTART         the gateway drains; reconnect soon, resume with since
1013  TRY_AGAIN_LATER         slow consumer, overload, or too many connections
                              from the address or of the user; reconnect with
                              backoff
4001  UNAUTHORIZED            token missing, invalid or expired; get a new token
                              first, never auto-reconnect with the same one
4003  KICKED                  disconnected (or banned) by the application; do
                              not reconnect by yourself, tell the user why
====  ======================  ==================================================

Error codes (``error`` frames) leave the connection open.
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001
    KICKED = 4003  # the application disconnected or banned the user (user control API)


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"  # not JSON, binary, unknown type, bad fields or values
    FORBIDDEN = "forbidden"  # the token's `rooms` claim does not allow the room
    NOT_JOINED = "not_joined"  # publish/typing/leave on a room not joined
    RATE_LIMITED = "rate_limited"  # publish/typing rate or frame budget exceeded; carries retry_after (ms)
    TOO_LARGE = "too_large"  # text longer than MAX_TEXT_CHARS
    LIMIT_EXCEEDED = "limit_exceeded"  # more than MAX_ROOMS_PER_CONNECTION rooms
    UNAVAILABLE = "unavailable"  # the backplane (Redis) is down and nothing was stored; retry later
    # The backplane took the publish but did not answer (e.g. it hung): it may
    # or may not be stored. Retry with the same client_msg_id (idempotent).
    OUTCOME_UNKNOWN = "outcome_unknown"
    INTERNAL = "internal"  # a bug; the connection stays usable
    REJECTED = "rejected"  # the publish hook refused the message; nothing was stored
