"""Switchboard's shared layer.

- ``switchboard.protocol``: the wire protocol (frames, codec, codes, room names).
- ``switchboard.backplane``: the Redis layout (keys, Lua scripts, stateless calls).
- ``switchboard.client``: an async client for tests, the benchmark and tools.
"""

__version__ = "0.1.0"
