// The WebSocket: one socket at a time, request/reply matching by `id`, an
// application-level keepalive, `join` frames that resume with `since`, and
// what each close code means for reconnecting (docs/protocol.md, close
// codes). Pending publishes live in outbox.js; what a frame means for the
// rooms is main.js's business.

const PING_INTERVAL_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15000;
const HISTORY_ON_FIRST_JOIN = 50;

export const Close = {
  POLICY: 1008,        // sustained abuse: back off long
  TOO_BIG: 1009,
  RESTART: 1012,       // the gateway drains: the balancer picks another one
  TRY_AGAIN: 1013,     // slow consumer or overload
  AUTH: 4001,          // token missing, invalid or expired: never reuse it
  KICKED: 4003,        // disconnected by the application: do not come back by ourselves
};

const rand = (lo, hi) => lo + Math.random() * (hi - lo);

/**
 * Capped exponential backoff with "equal jitter": attempt n waits between
 * half and all of min(cap, base * 2^n), so clients spread out yet every wait
 * has a floor. It only goes back to the start after a `welcome`: a socket
 * that is accepted and closed at once (a draining gateway answers 1012
 * before `welcome`) is a failed attempt like any other, or a fleet that
 * drains would turn into a reconnect storm.
 */
export class Backoff {
  constructor({ baseMs = BACKOFF_BASE_MS, capMs = BACKOFF_CAP_MS, random = Math.random } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.random = random;
    this.attempts = 0;
  }

  next() {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempts);
    this.attempts = Math.min(this.attempts + 1, 30);
    return Math.round(ceiling / 2 + this.random() * (ceiling / 2));
  }

  /** Start further up the curve (e.g. after a policy close). */
  atLeast(attempts) {
    this.attempts = Math.max(this.attempts, attempts);
  }

  reset() {
    this.attempts = 0;
  }
}

/** `join`, resuming after what we have when we have something. */
export function joinFrame(room) {
  const frame = { type: "join", room: room.name };
  if (room.loaded && room.epoch !== null) {
    // Resume: the server replays what we missed; if it can't, `history`
    // makes the fallback a reload of the last N.
    frame.since = { offset: room.lastOffset, epoch: room.epoch };
  }
  frame.history = HISTORY_ON_FIRST_JOIN;
  return frame;
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
}

/**
 * `url()` gives the socket URL, or null when there is no token to connect
 * with. `on` receives:
 *   status(kind, detail)     connecting | connected | reconnecting | offline | kicked
 *   welcome(frame, seq)      a socket is usable (rejoin rooms now)
 *   frame(frame, reply, seq) any other frame; `reply` is the request's meta
 *   closed(code, reason)     the socket is gone (what was joined is no longer)
 *   authExpired()            4001: get a new token, then call reconnectNow()
 *   kicked(reason)           4003: not reconnecting
 *   notify(text, options)    something the user should know
 */
export class Transport {
  constructor({ url, on }) {
    this.url = url;
    this.on = on;
    this.ws = null;
    this.seq = 0;               // increments per socket; callbacks of older ones are ignored
    this.connected = false;     // welcome received on the current socket
    this.node = null;
    this.backoff = new Backoff();
    this.reconnectTimer = null;
    this.countdown = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.nextId = 1;
    this.replies = new Map();   // request id -> meta (what the reply is for)
  }

  connect() {
    this.cancelReconnect();
    const url = this.url();
    if (!url) return;
    if (this.ws) {
      detach(this.ws);
      try { this.ws.close(1000, "reconnecting"); } catch { /* ignore */ }
    }
    const seq = ++this.seq;
    this.connected = false;
    this.on.status(this.backoff.attempts === 0 && !this.node ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect(this.backoff.next());
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (seq !== this.seq) return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this.receive(frame, seq);
    };
    ws.onclose = (ev) => {
      if (seq !== this.seq) return;
      this.closed(ev.code, ev.reason);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  /** Sign-out: close without reconnecting and forget the session. */
  stop() {
    this.seq++; // invalidate any socket callbacks in flight
    this.cancelReconnect();
    this.stopKeepalive();
    if (this.ws) {
      detach(this.ws);
      try { this.ws.close(1000, "sign out"); } catch { /* already closed */ }
    }
    this.ws = null;
    this.connected = false;
    this.node = null;
    this.replies.clear();
    this.backoff.reset();
  }

  send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends with a fresh `id`; returns it, or null when not sent. */
  request(frame, meta) {
    const id = `c${this.nextId++}`;
    frame.id = id;
    if (!this.send(frame)) return null;
    this.replies.set(id, { ...meta, conn: this.seq, at: Date.now() });
    return id;
  }

  receive(frame, seq) {
    clearTimeout(this.pongTimer); // any traffic proves the socket is alive
    const id = frame.id !== undefined && frame.id !== null ? String(frame.id) : null;
    const reply = id !== null ? this.replies.get(id) : null;
    if (reply) this.replies.delete(id);
    if (frame.type === "welcome") {
      this.connected = true;
      this.backoff.reset();
      this.cancelReconnect();
      this.node = frame.node ? String(frame.node) : "?";
      this.on.status("connected");
      this.startKeepalive();
      this.on.welcome(frame, seq);
      return;
    }
    this.on.frame(frame, reply, seq);
  }

  closed(code, reason) {
    this.ws = null;
    this.connected = false;
    this.node = null;
    this.stopKeepalive();
    this.replies.clear();
    this.on.closed(code, reason);
    if (!this.url()) return;

    switch (code) {
      case Close.AUTH:
        // Never retry with this token: the owner gets a new one first.
        this.on.authExpired();
        return;
      case Close.KICKED:
        this.on.status("kicked");
        this.on.kicked(reason);
        return;
      case Close.TRY_AGAIN: {
        const d = Math.max(3000, this.backoff.next() * 2);
        this.on.notify("The server is busy; reconnecting shortly.", { kind: "warn", key: "conn" });
        this.scheduleReconnect(Math.min(d, 30000) + Math.round(rand(0, 2000)));
        return;
      }
      case Close.POLICY:
        this.on.notify(
          `The server closed the connection (policy violation${reason ? `: ${reason}` : ""}). Retrying later.`,
          { kind: "error", key: "conn", timeout: 20000 },
        );
        this.backoff.atLeast(6);
        this.scheduleReconnect(Math.round(rand(30000, 60000)));
        return;
      case Close.TOO_BIG:
        this.on.notify("A frame was too large for the server.", { kind: "error", key: "conn" });
        this.scheduleReconnect(this.backoff.next());
        return;
      case Close.RESTART:
        // The gateway drains: the first retry comes soon (the balancer sends
        // it elsewhere); retries that only find draining gateways back off.
      default:
        this.scheduleReconnect(this.backoff.next());
    }
  }

  scheduleReconnect(delay) {
    this.cancelReconnect();
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, until - Date.now());
      if (!navigator.onLine) this.on.status("offline");
      else this.on.status("reconnecting", left >= 1000 ? `in ${Math.ceil(left / 1000)} s` : "");
    };
    tick();
    this.countdown = setInterval(tick, 1000);
    this.reconnectTimer = setTimeout(() => {
      this.cancelReconnect();
      this.connect();
    }, delay);
  }

  cancelReconnect() {
    clearTimeout(this.reconnectTimer);
    clearInterval(this.countdown);
    this.reconnectTimer = null;
    this.countdown = null;
  }

  /** The network is back: skip the rest of the wait. */
  retryNow() {
    if (this.url() && !this.connected && this.reconnectTimer) {
      this.cancelReconnect();
      this.connect();
    }
  }

  // keepalive: app-level ping every 25 s; no answer within 10 s => treat as dead
  startKeepalive() {
    this.stopKeepalive();
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      const seq = this.seq;
      this.pongTimer = setTimeout(() => {
        if (seq !== this.seq || !this.ws) return;
        const ws = this.ws;
        detach(ws);
        try { ws.close(4000, "keepalive timeout"); } catch { /* ignore */ }
        this.seq++;
        this.closed(1006, "keepalive timeout");
      }, PONG_TIMEOUT_MS);
    }, PING_INTERVAL_MS);
  }

  stopKeepalive() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = this.pongTimer = null;
  }
}
