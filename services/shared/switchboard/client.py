"""A small async client for Switchboard, used by tests, the benchmark and tools.

    async with await Client.connect("ws://127.0.0.1:8000/ws", token=token) as c:
        joined = await c.join("lobby", history=10)
        ack = await c.publish("lobby", "hello")
        frame = await c.recv_type("message")

Replies to requests (frames with an ``id``) are matched by id; every other
frame (``message``, ``presence_join``/``_leave``/``_count``, ``typing``,
``reset``, id-less errors) goes to one queue read by ``recv``. Frames are
plain dicts; ``RoomPresence`` folds the presence frames of one room into a
count and a (capped) member list.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


class ClientClosed(Exception):
    """The server closed the connection; ``code`` and ``reason`` say how."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}")
        self.code = code
        self.reason = reason


def make_token(
    secret: str,
    sub: str,
    name: str | None = None,
    rooms: list[str] | None = None,
    ttl: float | None = 3600,
    **claims: Any,
) -> str:
    """An HS256 token as the gateway expects it (tests and tools only)."""
    import jwt

    payload: dict[str, Any] = {"sub": sub, **claims}
    if name is not None:
        payload["name"] = name
    if rooms is not None:
        payload["rooms"] = rooms
    if ttl is not None:
        payload["exp"] = int(time.time() + ttl)
    return jwt.encode(payload, secret, algorithm="HS256")


async def guest_token(http_base: str, name: str) -> str:
    """Ask a gateway (with ALLOW_GUESTS=true) for a guest token."""
    import httpx

    async with httpx.AsyncClient(base_url=http_base, timeout=10) as http:
        response = await http.post("/auth/guest", json={"name": name})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token


class RoomPresence:
    """One room's presence as a client sees it: ``count``, the number of
    distinct users present (exact), and ``members``, the users it knows of
    (user id -> ``{"user", "connections"}``), which in a big room is only
    part of them: ``joined`` and ``presence`` list at most PRESENCE_LIST_MAX,
    and above PRESENCE_EVENTS_MAX users joins and leaves arrive as counts
    (``presence_count``), not names."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.count = 0
        self.members: dict[str, dict[str, Any]] = {}

    def apply(self, frame: dict[str, Any]) -> bool:
        """Fold in one frame; False when it is not this room's presence."""
        kind = frame.get("type")
        if frame.get("room") != self.room:
            return False
        if kind == "joined":
            self._replace(frame["presence"], frame["presence_count"])
        elif kind == "presence":
            self._replace(frame["members"], frame["count"])
        elif kind == "presence_join":
            user = frame["user"]
            self.members[user["id"]] = {"user": user, "connections": 1}
            self.count = frame["count"]
        elif kind == "presence_leave":
            self.members.pop(frame["user"]["id"], None)
            self.count = frame["count"]
        elif kind == "presence_count":
            self.count = frame["count"]
        else:
            return False
        return True

    @property
    def partial(self) -> bool:
        """Some users present are not in ``members`` (show "and N others")."""
        return self.count > len(self.members)

    def _replace(self, members: list[dict[str, Any]], count: int) -> None:
        self.members = {m["user"]["id"]: m for m in members}
        self.count = count


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        origin: str | None = None,
        bearer: bool = False,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> Client:
        """Open a connection and wait for ``welcome``.

        Raises ``ClientClosed`` when the server closes instead (e.g. 4001).
        With ``bearer=True`` the token goes in the Authorization header.
        """
        headers = {}
        if token is not None and bearer:
            headers["Authorization"] = f"Bearer {token}"
        elif token is not None:
            url += ("&" if "?" in url else "?") + f"token={token}"
        ws = await websockets.connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=timeout,
            max_size=None,
            compression=None,
            ping_interval=None,
            **kwargs,
        )
        client = cls(ws)
        client._reader = asyncio.create_task(client._read())
        try:
            first = await client.recv(timeout=timeout)
            if first.get("type") != "welcome":
                raise AssertionError(f"expected welcome, got {first}")
        except BaseException:
            # No usable client to hand back: don't leave its socket and reader behind.
            await client.close()
            raise
        client.welcome = first
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def node(self) -> str:
        node: str = self.welcome["node"]
        return node

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                fid = frame.get("id")
                waiter = self._pending.pop(fid, None) if fid is not None else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                else:
                    self._events.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""
            self._closed.set()
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ClientClosed(self.close_code, self.close_reason))

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        """Send a raw frame (a dict is JSON-encoded) without waiting."""
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.send(frame)

    async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a frame with a fresh ``id`` and return the reply with that id."""
        fid = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[fid] = waiter
        if self._closed.is_set():
            raise ClientClosed(self.close_code, self.close_reason)
        await self.send({**frame, "id": fid})
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._pending.pop(fid, None)

    async def join(
        self,
        room: str,
        *,
        since: dict[str, Any] | None = None,
        history: int | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        if history is not None:
            frame["history"] = history
        return await self.request(frame, timeout)

    async def leave(self, room: str) -> dict[str, Any]:
        return await self.request({"type": "leave", "room": room})

    async def publish(
        self, room: str, text: str, client_msg_id: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "publish", "room": room, "text": text}
        if client_msg_id is not None:
            frame["client_msg_id"] = client_msg_id
        return await self.request(frame, timeout)

    async def history(
        self, room: str, *, before: int | None = None, limit: int | None = None, view: str | None = None
    ) -> dict[str, Any]:
        """History as logged, or with ``view="latest"`` the messages with
        their edits, deletions and reactions applied."""
        frame: dict[str, Any] = {"type": "history", "room": room}
        if view is not None:
            frame["view"] = view
        if before is not None:
            frame["before"] = before
        if limit is not None:
            frame["limit"] = limit
        return await self.request(frame)

    # --- protocol §11: changes to messages, read state ---------------------------

    async def _change(
        self, kind: str, room: str, target: int, client_msg_id: str | None, timeout: float, **fields: Any
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": kind, "room": room, "target": target, **fields}
        if client_msg_id is not None:
            frame["client_msg_id"] = client_msg_id
        return await self.request(frame, timeout)

    async def edit(
        self, room: str, target: int, text: str, client_msg_id: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Replace the text of one's own message `target`; the reply is ``ack`` or ``error``."""
        return await self._change("edit", room, target, client_msg_id, timeout, text=text)

    async def delete(
        self, room: str, target: int, client_msg_id: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        return await self._change("delete", room, target, client_msg_id, timeout)

    async def react(
        self, room: str, target: int, emoji: str, client_msg_id: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """React to message `target`; a repeat is acked with ``offset`` null."""
        return await self._change("react", room, target, client_msg_id, timeout, emoji=emoji)

    async def unreact(
        self, room: str, target: int, emoji: str, client_msg_id: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        return await self._change("unreact", room, target, client_msg_id, timeout, emoji=emoji)

    async def read(self, room: str, offset: int) -> None:
        """Mark the room read up to `offset` (no reply; others get a ``read`` event)."""
        await self.send({"type": "read", "room": room, "offset": offset})

    async def directs(self, limit: int | None = None) -> dict[str, Any]:
        """The user's direct rooms, the most recently active first (``directs`` reply)."""
        frame: dict[str, Any] = {"type": "directs"}
        if limit is not None:
            frame["limit"] = limit
        return await self.request(frame)

    async def presence(self, room: str) -> dict[str, Any]:
        return await self.request({"type": "presence", "room": room})

    async def typing(self, room: str) -> None:
        await self.send({"type": "typing", "room": room})

    async def ping(self) -> dict[str, Any]:
        return await self.request({"type": "ping"})

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame that is not a reply to a request."""
        getter = asyncio.ensure_future(self._events.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._closed.is_set() and self._events.empty():
            raise ClientClosed(self.close_code, self.close_reason)
        raise TimeoutError(f"no frame within {timeout} s")

    async def recv_type(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next unsolicited frame of ``type_``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.0, deadline - time.monotonic()))
            if frame.get("type") == type_:
                return frame

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Wait until the server closes the connection; return (code, reason)."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()
        return self.close_code, self.close_reason

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
