"""Decode client frames, encode server frames.

``decode_client_frame`` returns a frame or raises ``ProtocolError`` with code
``bad_request``: never anything else, whatever bytes arrive (a property test
holds it to that).
"""

from __future__ import annotations

from typing import Any

import msgspec

from switchboard.protocol import frames
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.errors import ProtocolError

_client_decoder = msgspec.json.Decoder(frames.ClientFrame)
_encoder = msgspec.json.Encoder()


class _IdOnly(msgspec.Struct):
    id: Any = None


_id_decoder = msgspec.json.Decoder(_IdOnly)


def frame_id_of(data: str | bytes) -> frames.FrameId:
    """Best-effort `id` of a frame that failed validation, so the error can
    carry it. An id that is not a string or an integer is not usable."""
    try:
        value = _id_decoder.decode(data).id
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value


def decode_client_frame(data: str | bytes) -> frames.ClientFrame:
    try:
        frame: frames.ClientFrame = _client_decoder.decode(data)
        return frame
    except msgspec.ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc), frame_id_of(data)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"not a JSON object: {exc}") from None
    except RecursionError:
        # msgspec decodes nested JSON recursively and stops cleanly at
        # Python's recursion limit: that bounds the depth (~1,000 levels).
        raise ProtocolError(ErrorCode.BAD_REQUEST, "JSON nested too deeply") from None


def encode(frame: msgspec.Struct) -> str:
    """A server frame as the text of one WebSocket frame."""
    return _encoder.encode(frame).decode()


def encode_bytes(obj: Any) -> bytes:
    return _encoder.encode(obj)


def encode_error(exc: ProtocolError) -> str:
    return encode(
        frames.Error(
            id=exc.frame_id, code=str(exc.code), message=exc.message, retry_after=exc.retry_after
        )
    )


# A stored ``message`` frame is built from three parts so that the part only
# the backplane knows (offset, epoch) is spliced in where the message is
# stored: ``message_head(room) + message_position(offset, epoch) +
# message_tail(body)``. The publish script (backplane/scripts/publish.lua)
# builds the middle part itself and must mirror ``message_position`` byte for
# byte (tests/contract checks both backplanes produce identical frames).


def message_head(room: str) -> bytes:
    """The start of a ``message`` frame up to its offset."""
    return b'{"type":"message","room":' + _encoder.encode(room) + b',"offset":'


def message_position(offset: int, epoch: str) -> bytes:
    """The middle of a ``message`` frame: offset, epoch and ``msg_id``
    (``<epoch>-<offset>``). Epochs are hex tokens, so need no escaping."""
    return f'{offset},"epoch":"{epoch}","msg_id":"{epoch}-{offset}"'.encode()


def message_tail(body: frames.MessageBody) -> bytes:
    """The rest of a ``message`` frame after ``msg_id``:
    ``,"kind":..[,"target":..][,"emoji":..],"user":..,"text":..,"ts":..}``.
    ``kind`` comes first and ``ts`` stays last (``message_ts`` reads it
    there); ``target`` and ``emoji`` appear only on the entries that have
    them (protocol §11)."""
    parts = [b',"kind":"', body.kind.encode(), b'"']
    if body.target is not None:
        parts += [b',"target":', str(body.target).encode()]
    if body.emoji is not None:
        parts += [b',"emoji":', _encoder.encode(body.emoji)]
    parts += [
        b',"user":',
        _encoder.encode(body.user),
        b',"text":',
        _encoder.encode(body.text),
        b',"ts":',
        str(body.ts).encode(),
        b"}",
    ]
    return b"".join(parts)


def message_frame(room: str, offset: int, epoch: str, body: frames.MessageBody) -> bytes:
    """A whole ``message`` frame, as the publish script builds it."""
    return message_head(room) + message_position(offset, epoch) + message_tail(body)


def message_ts(frame: str) -> int | None:
    """The ``ts`` of an encoded ``message`` frame without decoding it: it is
    the frame's last field (``MessageBody`` ends with it). None if the frame
    does not end that way."""
    colon = frame.rfind(":")
    digits = frame[colon + 1 : -1]
    if colon < 0 or not digits.isdigit() or frame[colon - 5 : colon] != ',"ts"':
        return None
    return int(digits)
