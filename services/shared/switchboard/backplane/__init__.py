"""The Redis layout of Switchboard: key names, atomic Lua scripts, and a
stateless client for them (``Backplane``). Pub/sub *subscription* lives in
the gateway; this package only publishes and reads."""

from switchboard.backplane.keys import RoomKeys
from switchboard.backplane.store import Backplane

__all__ = ["Backplane", "RoomKeys"]
