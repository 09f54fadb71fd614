// Publishes the server has not confirmed yet. Each is sent on every
// connection until its `ack` (its `client_msg_id` makes a resend
// idempotent), retried after `rate_limited`/`unavailable`, and once acked
// kept as a "Sent" ghost until its message arrives, or ACK_GRACE_MS passes
// and it is shown from what the ack said. Leaving a room or signing out
// forgets that room's (or every) pending publish, timers included.

const ACK_GRACE_MS = 5000;

export const rand = (lo, hi) => lo + Math.random() * (hi - lo);

// A client_msg_id: also used by changes.js for edits, deletions and reactions.
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain-http LAN demos fall back to this.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const waiterKey = (room, offset) => `${room}\u0000${offset}`;

/**
 * A pending publish: {cmid, room, text, createdAt, status, error, sentConn,
 * retryTimer, matched, ackTimer, ackOffset}. `status` is pending, sent,
 * rate_limited, retrying or failed.
 *
 * `on` receives:
 *   changed(p)          its status changed
 *   hidden(p)           its message arrived before the ack: stop showing it
 *   removed(p)          it is settled or forgotten: stop showing it
 *   ackedUnseen(p, ack) the grace after the ack passed without the message
 *   rejoin(room)        the server says we are not in the room
 *   notify(text, options)
 */
export class Outbox {
  constructor({ transport, store, on }) {
    this.transport = transport;
    this.store = store;
    this.on = on;
    this.unacked = new Map();   // client_msg_id -> pending (insertion order = send order)
    this.ackWaiters = new Map(); // "room\0offset" -> pending (acked, waiting for its message)
  }

  add(room, text) {
    const p = {
      cmid: uuid(), room, text, sentConn: 0, retryTimer: null, status: "pending",
      error: null, matched: null, ackTimer: null, ackOffset: null, createdAt: Date.now(),
    };
    this.unacked.set(p.cmid, p);
    return p;
  }

  /** What the room's pending list shows: acked ghosts first, then unacked. */
  visibleIn(room) {
    const out = [];
    const shown = new Set();
    for (const p of [...this.ackWaiters.values(), ...this.unacked.values()]) {
      if (p.room === room && !shown.has(p.cmid)) {
        shown.add(p.cmid);
        out.push(p);
      }
    }
    return out;
  }

  /** Sends the room's unacked publishes once it is joined on this socket. */
  flush(roomName) {
    const t = this.transport;
    const room = this.store.rooms.get(roomName);
    if (!room || !t.connected || room.joinedConn !== t.seq) return;
    for (const p of this.unacked.values()) {
      if (p.room !== roomName || p.sentConn === t.seq || p.retryTimer || p.status === "failed") continue;
      const id = t.request(
        { type: "publish", room: p.room, text: p.text, client_msg_id: p.cmid },
        { kind: "publish", room: p.room, cmid: p.cmid },
      );
      if (id) {
        p.sentConn = t.seq;
        p.status = "pending";
        this.on.changed(p);
      }
    }
  }

  /** The socket is gone: everything unacked goes again on the next one. */
  connectionLost() {
    for (const p of this.unacked.values()) {
      p.sentConn = 0;
      this.on.changed(p);
    }
  }

  onAck(f, reply) {
    const cmid = reply && reply.cmid;
    const p = cmid ? this.unacked.get(cmid) : null;
    if (!p) return;
    this.unacked.delete(cmid);
    clearTimeout(p.retryTimer);
    const room = this.store.rooms.get(p.room);
    if (room && f.epoch && room.epoch && f.epoch !== room.epoch) {
      this.on.removed(p);
      return;
    }
    if (!room || room.byOffset.has(f.offset) || f.offset <= room.trimmedFloor()) {
      this.on.removed(p);
      return;
    }
    // Acked, but the live message hasn't arrived yet: keep the ghost briefly,
    // then fall back to rendering from what we know.
    const key = waiterKey(p.room, f.offset);
    p.status = "sent";
    p.ackOffset = f.offset;
    this.on.changed(p);
    p.ackTimer = setTimeout(() => {
      if (this.ackWaiters.get(key) !== p) return;
      this.ackWaiters.delete(key);
      this.on.removed(p);
      this.on.ackedUnseen(p, f);
    }, ACK_GRACE_MS);
    this.ackWaiters.set(key, p);
  }

  /** A message arrived in `roomName`: settle the publish it confirms. */
  settle(roomName, msg) {
    const key = waiterKey(roomName, msg.offset);
    const waiter = this.ackWaiters.get(key);
    if (waiter) {
      this.ackWaiters.delete(key);
      clearTimeout(waiter.ackTimer);
      this.on.removed(waiter);
      return;
    }
    if (!this.store.isMine(msg.user)) return;
    // Message frame before the ack: hide the oldest in-flight publish with the same text.
    for (const p of this.unacked.values()) {
      if (p.room === roomName && p.text === msg.text && p.sentConn && !p.matched) {
        p.matched = msg.offset;
        this.on.hidden(p);
        return;
      }
    }
  }

  onError(f, reply) {
    const p = this.unacked.get(reply.cmid);
    if (!p) return;
    const code = f.code;
    if (code === "rate_limited" || code === "unavailable" || code === "internal") {
      const delay = code === "rate_limited"
        ? Math.max(100, Number(f.retry_after) || 1000)
        : Math.round(rand(1000, 3000));
      p.status = code === "rate_limited" ? "rate_limited" : "retrying";
      p.sentConn = 0;
      clearTimeout(p.retryTimer);
      p.retryTimer = setTimeout(() => {
        p.retryTimer = null;
        this.flush(p.room);
      }, delay);
      this.on.changed(p);
      if (code === "rate_limited") {
        this.on.notify(`You're sending too fast — retrying in ${(delay / 1000).toFixed(1)} s.`, {
          kind: "warn", key: "rate", timeout: Math.max(3000, delay + 500),
        });
      }
      return;
    }
    if (code === "not_joined") {
      // Rejoin, then the publish is flushed again after `joined`.
      p.sentConn = 0;
      this.on.rejoin(p.room);
      return;
    }
    p.status = "failed";
    p.error = code === "too_large"
      ? "Too long — the server refused this message."
      : f.message || code;
    this.on.changed(p);
    if (code === "too_large") {
      this.on.notify("That message is too long for the server; shorten it and send again.", {
        kind: "error", key: "too_large",
      });
    }
  }

  /** "Retry" on a failed publish. */
  retry(p) {
    if (this.unacked.get(p.cmid) !== p) return;
    p.status = "pending";
    p.sentConn = 0;
    p.matched = null;
    this.on.changed(p);
    this.flush(p.room);
  }

  /** "Discard" on a failed publish, or its room was left. */
  discard(p) {
    this.unacked.delete(p.cmid);
    clearTimeout(p.retryTimer);
    this.on.removed(p);
  }

  /** The room was left: nothing of it is sent or awaited any more. */
  forgetRoom(roomName) {
    for (const p of [...this.unacked.values()]) if (p.room === roomName) this.discard(p);
    for (const [key, p] of [...this.ackWaiters]) {
      if (p.room !== roomName) continue;
      this.ackWaiters.delete(key);
      clearTimeout(p.ackTimer);
      this.on.removed(p);
    }
  }

  /** Sign-out: forget every pending publish and stop its timers. */
  clear() {
    for (const p of this.unacked.values()) clearTimeout(p.retryTimer);
    for (const p of this.ackWaiters.values()) clearTimeout(p.ackTimer);
    this.unacked.clear();
    this.ackWaiters.clear();
  }
}
