// Switchboard browser client. Plain ES2020 module, no dependencies.
//
// Speaks chat wire protocol v1 (docs/protocol.md). Security rule for this
// file: user-controlled strings (message text, names, room names, server error
// messages) only ever go through textContent / attributes, never innerHTML.

const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const DEFAULT_ROOM = "lobby";
const HISTORY_ON_FIRST_JOIN = 50;
const MAX_TEXT_CHARS = 2000;          // server default; the server has the last word
const MAX_FRAME_BYTES = 16384;        // server default: a bigger frame is closed with 1009
const PING_INTERVAL_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const TYPING_SEND_EVERY_MS = 2000;
const TYPING_SHOW_MS = 4000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15000;
const STABLE_CONNECTION_MS = 10000;   // a connection this old resets the backoff
const ACK_GRACE_MS = 5000;            // after an ack, wait this long for the live message
const MAX_MESSAGES_PER_ROOM = 1000;
const GROUP_WINDOW_MS = 5 * 60 * 1000;

const SS = {
  token: "switchboard.token",
  user: "switchboard.user",
  name: "switchboard.name",
  myIds: "switchboard.myIds",
  rooms: "switchboard.rooms",
  current: "switchboard.current",
};

// ---------------------------------------------------------------- DOM helpers

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const ui = {
  signinView: $("signin-view"),
  signinForm: $("signin-form"),
  nameInput: $("name-input"),
  signinButton: $("sign-in"),
  signinError: $("signin-error"),
  chatView: $("chat-view"),
  account: $("account"),
  meLabel: $("me-label"),
  signOut: $("sign-out"),
  connState: $("connection-state"),
  nodeBadge: $("node-badge"),
  roomList: $("room-list"),
  joinForm: $("join-form"),
  roomInput: $("room-input"),
  joinError: $("join-error"),
  presenceList: $("presence-list"),
  presenceCount: $("presence-count"),
  roomTitle: $("room-title"),
  leaveRoom: $("leave-room"),
  notices: $("notices"),
  scroller: $("scroller"),
  emptyState: $("empty-state"),
  messageList: $("message-list"),
  pendingList: $("pending-list"),
  jumpLatest: $("jump-latest"),
  typing: $("typing"),
  composer: $("composer"),
  messageInput: $("message-input"),
  messageLabel: $("message-label"),
  announcer: $("announcer"),
};

// ---------------------------------------------------------------- small utils

const pad2 = (n) => String(n).padStart(2, "0");

function hhmm(ts) {
  const d = new Date(ts);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function codePoints(s) {
  let n = 0;
  for (const _ of s) n++; // eslint-disable-line no-unused-vars
  return n;
}

function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain-http LAN demos fall back to this.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const rand = (lo, hi) => lo + Math.random() * (hi - lo);

function hashHue(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(h) % 360;
}

function initialOf(name) {
  const first = [...(name || "?").trim()][0] || "?";
  return first.toUpperCase();
}

function ssGet(key, fallback = null) {
  try {
    const v = sessionStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

function ssSet(key, value) {
  try {
    if (value === null || value === undefined) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the session just won't survive a reload */
  }
}

// ---------------------------------------------------------------- state

const state = {
  token: null,
  user: null,            // {id, name} from the server
  name: null,            // the name the user typed (for token refresh)
  myIds: new Set(),      // every user id this session has had (a token refresh changes it)
  rooms: new Map(),      // room -> Room
  current: null,
  // connection
  ws: null,
  connSeq: 0,            // increments per socket; lets us ignore stale sockets
  connected: false,      // welcome received on the current socket
  connectedAt: 0,
  attempt: 0,
  reconnectTimer: null,
  countdown: null,
  pingTimer: null,
  pongTimer: null,
  authFailures: 0,
  node: null,
  nextId: 1,
  replies: new Map(),    // request id -> {kind, room, cmid}
  unacked: new Map(),    // client_msg_id -> Pending (insertion order = send order)
};

class Room {
  constructor(name) {
    this.name = name;
    this.messages = [];          // sorted by offset, unique
    this.byOffset = new Map();   // offset -> message
    this.epoch = null;
    this.lastOffset = 0;
    this.loaded = false;         // got at least one `joined` (since is meaningful)
    this.joinedConn = 0;         // connSeq on which `joined` arrived
    this.joinSentConn = 0;
    this.presence = new Map();   // user id -> {user, connections}
    this.typing = new Map();     // user id -> {name, timer}
    this.lastTypingSent = 0;
    this.unread = 0;
  }
}

function persistRooms() {
  ssSet(SS.rooms, [...state.rooms.keys()]);
  ssSet(SS.current, state.current);
}

function isMine(user) {
  return !!user && state.myIds.has(user.id);
}

// ---------------------------------------------------------------- connection state UI

function setConnState(kind, detail = "") {
  // Text is read by tests: it contains "connected", "connecting", "reconnecting"
  // or "signed out". Never "disconnected" (that would contain "connected").
  const labels = {
    "signed-out": "signed out",
    connecting: "connecting…",
    connected: "connected",
    reconnecting: "reconnecting…",
    offline: "offline — reconnecting…",
  };
  ui.connState.dataset.state = kind;
  ui.connState.textContent = detail ? `${labels[kind]} ${detail}` : labels[kind];
  document.body.dataset.conn = kind;
  updateComposerState();
}

function setNode(node) {
  state.node = node;
  if (node) {
    ui.nodeBadge.textContent = `served by ${node}`;
    ui.nodeBadge.hidden = false;
  } else {
    ui.nodeBadge.hidden = true;
  }
}

// ---------------------------------------------------------------- notices

function notify(text, { kind = "info", room = null, timeout = 8000, key = null } = {}) {
  if (key) {
    for (const n of ui.notices.querySelectorAll("[data-key]")) {
      if (n.dataset.key === key) n.remove();
    }
  }
  const close = el("button", {
    type: "button", class: "notice-close", "aria-label": "Dismiss", text: "×",
  });
  const item = el("div", {
    class: `notice notice-${kind}`, "data-testid": "notice", role: kind === "error" ? "alert" : null,
    dataset: { kind, ...(key ? { key } : {}), ...(room ? { room } : {}) },
  }, el("span", { class: "notice-text", text }), close);
  close.addEventListener("click", () => item.remove());
  ui.notices.append(item);
  while (ui.notices.children.length > 4) ui.notices.firstElementChild.remove();
  if (timeout) setTimeout(() => item.remove(), timeout);
  return item;
}

function announce(text) {
  const p = el("p", { text });
  ui.announcer.append(p);
  while (ui.announcer.children.length > 5) ui.announcer.firstElementChild.remove();
}

// ---------------------------------------------------------------- sign-in

async function fetchGuestToken(name) {
  let res;
  try {
    res = await fetch("/auth/guest", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
  } catch {
    const err = new Error("Can't reach the server. Check your connection and try again.");
    err.retryable = true;
    throw err;
  }
  if (res.status === 404) {
    const err = new Error("Guest sign-in is disabled on this server.");
    err.code = "guests_disabled";
    throw err;
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok || !body || typeof body.token !== "string") {
    const msg = (body && (body.message || body.error)) || `Sign-in failed (HTTP ${res.status}).`;
    const err = new Error(String(msg));
    err.retryable = res.status >= 500 || res.status === 429;
    throw err;
  }
  return body;
}

function adoptIdentity(name, body) {
  state.token = body.token;
  state.user = body.user && typeof body.user === "object" ? body.user : { id: name, name };
  state.name = name;
  state.myIds.add(state.user.id);
  ssSet(SS.token, state.token);
  ssSet(SS.user, state.user);
  ssSet(SS.name, name);
  ssSet(SS.myIds, [...state.myIds]);
  ui.meLabel.textContent = state.user.name || name;
  ui.meLabel.title = state.user.id;
}

async function onSignIn(ev) {
  ev.preventDefault();
  const name = ui.nameInput.value.trim();
  ui.signinError.textContent = "";
  if (!name) {
    ui.signinError.textContent = "Please enter a display name.";
    ui.nameInput.focus();
    return;
  }
  ui.signinButton.disabled = true;
  ui.signinButton.textContent = "Signing in…";
  try {
    const body = await fetchGuestToken(name);
    state.myIds = new Set();
    adoptIdentity(name, body);
    enterChat([DEFAULT_ROOM], DEFAULT_ROOM);
  } catch (e) {
    ui.signinError.textContent = e.message;
    ui.nameInput.focus();
  } finally {
    ui.signinButton.disabled = false;
    ui.signinButton.textContent = "Sign in";
  }
}

function enterChat(roomNames, current) {
  ui.signinView.hidden = true;
  ui.chatView.hidden = false;
  ui.account.hidden = false;
  state.rooms.clear();
  for (const r of roomNames) if (ROOM_RE.test(r)) state.rooms.set(r, new Room(r));
  if (!state.rooms.size) state.rooms.set(DEFAULT_ROOM, new Room(DEFAULT_ROOM));
  state.current = state.rooms.has(current) ? current : state.rooms.keys().next().value;
  persistRooms();
  renderRoomList();
  renderCurrentRoom();
  connect();
  ui.messageInput.focus();
}

function signOut(message = "") {
  state.connSeq++; // invalidate any socket callbacks in flight
  cancelReconnect();
  stopKeepalive();
  if (state.ws) {
    detach(state.ws);
    try { state.ws.close(1000, "sign out"); } catch { /* already closed */ }
  }
  state.ws = null;
  state.connected = false;
  state.token = null;
  state.user = null;
  state.rooms.clear();
  state.current = null;
  state.unacked.clear();
  state.replies.clear();
  state.authFailures = 0;
  for (const k of Object.values(SS)) ssSet(k, null);
  setNode(null);
  setConnState("signed-out");
  ui.chatView.hidden = true;
  ui.account.hidden = true;
  ui.signinView.hidden = false;
  ui.messageList.replaceChildren();
  ui.pendingList.replaceChildren();
  ui.notices.replaceChildren();
  ui.signinError.textContent = message;
  if (state.name) ui.nameInput.value = state.name;
  ui.nameInput.focus();
}

// ---------------------------------------------------------------- socket

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?token=${encodeURIComponent(state.token)}`;
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
}

function connect() {
  cancelReconnect();
  if (!state.token) return;
  if (state.ws) {
    detach(state.ws);
    try { state.ws.close(1000, "reconnecting"); } catch { /* ignore */ }
  }
  const seq = ++state.connSeq;
  state.connected = false;
  setConnState(state.attempt === 0 && !state.node ? "connecting" : "reconnecting");
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch {
    scheduleReconnect(backoffDelay());
    return;
  }
  state.ws = ws;
  ws.onmessage = (ev) => {
    if (seq !== state.connSeq) return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (frame && typeof frame === "object") handleFrame(frame, seq);
  };
  ws.onclose = (ev) => {
    if (seq !== state.connSeq) return;
    onSocketClosed(ev.code, ev.reason);
  };
  ws.onerror = () => { /* onclose follows */ };
}

function send(frame) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(frame));
  return true;
}

function request(frame, meta) {
  const id = `c${state.nextId++}`;
  frame.id = id;
  if (!send(frame)) return null;
  state.replies.set(id, { ...meta, conn: state.connSeq, at: Date.now() });
  return id;
}

function backoffDelay() {
  // Exponential backoff with full jitter.
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
  state.attempt = Math.min(state.attempt + 1, 20);
  return Math.round(Math.random() * ceiling);
}

function scheduleReconnect(delay) {
  cancelReconnect();
  const until = Date.now() + delay;
  const tick = () => {
    const left = Math.max(0, until - Date.now());
    if (!navigator.onLine) setConnState("offline");
    else setConnState("reconnecting", left >= 1000 ? `in ${Math.ceil(left / 1000)} s` : "");
  };
  tick();
  state.countdown = setInterval(tick, 1000);
  state.reconnectTimer = setTimeout(() => {
    cancelReconnect();
    connect();
  }, delay);
}

function cancelReconnect() {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdown);
  state.reconnectTimer = null;
  state.countdown = null;
}

function onSocketClosed(code, reason) {
  const wasConnected = state.connected;
  const lived = wasConnected ? Date.now() - state.connectedAt : 0;
  state.ws = null;
  state.connected = false;
  stopKeepalive();
  for (const room of state.rooms.values()) {
    room.joinedConn = 0;
    room.joinSentConn = 0;
    clearTyping(room);
    room.presence.clear(); // unknown while offline; the next `joined` refills it
  }
  setNode(null);
  renderPresence();
  state.replies.clear();
  for (const p of state.unacked.values()) {
    p.sentConn = 0;
    renderPendingStatus(p);
  }
  if (lived >= STABLE_CONNECTION_MS) state.attempt = 0;
  if (!state.token) return;

  switch (code) {
    case 4001:
      // Token missing/invalid/expired: never retry with it.
      refreshTokenAndReconnect();
      return;
    case 1012:
      // Gateway draining: reconnect soon (the load balancer picks another one).
      scheduleReconnect(Math.round(rand(100, 500)));
      return;
    case 1013: {
      // Slow consumer / overload: back off longer.
      const d = Math.max(3000, backoffDelay() * 2);
      notify("The server is busy; reconnecting shortly.", { kind: "warn", key: "conn" });
      scheduleReconnect(Math.min(d, 30000) + Math.round(rand(0, 2000)));
      return;
    }
    case 1008:
      notify(
        `The server closed the connection (policy violation${reason ? `: ${reason}` : ""}). Retrying later.`,
        { kind: "error", key: "conn", timeout: 20000 },
      );
      state.attempt = Math.max(state.attempt, 6);
      scheduleReconnect(Math.round(rand(30000, 60000)));
      return;
    case 1009:
      notify("A frame was too large for the server.", { kind: "error", key: "conn" });
      scheduleReconnect(backoffDelay());
      return;
    default:
      scheduleReconnect(backoffDelay());
  }
}

async function refreshTokenAndReconnect() {
  state.authFailures++;
  state.token = null;
  ssSet(SS.token, null);
  setConnState("reconnecting", "(renewing session)");
  if (state.authFailures > 3 || !state.name) {
    signOut("Your session expired. Please sign in again.");
    return;
  }
  const seq = state.connSeq;
  try {
    const body = await fetchGuestToken(state.name);
    if (seq !== state.connSeq) return; // signed out meanwhile
    adoptIdentity(state.name, body);
    // A fresh token that fails again right away backs off a little.
    scheduleReconnect(state.authFailures > 1 ? backoffDelay() : 0);
  } catch (e) {
    if (seq !== state.connSeq) return;
    if (e.retryable) {
      // Network trouble: keep the name, try the refresh again with backoff.
      state.authFailures--;
      setConnState("reconnecting");
      const d = backoffDelay();
      setTimeout(() => { if (seq === state.connSeq && !state.token) refreshTokenAndReconnect(); }, d);
      return;
    }
    signOut(e.code === "guests_disabled"
      ? "Your session expired and guest sign-in is now disabled."
      : "Your session expired. Please sign in again.");
  }
}

// keepalive: app-level ping every 25 s; no answer within 10 s => treat as dead
function startKeepalive() {
  stopKeepalive();
  state.pingTimer = setInterval(() => {
    if (!send({ type: "ping" })) return;
    clearTimeout(state.pongTimer);
    const seq = state.connSeq;
    state.pongTimer = setTimeout(() => {
      if (seq !== state.connSeq || !state.ws) return;
      const ws = state.ws;
      detach(ws);
      try { ws.close(4000, "keepalive timeout"); } catch { /* ignore */ }
      state.connSeq++;
      onSocketClosed(1006, "keepalive timeout");
    }, PONG_TIMEOUT_MS);
  }, PING_INTERVAL_MS);
}

function stopKeepalive() {
  clearInterval(state.pingTimer);
  clearTimeout(state.pongTimer);
  state.pingTimer = state.pongTimer = null;
}

// ---------------------------------------------------------------- frames

function handleFrame(f, seq) {
  clearTimeout(state.pongTimer); // any traffic proves the socket is alive
  const reply = f.id !== undefined && f.id !== null ? state.replies.get(String(f.id)) : null;
  if (reply) state.replies.delete(String(f.id));

  switch (f.type) {
    case "welcome": return onWelcome(f);
    case "joined": return onJoined(f, seq);
    case "message": return onMessage(f);
    case "ack": return onAck(f, reply);
    case "error": return onError(f, reply);
    case "presence": return onPresence(f);
    case "presence_join": return onPresenceJoin(f);
    case "presence_leave": return onPresenceLeave(f);
    case "typing": return onTyping(f);
    case "reset": return onReset(f);
    case "history": return onHistory(f);
    case "left":
    case "pong":
    default:
      return undefined;
  }
}

function onWelcome(f) {
  state.connected = true;
  state.connectedAt = Date.now();
  state.authFailures = 0;
  cancelReconnect();
  if (f.user && f.user.id) {
    state.myIds.add(f.user.id);
    ssSet(SS.myIds, [...state.myIds]);
  }
  setNode(f.node ? String(f.node) : "?");
  setConnState("connected");
  for (const n of ui.notices.querySelectorAll('[data-key="conn"]')) n.remove();
  startKeepalive();
  for (const room of state.rooms.values()) sendJoin(room);
}

function sendJoin(room) {
  const frame = { type: "join", room: room.name };
  if (room.loaded && room.epoch !== null) {
    // Resume: the server replays what we missed; if it can't, `history`
    // makes the fallback a reload of the last N.
    frame.since = { offset: room.lastOffset, epoch: room.epoch };
  }
  frame.history = HISTORY_ON_FIRST_JOIN;
  if (request(frame, { kind: "join", room: room.name })) room.joinSentConn = state.connSeq;
}

function onJoined(f, seq) {
  const room = state.rooms.get(f.room);
  if (!room) {
    // We left it locally while the join was in flight.
    send({ type: "leave", room: f.room });
    return;
  }
  const incoming = Array.isArray(f.messages) ? f.messages : [];
  if (f.recovered === true && room.epoch === f.epoch) {
    for (const m of incoming) insertMessage(room, m, { live: false });
  } else {
    // Reload: replace with the snapshot, but keep anything newer that already
    // arrived live under the same epoch.
    const keep = room.messages.filter((m) => m.epoch === f.epoch && m.offset > (f.offset || 0));
    room.messages = [];
    room.byOffset.clear();
    for (const m of incoming) insertMessage(room, m, { live: false, render: false });
    for (const m of keep) insertMessage(room, m, { live: false, render: false });
    if (room.loaded && f.recovered === false) {
      notify(`Reloaded #${room.name}: some messages could not be recovered.`, {
        kind: "info", room: room.name,
      });
    }
    if (room.name === state.current) renderMessages();
  }
  room.epoch = f.epoch ?? room.epoch;
  room.lastOffset = Math.max(
    typeof f.offset === "number" ? f.offset : 0,
    room.messages.length ? room.messages[room.messages.length - 1].offset : 0,
  );
  room.loaded = true;
  room.joinedConn = seq;

  room.presence.clear();
  for (const p of Array.isArray(f.presence) ? f.presence : []) {
    if (p && p.user && p.user.id) room.presence.set(p.user.id, p);
  }
  if (room.name === state.current) {
    renderPresence();
    updateComposerState();
  }
  renderRoomList();
  flushUnacked(room.name);
}

function validMessage(m) {
  return m && typeof m === "object" && Number.isInteger(m.offset) && m.offset > 0;
}

// Insert keeping room.messages sorted and unique by offset. Returns true if new.
function insertMessage(room, m, { live = true, render = true } = {}) {
  if (!validMessage(m) || room.byOffset.has(m.offset)) return false;
  const msg = {
    offset: m.offset,
    epoch: m.epoch ?? room.epoch,
    msg_id: m.msg_id,
    user: m.user && typeof m.user === "object" ? m.user : { id: "?", name: "?" },
    text: typeof m.text === "string" ? m.text : String(m.text ?? ""),
    ts: typeof m.ts === "number" ? m.ts : Date.now(),
  };
  const arr = room.messages;
  let idx;
  if (!arr.length || arr[arr.length - 1].offset < msg.offset) {
    idx = arr.length;
  } else {
    let lo = 0;
    let hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (arr[mid].offset < msg.offset) lo = mid + 1;
      else hi = mid;
    }
    idx = lo;
  }
  arr.splice(idx, 0, msg);
  room.byOffset.set(msg.offset, msg);
  let trimmed = false;
  while (arr.length > MAX_MESSAGES_PER_ROOM) {
    room.byOffset.delete(arr.shift().offset);
    trimmed = true;
  }
  if (msg.offset > room.lastOffset) room.lastOffset = msg.offset;

  // A pending publish of ours whose message is now visible: hide the ghost.
  settlePendingFor(room.name, msg);

  if (render && room.name === state.current) {
    if (trimmed) renderMessages();
    else renderInsertedMessage(room, arr.indexOf(msg));
  } else if (live && room.name !== state.current && !isMine(msg.user)) {
    room.unread++;
    renderRoomList();
  }
  if (live && room.name === state.current && !isMine(msg.user)) {
    announce(`${msg.user.name || msg.user.id}: ${msg.text}`);
  }
  return true;
}

function onMessage(f) {
  const room = state.rooms.get(f.room);
  if (!room || !validMessage(f)) return;
  if (room.epoch !== null && f.epoch && f.epoch !== room.epoch) {
    // The room's history was replaced under a new epoch (we may have missed
    // the `reset`): start over with the new epoch.
    resetRoom(room, f.epoch, 0, true);
  }
  if (room.epoch === null && f.epoch) room.epoch = f.epoch;
  const typingOf = f.user && room.typing.get(f.user.id);
  if (typingOf) {
    clearTimeout(typingOf.timer);
    room.typing.delete(f.user.id);
    if (room.name === state.current) renderTyping();
  }
  insertMessage(room, f, { live: true });
}

function onReset(f) {
  const room = state.rooms.get(f.room);
  if (!room) return;
  resetRoom(room, f.epoch, typeof f.offset === "number" ? f.offset : 0, true);
}

function resetRoom(room, epoch, offset, noticeIt) {
  room.messages = [];
  room.byOffset.clear();
  room.epoch = epoch ?? null;
  room.lastOffset = offset;
  if (room.name === state.current) renderMessages();
  if (noticeIt) {
    notify(`The history of #${room.name} was lost on the server and has been reset.`, {
      kind: "warn", room: room.name, timeout: 15000, key: `reset:${room.name}`,
    });
  }
}

function onHistory(f) {
  const room = state.rooms.get(f.room);
  if (!room || !Array.isArray(f.messages)) return;
  if (f.epoch && room.epoch && f.epoch !== room.epoch) return;
  for (const m of f.messages) insertMessage(room, m, { live: false, render: false });
  if (room.name === state.current) renderMessages({ keepScroll: true });
}

function onPresence(f) {
  const room = state.rooms.get(f.room);
  if (!room || !Array.isArray(f.members)) return;
  room.presence.clear();
  for (const p of f.members) if (p && p.user && p.user.id) room.presence.set(p.user.id, p);
  if (room.name === state.current) renderPresence();
}

function onPresenceJoin(f) {
  const room = state.rooms.get(f.room);
  if (!room || !f.user || !f.user.id) return;
  const prev = room.presence.get(f.user.id);
  room.presence.set(f.user.id, { user: f.user, connections: prev ? prev.connections : 1 });
  if (room.name === state.current) renderPresence();
}

function onPresenceLeave(f) {
  const room = state.rooms.get(f.room);
  if (!room || !f.user || !f.user.id) return;
  room.presence.delete(f.user.id);
  const t = room.typing.get(f.user.id);
  if (t) {
    clearTimeout(t.timer);
    room.typing.delete(f.user.id);
  }
  if (room.name === state.current) {
    renderPresence();
    renderTyping();
  }
}

function onTyping(f) {
  const room = state.rooms.get(f.room);
  if (!room || !f.user || !f.user.id || isMine(f.user)) return;
  const prev = room.typing.get(f.user.id);
  if (prev) clearTimeout(prev.timer);
  const entry = {
    name: f.user.name || f.user.id,
    timer: setTimeout(() => {
      room.typing.delete(f.user.id);
      if (room.name === state.current) renderTyping();
    }, TYPING_SHOW_MS),
  };
  room.typing.set(f.user.id, entry);
  if (room.name === state.current) renderTyping();
}

function clearTyping(room) {
  for (const t of room.typing.values()) clearTimeout(t.timer);
  room.typing.clear();
  if (room.name === state.current) renderTyping();
}

function onError(f, reply) {
  const code = f.code || "error";
  const message = f.message || code;
  if (reply && reply.kind === "publish") return onPublishError(f, reply);
  if (reply && reply.kind === "join") {
    const room = state.rooms.get(reply.room);
    const why = {
      forbidden: `You are not allowed to join #${reply.room}.`,
      limit_exceeded: `You have joined too many rooms; leave one before joining #${reply.room}.`,
      bad_request: `Can't join #${reply.room}: ${message}`,
    }[code];
    if (code === "unavailable" || code === "internal" || code === "rate_limited") {
      // Transient: try again shortly.
      notify(`Couldn't join #${reply.room} yet (${message}); retrying…`, { kind: "warn" });
      const seq = state.connSeq;
      setTimeout(() => {
        if (seq === state.connSeq && room && state.rooms.get(room.name) === room) sendJoin(room);
      }, f.retry_after || Math.round(rand(1000, 3000)));
      return;
    }
    if (room && !room.loaded) {
      removeRoomLocally(reply.room);
    }
    notify(why || `Can't join #${reply.room}: ${message}`, { kind: "error", timeout: 12000 });
    return;
  }
  if (code === "not_joined" && reply && reply.kind === "leave") return; // already gone
  notify(`Server: ${message}`, { kind: "error" });
}

// ---------------------------------------------------------------- publishing

// Pending: {cmid, room, text, el, sentConn, retryTimer, status, matched, ackTimer}

function publish(text) {
  const roomName = state.current;
  if (!roomName) return;
  const cps = codePoints(text);
  const frameBytes = new TextEncoder().encode(
    JSON.stringify({ type: "publish", id: "c000000", room: roomName, text, client_msg_id: uuid() }),
  ).length;
  if (cps > MAX_TEXT_CHARS || frameBytes > MAX_FRAME_BYTES - 64) {
    notify(`That message is too long (${cps} characters; the limit is ${MAX_TEXT_CHARS}).`, {
      kind: "error", key: "too_large",
    });
    return false;
  }
  const p = {
    cmid: uuid(), room: roomName, text, el: null, sentConn: 0,
    retryTimer: null, status: "pending", matched: null, ackTimer: null, createdAt: Date.now(),
  };
  state.unacked.set(p.cmid, p);
  if (roomName === state.current) renderPending(p);
  flushUnacked(roomName);
  return true;
}

function flushUnacked(roomName) {
  const room = state.rooms.get(roomName);
  if (!room || !state.connected || room.joinedConn !== state.connSeq) return;
  for (const p of state.unacked.values()) {
    if (p.room !== roomName || p.sentConn === state.connSeq || p.retryTimer || p.status === "failed") continue;
    const id = request(
      { type: "publish", room: p.room, text: p.text, client_msg_id: p.cmid },
      { kind: "publish", room: p.room, cmid: p.cmid },
    );
    if (id) {
      p.sentConn = state.connSeq;
      p.status = "pending";
      renderPendingStatus(p);
    }
  }
}

function onAck(f, reply) {
  const cmid = reply && reply.cmid;
  const p = cmid ? state.unacked.get(cmid) : null;
  if (!p) return;
  state.unacked.delete(cmid);
  clearTimeout(p.retryTimer);
  const room = state.rooms.get(p.room);
  if (room && f.epoch && room.epoch && f.epoch !== room.epoch) {
    removePendingEl(p);
    return;
  }
  if (!room || room.byOffset.has(f.offset) || f.offset <= trimmedFloor(room)) {
    removePendingEl(p);
    return;
  }
  // Acked, but the live message hasn't arrived yet: keep the ghost briefly,
  // then fall back to rendering from what we know.
  p.status = "sent";
  p.ackOffset = f.offset;
  renderPendingStatus(p);
  p.ackTimer = setTimeout(() => {
    removePendingEl(p);
    const r = state.rooms.get(p.room);
    if (r && !r.byOffset.has(f.offset) && (!f.epoch || f.epoch === r.epoch)) {
      insertMessage(r, {
        offset: f.offset, epoch: f.epoch, user: state.user, text: p.text, ts: p.createdAt,
      }, { live: false });
    }
  }, ACK_GRACE_MS);
  ackWaiters.set(`${p.room}\u0000${f.offset}`, p);
}

const ackWaiters = new Map(); // "room\0offset" -> Pending (acked, waiting for the message)

function trimmedFloor(room) {
  return room.messages.length ? room.messages[0].offset - 1 : 0;
}

function settlePendingFor(roomName, msg) {
  const key = `${roomName}\u0000${msg.offset}`;
  const waiter = ackWaiters.get(key);
  if (waiter) {
    ackWaiters.delete(key);
    clearTimeout(waiter.ackTimer);
    removePendingEl(waiter);
    return;
  }
  if (!isMine(msg.user)) return;
  // Message frame before the ack: hide the oldest in-flight publish with the same text.
  for (const p of state.unacked.values()) {
    if (p.room === roomName && p.text === msg.text && p.sentConn && !p.matched) {
      p.matched = msg.offset;
      if (p.el) p.el.hidden = true;
      return;
    }
  }
}

function onPublishError(f, reply) {
  const p = state.unacked.get(reply.cmid);
  if (!p) return;
  const code = f.code;
  if (code === "rate_limited" || code === "unavailable" || code === "internal") {
    const delay = code === "rate_limited"
      ? Math.max(100, Number(f.retry_after) || 1000)
      : Math.round(rand(1000, 3000));
    p.status = code === "rate_limited" ? "rate_limited" : "retrying";
    p.retryUntil = Date.now() + delay;
    p.sentConn = 0;
    clearTimeout(p.retryTimer);
    p.retryTimer = setTimeout(() => {
      p.retryTimer = null;
      flushUnacked(p.room);
    }, delay);
    renderPendingStatus(p);
    if (code === "rate_limited") {
      notify(`You're sending too fast — retrying in ${(delay / 1000).toFixed(1)} s.`, {
        kind: "warn", key: "rate", timeout: Math.max(3000, delay + 500),
      });
    }
    return;
  }
  if (code === "not_joined") {
    // Rejoin, then the publish is flushed again after `joined`.
    const room = state.rooms.get(p.room);
    p.sentConn = 0;
    if (room) {
      room.joinedConn = 0;
      sendJoin(room);
    }
    return;
  }
  p.status = "failed";
  p.error = code === "too_large"
    ? "Too long — the server refused this message."
    : f.message || code;
  if (p.el) p.el.hidden = false;
  renderPendingStatus(p);
  if (code === "too_large") {
    notify("That message is too long for the server; shorten it and send again.", {
      kind: "error", key: "too_large",
    });
  }
}

function discardPending(p) {
  state.unacked.delete(p.cmid);
  clearTimeout(p.retryTimer);
  removePendingEl(p);
}

function removePendingEl(p) {
  if (p.el) p.el.remove();
  p.el = null;
  updateEmptyState();
}

// ---------------------------------------------------------------- rooms

function joinRoom(name) {
  if (!state.rooms.has(name)) {
    const room = new Room(name);
    state.rooms.set(name, room);
    if (state.connected) sendJoin(room);
  }
  switchRoom(name);
  persistRooms();
}

function switchRoom(name) {
  if (!state.rooms.has(name)) return;
  state.current = name;
  const room = state.rooms.get(name);
  room.unread = 0;
  persistRooms();
  renderRoomList();
  renderCurrentRoom();
  if (state.connected && room.joinedConn === state.connSeq) {
    request({ type: "presence", room: name }, { kind: "presence", room: name });
  }
}

function removeRoomLocally(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  clearTyping(room);
  state.rooms.delete(name);
  for (const p of [...state.unacked.values()]) if (p.room === name) discardPending(p);
  if (state.current === name) {
    state.current = state.rooms.size ? state.rooms.keys().next().value : null;
    renderCurrentRoom();
  }
  persistRooms();
  renderRoomList();
}

function leaveCurrentRoom() {
  const name = state.current;
  if (!name) return;
  if (state.connected) request({ type: "leave", room: name }, { kind: "leave", room: name });
  removeRoomLocally(name);
  announce(`Left #${name}`);
  (ui.roomList.querySelector("button") || ui.roomInput).focus();
}

// ---------------------------------------------------------------- rendering

function renderRoomList() {
  const items = [];
  for (const room of state.rooms.values()) {
    const active = room.name === state.current;
    const btn = el("button", {
      type: "button",
      class: "room-button",
      "aria-current": active ? "true" : null,
      title: `#${room.name}`,
    },
    el("span", { class: "hash", "aria-hidden": "true", text: "#" }),
    el("span", { class: "room-name", text: room.name }),
    room.unread && !active
      ? el("span", { class: "unread", "aria-label": `${room.unread} unread`, text: room.unread > 99 ? "99+" : String(room.unread) })
      : null);
    btn.addEventListener("click", () => switchRoom(room.name));
    items.push(el("li", {
      class: active ? "room-item active" : "room-item",
      dataset: { room: room.name, testid: "room" },
    }, btn));
  }
  ui.roomList.replaceChildren(...items);
}

function renderCurrentRoom() {
  const room = state.current ? state.rooms.get(state.current) : null;
  ui.roomTitle.replaceChildren();
  if (room) {
    ui.roomTitle.append(el("span", { class: "hash", "aria-hidden": "true", text: "#" }), room.name);
    ui.messageLabel.textContent = `Message #${room.name}`;
    ui.messageInput.placeholder = `Message #${room.name}`;
    document.title = `#${room.name} · Switchboard`;
  } else {
    ui.roomTitle.textContent = "No room";
    ui.messageLabel.textContent = "Message";
    ui.messageInput.placeholder = "Join a room to chat";
    document.title = "Switchboard";
  }
  ui.leaveRoom.hidden = !room;
  renderMessages();
  renderPendingForCurrent();
  renderPresence();
  renderTyping();
  updateComposerState();
}

function sameGroup(a, b) {
  return a && b && a.user.id === b.user.id && Math.abs(b.ts - a.ts) < GROUP_WINDOW_MS;
}

function messageEl(msg, prev) {
  const mine = isMine(msg.user);
  const name = msg.user.name || msg.user.id || "?";
  const d = new Date(msg.ts);
  const li = el("li", {
    class: `msg${mine ? " mine" : ""}${sameGroup(prev, msg) ? " cont" : ""}`,
    "data-testid": "message",
    "data-offset": String(msg.offset),
    "data-user": msg.user.id,
  });
  const avatar = el("span", { class: "avatar", "aria-hidden": "true", text: initialOf(name) });
  avatar.style.setProperty("--hue", String(hashHue(msg.user.id || name)));
  const meta = el("div", { class: "meta" },
    el("span", { class: "author", text: name }),
    mine ? el("span", { class: "you-tag", text: "you" }) : null,
    el("time", { class: "time", datetime: d.toISOString(), title: d.toLocaleString(), text: hhmm(msg.ts) }));
  const body = el("div", { class: "body" }, meta, el("div", { class: "text", text: msg.text }));
  li.append(avatar, body);
  return li;
}

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  ui.jumpLatest.hidden = true;
}

function renderMessages({ keepScroll = false } = {}) {
  const room = state.current ? state.rooms.get(state.current) : null;
  const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
  const frag = document.createDocumentFragment();
  if (room) {
    let prev = null;
    for (const m of room.messages) {
      frag.append(messageEl(m, prev));
      prev = m;
    }
  }
  ui.messageList.replaceChildren(frag);
  updateEmptyState();
  if (keepScroll) ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
  else scrollToBottom();
}

function renderInsertedMessage(room, idx) {
  const stick = nearBottom();
  const msg = room.messages[idx];
  const prev = idx > 0 ? room.messages[idx - 1] : null;
  const next = room.messages[idx + 1];
  const node = messageEl(msg, prev);
  let before = null;
  if (next) before = ui.messageList.querySelector(`[data-offset="${next.offset}"]`);
  ui.messageList.insertBefore(node, before);
  if (before) before.classList.toggle("cont", !!sameGroup(msg, next));
  updateEmptyState();
  if (stick || isMine(msg.user)) scrollToBottom();
  else ui.jumpLatest.hidden = false;
}

function pendingStatusText(p) {
  switch (p.status) {
    case "failed": return p.error || "Not sent";
    case "rate_limited": return "Sending too fast — will retry…";
    case "retrying": return "Server busy — will retry…";
    case "sent": return "Sent";
    default: return state.connected ? "Sending…" : "Waiting for connection…";
  }
}

function renderPending(p) {
  const name = (state.user && state.user.name) || state.name || "you";
  const status = el("span", { class: "pending-status", text: pendingStatusText(p) });
  const actions = el("span", { class: "pending-actions" });
  const li = el("li", {
    class: "msg mine pending", "data-testid": "pending-message", "data-cmid": p.cmid,
    "aria-label": "Message not yet delivered",
  });
  const avatar = el("span", { class: "avatar", "aria-hidden": "true", text: initialOf(name) });
  avatar.style.setProperty("--hue", String(hashHue((state.user && state.user.id) || name)));
  li.append(avatar, el("div", { class: "body" },
    el("div", { class: "text", text: p.text }),
    el("div", { class: "pending-meta" }, status, actions)));
  p.el = li;
  p.statusEl = status;
  p.actionsEl = actions;
  if (p.matched) li.hidden = true;
  ui.pendingList.append(li);
  renderPendingStatus(p);
  updateEmptyState();
  scrollToBottom();
}

function renderPendingStatus(p) {
  if (!p.el) return;
  p.statusEl.textContent = pendingStatusText(p);
  p.el.classList.toggle("failed", p.status === "failed");
  p.actionsEl.replaceChildren();
  if (p.status === "failed") {
    const retry = el("button", { type: "button", class: "link-button", text: "Retry" });
    retry.addEventListener("click", () => {
      p.status = "pending";
      p.sentConn = 0;
      p.matched = null;
      renderPendingStatus(p);
      flushUnacked(p.room);
    });
    const drop = el("button", { type: "button", class: "link-button", text: "Discard" });
    drop.addEventListener("click", () => discardPending(p));
    if (p.error && !/too long/i.test(p.error)) p.actionsEl.append(retry);
    p.actionsEl.append(drop);
  }
}

function renderPendingForCurrent() {
  for (const p of state.unacked.values()) p.el = null;
  for (const p of ackWaiters.values()) p.el = null;
  ui.pendingList.replaceChildren();
  const shown = new Set();
  for (const p of [...ackWaiters.values(), ...state.unacked.values()]) {
    if (p.room === state.current && !shown.has(p.cmid)) {
      shown.add(p.cmid);
      renderPending(p);
    }
  }
}

function updateEmptyState() {
  const room = state.current ? state.rooms.get(state.current) : null;
  let text = "";
  if (!room) text = "You're not in any room. Join one from the sidebar.";
  else if (!room.messages.length && !ui.pendingList.querySelector("li:not([hidden])")) {
    text = room.loaded ? `No messages in #${room.name} yet. Say hello!` : "Loading…";
  }
  ui.emptyState.textContent = text;
  ui.emptyState.hidden = !text;
}

function renderPresence() {
  const room = state.current ? state.rooms.get(state.current) : null;
  const members = room ? [...room.presence.values()] : [];
  members.sort((a, b) => {
    const am = isMine(a.user) ? 0 : 1;
    const bm = isMine(b.user) ? 0 : 1;
    if (am !== bm) return am - bm;
    return String(a.user.name || a.user.id).localeCompare(String(b.user.name || b.user.id));
  });
  const items = members.map((p) => {
    const name = p.user.name || p.user.id;
    const dot = el("span", { class: "avatar small", "aria-hidden": "true", text: initialOf(name) });
    dot.style.setProperty("--hue", String(hashHue(p.user.id)));
    return el("li", {
      class: isMine(p.user) ? "member me" : "member",
      dataset: { user: p.user.id, testid: "member" },
      title: p.connections > 1 ? `${name} (${p.connections} connections)` : name,
    }, dot, el("span", { class: "member-name", text: name }),
    isMine(p.user) ? el("span", { class: "you-tag", text: "you" }) : null);
  });
  ui.presenceList.replaceChildren(...items);
  ui.presenceCount.textContent = room ? String(members.length) : "";
}

function renderTyping() {
  const room = state.current ? state.rooms.get(state.current) : null;
  const names = room ? [...room.typing.values()].map((t) => t.name) : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names[0]}, ${names[1]} and ${names.length - 2} more are typing…`;
  ui.typing.textContent = text;
  ui.typing.classList.toggle("active", !!text);
}

function updateComposerState() {
  const hasRoom = !!state.current;
  ui.messageInput.disabled = !hasRoom;
  ui.composer.classList.toggle("offline", !state.connected);
}

function autosize() {
  const t = ui.messageInput;
  t.style.height = "auto";
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}

// ---------------------------------------------------------------- events

ui.signinForm.addEventListener("submit", onSignIn);
ui.signOut.addEventListener("click", () => signOut());

ui.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  let name = ui.roomInput.value.trim();
  if (name.startsWith("#")) name = name.slice(1);
  ui.joinError.textContent = "";
  if (!name) {
    ui.joinError.textContent = "Type a room name to join.";
    ui.roomInput.focus();
    return;
  }
  if (!ROOM_RE.test(name)) {
    ui.joinError.textContent =
      "Room names are 1–64 characters: letters, digits, and _ . : - (starting with a letter or digit).";
    ui.roomInput.setAttribute("aria-invalid", "true");
    ui.roomInput.focus();
    return;
  }
  ui.roomInput.removeAttribute("aria-invalid");
  ui.roomInput.value = "";
  joinRoom(name);
  ui.messageInput.focus();
});

ui.roomInput.addEventListener("input", () => {
  if (ui.joinError.textContent) {
    ui.joinError.textContent = "";
    ui.roomInput.removeAttribute("aria-invalid");
  }
});

ui.leaveRoom.addEventListener("click", leaveCurrentRoom);

ui.composer.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.messageInput.value;
  if (!text.trim() || !state.current) {
    ui.messageInput.focus();
    return;
  }
  if (publish(text) !== false) {
    // Our message clears our typing indicator on the other side; typing again
    // right away should announce itself again.
    const room = state.rooms.get(state.current);
    if (room) room.lastTypingSent = 0;
    ui.messageInput.value = "";
    autosize();
  }
  ui.messageInput.focus();
});

ui.messageInput.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.composer.requestSubmit();
  }
});

ui.messageInput.addEventListener("input", () => {
  autosize();
  const room = state.current ? state.rooms.get(state.current) : null;
  if (!room || !ui.messageInput.value.trim()) return;
  const now = Date.now();
  if (now - room.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  if (state.connected && room.joinedConn === state.connSeq && send({ type: "typing", room: room.name })) {
    room.lastTypingSent = now;
  }
});

ui.scroller.addEventListener("scroll", () => {
  if (nearBottom()) ui.jumpLatest.hidden = true;
});
ui.jumpLatest.addEventListener("click", () => {
  scrollToBottom();
  ui.messageInput.focus();
});

window.addEventListener("online", () => {
  if (state.token && !state.connected && state.reconnectTimer) {
    cancelReconnect();
    connect();
  }
});
window.addEventListener("offline", () => {
  if (state.token && !state.connected) setConnState("offline");
});

// ---------------------------------------------------------------- boot

function boot() {
  const token = ssGet(SS.token);
  const user = ssGet(SS.user);
  const name = ssGet(SS.name);
  state.myIds = new Set(ssGet(SS.myIds, []) || []);
  if (name) {
    state.name = name;
    ui.nameInput.value = name;
  }
  if (name && (token || user)) {
    state.token = token;
    state.user = user || { id: name, name };
    if (user && user.id) state.myIds.add(user.id);
    ui.meLabel.textContent = state.user.name || name;
    const rooms = ssGet(SS.rooms, [DEFAULT_ROOM]) || [DEFAULT_ROOM];
    const current = ssGet(SS.current, DEFAULT_ROOM);
    if (token) {
      enterChat(rooms, current);
    } else {
      // Signed in before, but the token was dropped (e.g. a 4001 then reload).
      ui.signinView.hidden = true;
      ui.chatView.hidden = false;
      ui.account.hidden = false;
      enterChatWithoutConnect(rooms, current);
      refreshTokenAndReconnect();
    }
  } else {
    setConnState("signed-out");
    ui.nameInput.focus();
  }
}

function enterChatWithoutConnect(roomNames, current) {
  state.rooms.clear();
  for (const r of roomNames) if (ROOM_RE.test(r)) state.rooms.set(r, new Room(r));
  if (!state.rooms.size) state.rooms.set(DEFAULT_ROOM, new Room(DEFAULT_ROOM));
  state.current = state.rooms.has(current) ? current : state.rooms.keys().next().value;
  renderRoomList();
  renderCurrentRoom();
}

// Exposed for debugging in the console and for tests; not an API.
window.switchboard = { state, connect, signOut };

boot();
