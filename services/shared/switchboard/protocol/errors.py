"""Protocol errors.

- ``ProtocolError(code, message, frame_id=None, retry_after=None)``: a client
  frame could not be served; it becomes one ``error`` frame and the connection
  stays open.
"""

from __future__ import annotations

from switchboard.protocol.codes import ErrorCode

FrameId = str | int | None


class ProtocolError(Exception):
    def __init__(
        self,
        code: ErrorCode,
        message: str,
        frame_id: FrameId = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame_id = frame_id
        self.retry_after = retry_after
