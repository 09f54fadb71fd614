"""The wire protocol, version 1: pure data, no I/O.

See docs/protocol.md for the contract in prose.
"""

from switchboard.protocol.codes import CloseCode, ErrorCode
from switchboard.protocol.errors import ProtocolError

PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "CloseCode", "ErrorCode", "ProtocolError"]
