// Edits, deletions and reactions the server has not acknowledged yet
// (protocol §11). Each goes with a `client_msg_id`, so sending it again after
// a reconnect is idempotent, like a publish; it is sent on every connection
// until its `ack`, retried after `rate_limited`/`unavailable`, and dropped
// with a notice when the server refuses it. Nothing is shown before the
// server logs it: the log entry that comes back is what changes the message.

import { rand, uuid } from "./outbox.js";

const REFUSED = {
  forbidden: "You can only edit or delete your own messages.",
  bad_request: "That message can no longer be changed.",
  limit_exceeded: "This message has as many different reactions as it can hold.",
  too_large: "That edit is too long.",
};

/**
 * `on` receives:
 *   rejoin(room)            the server says we are not in the room
 *   notify(text, options)
 */
export class Changes {
  constructor({ transport, store, on }) {
    this.transport = transport;
    this.store = store;
    this.on = on;
    this.unacked = new Map(); // client_msg_id -> {frame, room, sentConn, retryTimer}
  }

  /** `frame`: {type: edit|delete|react|unreact, target, text?|emoji?}. */
  send(roomName, frame) {
    const cmid = uuid();
    this.unacked.set(cmid, {
      cmid, room: roomName, frame: { ...frame, room: roomName, client_msg_id: cmid }, sentConn: 0, retryTimer: null,
    });
    this.flush(roomName);
  }

  /** Sends the room's unacked changes once it is joined on this socket. */
  flush(roomName) {
    const t = this.transport;
    const room = this.store.rooms.get(roomName);
    if (!room || !t.connected || room.joinedConn !== t.seq) return;
    for (const c of this.unacked.values()) {
      if (c.room !== roomName || c.sentConn === t.seq || c.retryTimer) continue;
      if (t.request({ ...c.frame }, { kind: "change", room: c.room, cmid: c.cmid })) c.sentConn = t.seq;
    }
  }

  /** The socket is gone: everything unacked goes again on the next one. */
  connectionLost() {
    for (const c of this.unacked.values()) c.sentConn = 0;
  }

  onAck(reply) {
    const c = this.unacked.get(reply.cmid);
    if (!c) return;
    clearTimeout(c.retryTimer);
    this.unacked.delete(reply.cmid);
  }

  onError(f, reply) {
    const c = this.unacked.get(reply.cmid);
    if (!c) return;
    if (f.code === "rate_limited" || f.code === "unavailable" || f.code === "internal") {
      const delay = f.code === "rate_limited" ? Math.max(100, Number(f.retry_after) || 1000) : Math.round(rand(1000, 3000));
      c.sentConn = 0;
      clearTimeout(c.retryTimer);
      c.retryTimer = setTimeout(() => {
        c.retryTimer = null;
        this.flush(c.room);
      }, delay);
      return;
    }
    if (f.code === "not_joined") {
      c.sentConn = 0;
      this.on.rejoin(c.room);
      return;
    }
    this.unacked.delete(c.cmid);
    this.on.notify(REFUSED[f.code] || `The server refused that change: ${f.message || f.code}`, {
      kind: "error", key: "change",
    });
  }

  /** The room was left: nothing of it is sent any more. */
  forgetRoom(roomName) {
    for (const c of [...this.unacked.values()]) {
      if (c.room !== roomName) continue;
      clearTimeout(c.retryTimer);
      this.unacked.delete(c.cmid);
    }
  }

  /** Sign-out. */
  clear() {
    for (const c of this.unacked.values()) clearTimeout(c.retryTimer);
    this.unacked.clear();
  }
}
