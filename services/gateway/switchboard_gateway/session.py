"""What one client frame does: checks (permission, membership, limits, rate)
and the node call behind it. Every refusal is one ``error`` frame; too many
of them in 10 s close the connection with 1008.
"""

from __future__ import annotations

import logging
import time

from switchboard.protocol import codec, frames
from switchboard.protocol.codes import CloseCode, ErrorCode
from switchboard.protocol.errors import ProtocolError
from switchboard_gateway.auth import AuthError, verify_token
from switchboard_gateway.broker import BrokerOutcomeUnknown, BrokerUnavailable
from switchboard_gateway.connection import Connection
from switchboard_gateway.node import Node
from switchboard_gateway.publish_hook import HookRejected, HookUnavailable
from switchboard_gateway.userlimits import UserLimits

log = logging.getLogger("switchboard.session")


# The log entry kind each change frame appends (protocol §11).
_KIND_OF: dict[type[frames.ClientFrame], frames.EntryKind] = {
    frames.Edit: "edit",
    frames.Delete: "delete",
    frames.React: "react",
    frames.Unreact: "unreact",
}


def _retry_after_ms(wait_s: float) -> int:
    return max(1, round(wait_s * 1000))


class FrameHandler:
    def __init__(self, node: Node, limits: UserLimits) -> None:
        self.node = node
        self.settings = node.settings
        self.limits = limits

    async def handle(self, conn: Connection, data: str) -> None:
        """Serve one text frame. Frames of a connection are served one at a
        time, in order: that is what keeps its publishes in order."""
        self.node.metrics.frames_in.inc()
        wait_s = conn.frame_bucket.take(time.monotonic())
        if wait_s:  # before the frame is served: only its id is read
            refusal = ProtocolError(
                ErrorCode.RATE_LIMITED, "too many frames", codec.frame_id_of(data), retry_after=_retry_after_ms(wait_s)
            )
            self.refuse(conn, refusal)
            return
        frame_id = None
        try:
            frame = codec.decode_client_frame(data)
            frame_id = frame.id
            await self._dispatch(conn, frame)
        except ProtocolError as exc:
            self.refuse(conn, exc)
        except HookRejected as exc:
            self.refuse(conn, ProtocolError(ErrorCode.REJECTED, exc.message, frame_id))
        except HookUnavailable as exc:
            self.refuse(conn, ProtocolError(ErrorCode.UNAVAILABLE, f"{exc}; nothing was stored; retry", frame_id))
        except BrokerOutcomeUnknown:
            message = "the backplane did not answer: the message may be stored; retry with the same client_msg_id"
            self.refuse(conn, ProtocolError(ErrorCode.OUTCOME_UNKNOWN, message, frame_id))
        except BrokerUnavailable:
            message = "the backplane is unavailable; nothing was done; retry"
            self.refuse(conn, ProtocolError(ErrorCode.UNAVAILABLE, message, frame_id))
        except Exception:
            log.exception("internal error serving a frame of %s", conn.id)
            self.refuse(conn, ProtocolError(ErrorCode.INTERNAL, "internal error", frame_id))

    def refuse(self, conn: Connection, exc: ProtocolError) -> None:
        self.node.metrics.errors_out.labels(code=str(exc.code)).inc()
        conn.send_text(codec.encode_error(exc))
        if conn.errors.add(time.monotonic()):
            conn.close_soon(CloseCode.POLICY_VIOLATION, "too many errors")

    def _check_room(self, conn: Connection, frame: frames.ClientFrame, room: str) -> None:
        if not conn.principal.may_join(room):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed in room {room!r}", frame.id)

    def _check_member(self, conn: Connection, frame: frames.ClientFrame, room: str) -> None:
        if room not in conn.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"join room {room!r} first", frame.id)

    async def _check_publish_rate(self, conn: Connection, frame: frames.ClientFrame) -> None:
        # The connection's own bucket first (a flood costs no Redis
        # call), then the user's, shared by all their connections.
        wait_s = conn.bucket.take(time.monotonic()) or await self.limits.publish_wait(conn.user_id)
        if wait_s:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "publishing too fast", frame.id, retry_after=_retry_after_ms(wait_s)
            )

    def _check_text(self, frame: frames.ClientFrame, text: str) -> None:
        if len(text) > self.settings.max_text_chars:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"text is over {self.settings.max_text_chars} characters", frame.id
            )

    async def _change(self, conn: Connection, frame: frames.Edit | frames.Delete | frames.React | frames.Unreact) -> None:
        """edit, delete, react, unreact (protocol §11): log entries, checked
        and limited like a publish."""
        self._check_member(conn, frame, frame.room)
        await self._check_publish_rate(conn, frame)
        text = frame.text if isinstance(frame, frames.Edit) else ""
        self._check_text(frame, text)
        emoji = frame.emoji if isinstance(frame, (frames.React, frames.Unreact)) else None
        body = frames.MessageBody(
            user=conn.user, text=text, ts=int(time.time() * 1000), kind=_KIND_OF[type(frame)], target=frame.target, emoji=emoji
        )
        try:
            ack = await self.node.append(frame.room, body, frame.client_msg_id)
        except ProtocolError as exc:
            exc.frame_id = frame.id
            raise
        ack.id = frame.id
        conn.send_text(codec.encode(ack))

    async def _dispatch(self, conn: Connection, frame: frames.ClientFrame) -> None:
        node = self.node
        match frame:
            case frames.Publish(room=room, text=text, client_msg_id=cmid):
                self._check_member(conn, frame, room)
                await self._check_publish_rate(conn, frame)
                self._check_text(frame, text)
                ack = await node.publish(conn.user, room, text, cmid)
                ack.id = frame.id
                conn.send_text(codec.encode(ack))
            case frames.Edit() | frames.Delete() | frames.React() | frames.Unreact():
                await self._change(conn, frame)
            case frames.Read(room=room, offset=offset):
                self._check_member(conn, frame, room)
                node.read(conn, room, offset)
            case frames.Join(room=room):
                self._check_room(conn, frame, room)
                if room not in conn.rooms and len(conn.rooms) >= self.settings.max_rooms_per_connection:
                    raise ProtocolError(
                        ErrorCode.LIMIT_EXCEEDED,
                        f"at most {self.settings.max_rooms_per_connection} rooms per connection",
                        frame.id,
                    )
                await node.join(conn, frame)
            case frames.Leave(room=room):
                self._check_member(conn, frame, room)
                await node.leave(conn, room)
                conn.send_text(codec.encode(frames.Left(id=frame.id, room=room)))
            case frames.History(room=room, before=before, limit=limit, view=view):
                self._check_room(conn, frame, room)
                page = await node.history(room, before, limit, view, conn.user_id)
                page.id = frame.id
                conn.send_text(codec.encode(page))
            case frames.Presence(room=room):
                self._check_room(conn, frame, room)
                listing = await node.presence(room, self.settings.presence_list_max)
                listing.id = frame.id
                conn.send_text(codec.encode(listing))
            case frames.Typing(room=room):
                self._check_member(conn, frame, room)
                wait_s = conn.typing_bucket.take(time.monotonic()) or await self.limits.typing_wait(conn.user_id)
                if wait_s:
                    raise ProtocolError(
                        ErrorCode.RATE_LIMITED, "typing too often", frame.id, retry_after=_retry_after_ms(wait_s)
                    )
                await node.typing(conn, room)
            case frames.Ping():
                conn.send_text(codec.encode(frames.Pong(id=frame.id)))
            case frames.Refresh(token=token):
                await self._refresh(conn, frame, token)
            case frames.Directs(limit=limit):
                directs = await node.direct_rooms(conn.user_id, limit)
                directs.id = frame.id
                conn.send_text(codec.encode(directs))

    async def _refresh(self, conn: Connection, frame: frames.ClientFrame, token: str) -> None:
        """A new token for the same user: the connection lives on under its
        expiry and rooms; rooms it no longer allows are left."""
        try:
            principal = verify_token(token, self.settings.jwt_secret, max_lifetime_s=self.settings.max_token_lifetime_s)
        except AuthError as exc:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"refresh refused: {exc}", frame.id) from None
        if principal.user_id != conn.user_id:
            raise ProtocolError(ErrorCode.FORBIDDEN, "refresh refused: the token is for another user", frame.id)
        conn.renew(principal)
        for room in sorted(conn.rooms):
            if not principal.may_join(room):
                try:
                    await self.node.leave(conn, room)
                except BrokerUnavailable:
                    pass  # out of the room locally; its presence entry expires by itself
                conn.send_text(codec.encode(frames.Left(room=room, reason="forbidden")))
        exp = int(principal.expires_at) if principal.expires_at is not None else None
        conn.send_text(codec.encode(frames.Refreshed(id=frame.id, exp=exp)))
