"""Direct rooms a user has not opened yet (docs/protocol.md, direct rooms:
our addition to protocol §11).

After a message in a direct room ``dm:<a>+<b>`` is stored, the gateway that
stored it records the room in both users' lists (``Broker.touch_direct``:
per-user keys, in another Redis Cluster slot than the room, so a separate
call after the room's publish, never a cross-slot script). When the room
was not in the other user's list, it publishes a ``direct`` control command
on the control channel every gateway listens to (control.py), and each
gateway sends ``{"type":"direct","room","user"}`` to that user's
connections that are not in the room. A user connecting later asks for the
list (``directs``).

Cheap by construction: rooms not named ``dm:`` cost the node one
``startswith``; a direct room is recorded at most once per
``TOUCH_INTERVAL_S`` per gateway (the first message of the room on this
gateway within that time, a dictionary lookup for the others), so the
list's order by last activity is exact to that interval; and the control
command goes out only when a list gained the room, i.e. once per new
conversation.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec

from switchboard.directs import DirectEntry
from switchboard.protocol import codec, frames
from switchboard.protocol.names import direct_members
from switchboard_gateway import control

if TYPE_CHECKING:
    from switchboard_gateway.broker import Broker
    from switchboard_gateway.supervision import Supervisor

TOUCH_INTERVAL_S = 60.0
DIRECT_TASK = "direct"
_user_decoder = msgspec.json.Decoder(frames.User)


class TouchThrottle:
    """Sans-I/O: whether a direct room is due to be recorded again (at most
    once per `interval_s` per room on this gateway)."""

    def __init__(self, interval_s: float = TOUCH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}  # room -> when it was last recorded
        self._clean_at = 1024  # table size at which old entries are dropped

    def due(self, room: str, now: float) -> bool:
        last = self._last.get(room)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._last) > self._clean_at:  # amortised: only when the table has doubled since
            self._last = {r: t for r, t in self._last.items() if now - t < self.interval_s}
            self._clean_at = 2 * len(self._last) + 1024
        self._last[room] = now
        return True

    def forget(self, room: str) -> None:
        """Recording failed: the next message tries again."""
        self._last.pop(room, None)


class DirectRooms:
    def __init__(self, broker: Broker, supervisor: Supervisor, interval_s: float = TOUCH_INTERVAL_S) -> None:
        self.broker = broker
        self.supervisor = supervisor
        self.throttle = TouchThrottle(interval_s)

    async def after_publish(self, room: str, sender: frames.User, ts_ms: int) -> None:
        """A message of `sender` was stored in `room`: record the room in both
        users' lists (when due) and tell the other user if it is new to
        them. Never raises: the message is stored whatever happens here."""
        pair = direct_members(room)
        if pair is None or sender.id not in pair or not self.throttle.due(room, time.monotonic()):
            return  # not a direct room, or a message by someone else (the API's "system")
        peer_id = pair[1] if sender.id == pair[0] else pair[0]
        sender_json = codec.encode_bytes(sender)
        try:
            if peer_id == sender.id:  # a user's room with themselves: one list
                await self.broker.touch_direct(sender.id, room, sender_json, ts_ms, overwrite=True)
                return
            # The peer's entry names the sender; the sender's names the peer,
            # whose display name this gateway does not know: their id, until
            # the peer writes (and overwrites it with their name).
            placeholder = codec.encode_bytes(frames.User(id=peer_id, name=peer_id))
            new_for_peer, _ = await asyncio.gather(
                self.broker.touch_direct(peer_id, room, sender_json, ts_ms, overwrite=True),
                self.broker.touch_direct(sender.id, room, placeholder, ts_ms, overwrite=False),
            )
            if new_for_peer:
                command = control.Direct(user=peer_id, room=room, peer=sender)
                await self.broker.publish_control(control.encode(command))
        except Exception as exc:  # Redis down (BrokerUnavailable), or a bug: the message stands
            self.throttle.forget(room)
            self.supervisor.failed(DIRECT_TASK, exc)
        else:
            self.supervisor.succeeded(DIRECT_TASK)

    async def listing(self, user_id: str, limit: int) -> list[frames.DirectRoom]:
        """The user's direct rooms, the most recently active first."""
        return [_room_of(entry, user_id) for entry in await self.broker.direct_rooms(user_id, limit)]


def _room_of(entry: DirectEntry, user_id: str) -> frames.DirectRoom:
    peer: frames.User | None = None
    if entry.peer is not None:
        try:
            peer = _user_decoder.decode(entry.peer)
        except msgspec.MsgspecError:
            peer = None
    if peer is None:  # lost or unreadable: the id from the room's name
        pair = direct_members(entry.room) or (user_id, user_id)
        other = pair[1] if pair[0] == user_id else pair[0]
        peer = frames.User(id=other, name=other)
    return frames.DirectRoom(room=entry.room, user=peer, ts=entry.ts)
