"""The Redis layout of Switchboard: key names, atomic Lua scripts, and a
stateless client for them (``Backplane``) over one Redis or a Redis Cluster
(``commands``, ``cluster``, ``connect``). Pub/sub *subscription* lives in
the gateway; this package only publishes and reads."""

from switchboard.backplane.keys import RoomKeys
from switchboard.backplane.store import Backplane
from switchboard.backplane.connect import open_backplane

__all__ = ["Backplane", "RoomKeys", "open_backplane"]
