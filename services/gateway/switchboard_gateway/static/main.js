// Switchboard browser client: the wiring. Plain ES modules, no dependencies,
// no build step. Speaks chat wire protocol v1 (docs/protocol.md).
//
//   store.js         state: identity, rooms, their logs folded into messages, read state, presence
//   transport.js     the socket: reconnect with backoff, requests, keepalive
//   outbox.js        publishes until acked: resends, retries, "Sent" ghosts
//   changes.js       edits, deletions, reactions until acked
//   reads.js         `read` marks: never backwards, at most one a second per room
//   view.js          the DOM (user text as text only, never HTML)
//   message_view.js  one message: text, "edited", "message deleted", reactions, actions
//   picker.js        the reaction emoji picker
//   dom.js           building nodes safely
//   main.js          sign-in, what each frame does, DOM events, boot

import { DEFAULT_ROOM, Store, directPeerId, directRoomName, isRoomName, validMessage } from "./store.js";
import { Transport, joinFrame } from "./transport.js";
import { Outbox } from "./outbox.js";
import { Changes } from "./changes.js";
import { ReadMarks } from "./reads.js";
import { View, ui } from "./view.js";

const MAX_TEXT_CHARS = 2000;          // server default; the server has the last word
const MAX_FRAME_BYTES = 16384;        // server default: a bigger frame is closed with 1009
const TYPING_SEND_EVERY_MS = 2000;
const TYPING_SHOW_MS = 4000;
const MAX_TOKEN_REFRESHES = 3;        // 4001s in a row before giving up and signing out
const TOKEN_RENEW_LEAD_MS = 60000;    // renew a guest token this long before it expires (at most 1/5 of what is left)
const TOKEN_RENEW_RETRY_MS = 10000;
const PRESENCE_RENEW_EVERY_MS = 3000; // automatic presence re-lists, at most one per room per this
// Direct rooms the server lists on connect (`directs`) that this tab does not
// have: the newest this many are joined at once (their badges need `joined`);
// older ones are listed and joined when opened. Each join costs the server a
// subscription, a presence entry and a few Redis calls, and counts against
// MAX_ROOMS_PER_CONNECTION (50 by default).
const DIRECTS_ASKED = 20;
const DIRECTS_JOINED_EAGERLY = 5;

const rand = (lo, hi) => lo + Math.random() * (hi - lo);

function codePoints(s) {
  let n = 0;
  for (const _ of s) n++; // eslint-disable-line no-unused-vars
  return n;
}

const store = new Store();

function wsUrl() {
  if (!store.token) return null;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?token=${encodeURIComponent(store.token)}`;
}

const transport = new Transport({
  url: wsUrl,
  on: {
    status: (kind, detail) => view.setConnState(kind, detail),
    welcome: onWelcome,
    frame: onFrame,
    closed: onSocketClosed,
    authExpired: refreshTokenAndReconnect,
    kicked: onKicked,
    notify: (text, options) => view.notify(text, options),
  },
});

const outbox = new Outbox({
  transport,
  store,
  on: {
    changed: (p) => view.updatePending(p),
    hidden: (p) => view.hidePending(p),
    removed: (p) => view.removePending(p),
    ackedUnseen: (p, ack) => {
      // The ack said where it went; show it from what we know.
      const room = store.rooms.get(p.room);
      if (room && !room.byOffset.has(ack.offset) && (!ack.epoch || ack.epoch === room.epoch)) {
        addEntry(room, {
          offset: ack.offset, epoch: ack.epoch, user: store.user, text: p.text, ts: p.createdAt,
        }, { live: false });
      }
    },
    rejoin: (roomName) => {
      const room = store.rooms.get(roomName);
      if (room) {
        room.joinedConn = 0;
        sendJoin(room);
      }
    },
    notify: (text, options) => view.notify(text, options),
  },
});

const changes = new Changes({
  transport,
  store,
  on: {
    rejoin: (roomName) => outbox.on.rejoin(roomName),
    notify: (text, options) => view.notify(text, options),
  },
});

// A mark goes out only on a socket where the room is joined (else `not_joined`).
const reads = new ReadMarks({
  send: (frame) => {
    const room = store.rooms.get(frame.room);
    return !!room && transport.connected && room.joinedConn === transport.seq && transport.send(frame);
  },
});

const view = new View({
  store,
  isConnected: () => transport.connected,
  pendingIn: (room) => outbox.visibleIn(room),
  actions: {
    switchRoom,
    refreshPresence: () => { const room = store.currentRoom(); if (room) refreshPresence(room); },
    retry: (p) => outbox.retry(p),
    discard: (p) => outbox.discard(p),
    react: (target, emoji) => sendChange({ type: "react", target, emoji }),
    unreact: (target, emoji) => sendChange({ type: "unreact", target, emoji }),
    edit: (target, text) => sendChange({ type: "edit", target, text }),
    remove: (target) => sendChange({ type: "delete", target }),
    startDirect,
  },
});

let authFailures = 0;
let renewTimer = null;

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
  store.adoptIdentity(name, body);
  view.setMe(store.user, name);
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
    store.myIds = new Set();
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

function openRooms(roomNames, current) {
  view.showChat();
  store.openRooms(roomNames, current);
  view.renderRoomList();
  view.renderCurrentRoom();
}

function enterChat(roomNames, current) {
  openRooms(roomNames, current);
  store.persistRooms();
  transport.connect();
  ui.messageInput.focus();
}

function signOut(message = "") {
  clearTimeout(renewTimer);
  renewTimer = null;
  transport.stop();
  for (const room of store.rooms.values()) clearTyping(room);
  outbox.clear();
  changes.clear();
  reads.clear();
  store.forget();
  authFailures = 0;
  view.setNode(null);
  view.setConnState("signed-out");
  view.showSignIn(message, store.name);
}

async function refreshTokenAndReconnect() {
  authFailures++;
  store.dropToken();
  view.setConnState("reconnecting", "(renewing session)");
  if (authFailures > MAX_TOKEN_REFRESHES || !store.name) {
    signOut("Your session expired. Please sign in again.");
    return;
  }
  const seq = transport.seq;
  try {
    const body = await fetchGuestToken(store.name);
    if (seq !== transport.seq) return; // signed out meanwhile
    adoptIdentity(store.name, body);
    // A fresh token that fails again right away backs off a little.
    transport.scheduleReconnect(authFailures > 1 ? transport.backoff.next() : 0);
  } catch (e) {
    if (seq !== transport.seq) return;
    if (e.retryable) {
      // Network trouble: keep the name, try the refresh again with backoff.
      authFailures--;
      view.setConnState("reconnecting");
      const d = transport.backoff.next();
      setTimeout(() => { if (seq === transport.seq && !store.token) refreshTokenAndReconnect(); }, d);
      return;
    }
    signOut(e.code === "guests_disabled"
      ? "Your session expired and guest sign-in is now disabled."
      : "Your session expired. Please sign in again.");
  }
}

// ---------------------------------------------------------------- token renewal
// A guest token is short-lived (GUEST_TOKEN_TTL). Before it expires we get a
// fresh one for the same guest (POST /auth/guest/refresh) and hand it to the
// open socket (`refresh`), so the socket is never closed for expiry. If that
// fails, the 4001 path above still signs the guest in again.

function scheduleTokenRenewal(exp) {
  clearTimeout(renewTimer);
  renewTimer = null;
  if (typeof exp !== "number" || !store.token) return;
  const left = exp * 1000 - Date.now();
  const delay = Math.max(1000, left - Math.min(TOKEN_RENEW_LEAD_MS, left / 5));
  renewTimer = setTimeout(() => renewToken(exp), delay);
}

async function renewToken(exp) {
  renewTimer = null;
  const old = store.token;
  if (!old || !store.name) return;
  let body = null;
  try {
    const res = await fetch("/auth/guest/refresh", {
      method: "POST",
      headers: { Authorization: `Bearer ${old}` },
    });
    body = res.ok ? await res.json() : null;
  } catch {
    body = null;
  }
  if (store.token !== old) return; // signed out or signed in again meanwhile
  if (!body || typeof body.token !== "string") {
    // Try again while the old token still holds; after that, 4001 takes over.
    if (exp * 1000 - Date.now() > TOKEN_RENEW_RETRY_MS) {
      renewTimer = setTimeout(() => renewToken(exp), TOKEN_RENEW_RETRY_MS);
    }
    return;
  }
  adoptIdentity(store.name, body);
  // On an open socket: switch it to the new token (the reply is `refreshed`).
  // Otherwise the next connect uses it.
  if (transport.connected) transport.request({ type: "refresh", token: body.token }, { kind: "refresh" });
  else scheduleTokenRenewal(body.exp);
}

function onLeft(f) {
  // `left` without our asking: the application removed us from the room, or
  // a refreshed token no longer allows it.
  const room = store.rooms.get(f.room);
  if (!room || (f.reason !== "removed" && f.reason !== "forbidden")) return;
  room.joinedConn = 0;
  room.joinSentConn = 0;
  view.notify(
    f.reason === "removed"
      ? `You were removed from #${room.name}.`
      : `You are no longer allowed in #${room.name}.`,
    { kind: "error", room: room.name, timeout: 0 },
  );
  if (room.name === store.current) view.updateComposerState();
}

function onKicked(reason) {
  // 4003: the application disconnected us (kicked or banned). Coming back by
  // ourselves would only be refused again; the user decides.
  const why = reason ? `: ${reason}` : "";
  view.notify(`You were disconnected by the server${why}. You will not be reconnected automatically.`, {
    kind: "error", key: "conn", timeout: 0,
    action: { label: "Reconnect", run: () => transport.connect() },
  });
}

// ---------------------------------------------------------------- socket events

function onSocketClosed() {
  for (const room of store.rooms.values()) {
    room.joinedConn = 0;
    room.joinSentConn = 0;
    clearTyping(room);
    store.clearPresence(room); // unknown while offline; the next `joined` refills it
  }
  view.setNode(null);
  view.renderPresence();
  outbox.connectionLost();
  changes.connectionLost();
}

function onWelcome(f) {
  authFailures = 0;
  scheduleTokenRenewal(f.exp);
  if (f.user && f.user.id) store.rememberUserId(f.user.id);
  view.setNode(transport.node);
  view.dismiss("conn");
  for (const room of store.rooms.values()) if (!room.dormant) sendJoin(room);
  // The direct rooms others opened with us while this tab was away.
  transport.request({ type: "directs", limit: DIRECTS_ASKED }, { kind: "directs" });
}

/**
 * A direct room this tab does not have yet (someone wrote to us: `direct`,
 * or `directs` listed it): it joins the room list, joined at once unless
 * `dormant` (then it is joined when opened). Known rooms are left alone.
 */
function addDirectRoom(roomName, peer, { dormant = false } = {}) {
  if (typeof roomName !== "string" || !isRoomName(roomName)) return false;
  const peerId = directPeerId(roomName, store.myIds);
  if (peerId === null) return false; // not ours
  if (peer && peer.id === peerId && typeof peer.name === "string" && (peer.name !== peerId || !store.peerNames.has(peerId))) {
    store.peerNames.set(peerId, { id: peerId, name: peer.name });
  }
  const listed = store.rooms.get(roomName);
  if (listed) {
    if (listed.dormant && !dormant) { // listed but not joined: now it is wanted
      listed.dormant = false;
      if (transport.connected) sendJoin(listed);
    }
    return false;
  }
  const room = store.addRoom(roomName);
  room.dormant = dormant;
  if (!dormant && transport.connected) sendJoin(room);
  return true;
}

function onDirect(f) {
  if (addDirectRoom(f.room, f.user)) {
    store.persistRooms();
    view.renderRoomList();
    view.announce(`New direct message from ${(f.user && (f.user.name || f.user.id)) || "someone"}`);
  }
}

function onDirects(f) {
  if (!Array.isArray(f.rooms)) return;
  let eager = 0;
  let added = false;
  for (const entry of f.rooms) { // the most recently active first
    if (!entry || typeof entry !== "object") continue;
    if (addDirectRoom(entry.room, entry.user, { dormant: eager >= DIRECTS_JOINED_EAGERLY })) {
      added = true;
      eager++;
    }
  }
  if (added) {
    store.persistRooms();
    view.renderRoomList();
  }
}

function sendJoin(room) {
  if (transport.request(joinFrame(room), { kind: "join", room: room.name })) room.joinSentConn = transport.seq;
}

function onFrame(f, reply, seq) {
  switch (f.type) {
    case "joined": return onJoined(f, seq);
    case "message": return onMessage(f);
    case "ack": return reply && reply.kind === "change" ? changes.onAck(reply) : outbox.onAck(f, reply);
    case "error": return onError(f, reply);
    case "presence": return onPresence(f);
    case "presence_join": return onPresenceJoin(f);
    case "presence_leave": return onPresenceLeave(f);
    case "presence_count": return onPresenceCount(f);
    case "typing": return onTyping(f);
    case "read": return onRead(f);
    case "reset": return onReset(f);
    case "history": return onHistory(f);
    case "refreshed": return scheduleTokenRenewal(f.exp);
    case "left": return onLeft(f);
    case "direct": return onDirect(f);
    case "directs": return onDirects(f);
    case "pong":
    default:
      return undefined;
  }
}

function onJoined(f, seq) {
  const room = store.rooms.get(f.room);
  if (!room) {
    // We left it locally while the join was in flight.
    transport.send({ type: "leave", room: f.room });
    return;
  }
  adoptReadState(room, f);
  const incoming = Array.isArray(f.messages) ? f.messages : [];
  if (f.recovered === true && room.epoch === f.epoch) {
    for (const m of incoming) addEntry(room, m, { live: false });
  } else {
    // Reload: replace with the snapshot, but keep anything newer that already
    // arrived live under the same epoch.
    const keep = room.entries.filter((m) => m.epoch === f.epoch && m.offset > (f.offset || 0));
    store.clearMessages(room);
    for (const m of incoming) addEntry(room, m, { live: false, render: false });
    for (const m of keep) addEntry(room, m, { live: false, render: false });
    if (room.loaded && f.recovered === false) {
      view.notify(`Reloaded #${room.name}: some messages could not be recovered.`, {
        kind: "info", room: room.name,
      });
    }
    if (room.name === store.current) view.renderMessages();
  }
  room.epoch = f.epoch ?? room.epoch;
  room.lastOffset = Math.max(
    typeof f.offset === "number" ? f.offset : 0,
    room.entries.length ? room.entries[room.entries.length - 1].offset : 0,
  );
  room.loaded = true;
  room.joinedConn = seq;
  if (room.name === store.current) view.updateEmptyState(); // "Loading…" becomes "No messages yet"

  store.setPresence(room, f.presence, f.presence_count);
  if (room.name === store.current) {
    view.renderRoomTitle(); // a direct room's title is the peer's name, which joined may tell
    view.renderPresence();
    view.updateComposerState();
  }
  view.renderRoomList();
  outbox.flush(room.name);
  changes.flush(room.name);
  reads.flush(room.name);
  if (room.name === store.current) readCurrentIfSeen();
}

/**
 * `joined` says how far this user has read the room and how many messages
 * of others came after (protocol §11); a server without read state says
 * nothing and the badge counts what arrives live.
 */
function adoptReadState(room, f) {
  if (Number.isInteger(f.last_read)) room.lastRead = Math.max(room.lastRead, f.last_read);
  if (Number.isInteger(f.unread)) room.unread = f.unread;
  // A direct room: how far the other user has read ("Seen" survives a reload).
  if (store.peerRead(room, f.peer_read) && room.name === store.current) view.updateSeen(room);
  // Opening on unread messages: the divider goes above the first of them.
  if (room.name === store.current && room.unread > 0 && room.dividerAfter === null) {
    room.dividerAfter = room.lastRead;
  }
}

/**
 * Adds a log entry to the room (once) and shows what it changes: a new
 * message (settling our publish of it, counting it unread), or an edit,
 * deletion or reaction on the message it targets.
 */
function addEntry(room, m, { live = true, render = true } = {}) {
  const added = store.insertEntry(room, m);
  if (!added) return false;
  const { entry, msg, trimmed, refolded } = added;
  const shown = render && room.name === store.current;
  // Whatever the entry, the user looking at the room has read up to it: the
  // mark keeps up with the log (one frame a second at most, reads.js).
  if (live && room.name === store.current && seesNewest(room) && (entry.kind !== "message" || !msg || store.isMine(msg.user))) {
    readCurrentIfSeen();
  }
  if (entry.kind === "message") {
    if (!msg) return true; // older than everything kept
    // A pending publish of ours whose message is now visible: drop the ghost.
    outbox.settle(room.name, msg);
    const mine = store.isMine(msg.user);
    if (shown && refolded && !trimmed) view.renderMessages({ keepScroll: true });
    else if (shown) view.renderInsertedMessage(room, msg, trimmed);
    if (live && !mine) {
      if (room.name === store.current) view.announce(`${msg.user.name || msg.user.id}: ${msg.text}`);
      if (room.name === store.current && seesNewest(room)) {
        readCurrentIfSeen();
      } else if (msg.offset > room.lastRead) {
        room.unread++;
        if (room.name !== store.current) view.renderRoomList();
      }
    }
    return true;
  }
  if (shown && refolded) view.renderMessages({ keepScroll: true });
  else if (shown && msg) {
    view.replaceMessage(room, msg);
    view.updateSeen(room);
  }
  // A deleted unread message is no longer waiting to be read.
  if (live && entry.kind === "delete" && msg && !store.isMine(msg.user) && msg.offset > room.lastRead && room.unread > 0) {
    room.unread--;
    view.renderRoomList();
  }
  return true;
}

function onMessage(f) {
  const room = store.rooms.get(f.room);
  if (!room || !validMessage(f)) return;
  if (room.epoch !== null && f.epoch && f.epoch !== room.epoch) {
    // The room's history was replaced under a new epoch (we may have missed
    // the `reset`): start over with the new epoch.
    resetRoom(room, f.epoch, 0);
  }
  if (room.epoch === null && f.epoch) room.epoch = f.epoch;
  const typingOf = f.user && room.typing.get(f.user.id);
  if (typingOf) {
    clearTimeout(typingOf.timer);
    room.typing.delete(f.user.id);
    if (room.name === store.current) view.renderTyping();
  }
  addEntry(room, f, { live: true });
}

function onReset(f) {
  const room = store.rooms.get(f.room);
  if (!room) return;
  resetRoom(room, f.epoch, typeof f.offset === "number" ? f.offset : 0);
}

function resetRoom(room, epoch, offset) {
  store.resetRoom(room, epoch, offset);
  if (room.name === store.current) view.renderMessages();
  view.notify(`The history of #${room.name} was lost on the server and has been reset.`, {
    kind: "warn", room: room.name, timeout: 15000, key: `reset:${room.name}`,
  });
}

function onHistory(f) {
  const room = store.rooms.get(f.room);
  if (!room || !Array.isArray(f.messages)) return;
  if (f.epoch && room.epoch && f.epoch !== room.epoch) return;
  for (const m of f.messages) addEntry(room, m, { live: false, render: false });
  if (room.name === store.current) view.renderMessages({ keepScroll: true });
}

function onPresence(f) {
  const room = store.rooms.get(f.room);
  if (!room || !Array.isArray(f.members)) return;
  store.setPresence(room, f.members, f.count);
  if (room.name === store.current) view.renderPresence();
}

function onPresenceJoin(f) {
  const room = store.rooms.get(f.room);
  if (!room || !f.user || !f.user.id) return;
  store.presenceJoined(room, f.user, f.count);
  if (room.name === store.current) view.renderPresence();
  renewPresenceIfStale(room);
}

function onPresenceLeave(f) {
  const room = store.rooms.get(f.room);
  if (!room || !f.user || !f.user.id) return;
  store.presenceLeft(room, f.user.id, f.count);
  const t = room.typing.get(f.user.id);
  if (t) {
    clearTimeout(t.timer);
    room.typing.delete(f.user.id);
  }
  if (room.name === store.current) {
    view.renderPresence();
    view.renderTyping();
  }
  renewPresenceIfStale(room);
}

// A big room: the count changed, no names came with it (protocol, Big rooms).
function onPresenceCount(f) {
  const room = store.rooms.get(f.room);
  if (!room || !Number.isInteger(f.count)) return;
  store.presenceCountOnly(room, f.count);
  if (room.name === store.current) view.renderPresence();
  renewPresenceIfStale(room);
}

/**
 * The current room's list went stale (store.presenceNeedsRenewal): list it
 * again, at most once per PRESENCE_RENEW_EVERY_MS, and once more at the end
 * of that window if it is still stale then (so the last change is not missed).
 * Other rooms are listed again when switched to.
 */
function renewPresenceIfStale(room) {
  if (room.name !== store.current || room.presenceRenewTimer || !store.presenceNeedsRenewal(room)) return;
  const wait = room.presenceRenewedAt + PRESENCE_RENEW_EVERY_MS - Date.now();
  if (wait <= 0) {
    room.presenceRenewedAt = Date.now();
    refreshPresence(room);
    return;
  }
  room.presenceRenewTimer = setTimeout(() => {
    room.presenceRenewTimer = null;
    renewPresenceIfStale(room);
  }, wait);
}

/**
 * Someone read the room up to `offset`: another member (a direct room shows
 * "Seen"), or this user in another tab (the badge follows).
 */
function onRead(f) {
  const room = store.rooms.get(f.room);
  if (!room || !f.user || !f.user.id || !Number.isInteger(f.offset)) return;
  if (store.isMine(f.user)) {
    if (f.offset <= room.lastRead) return;
    room.lastRead = f.offset;
    room.unread = Math.min(room.unread, store.unreadAfter(room, f.offset));
    view.renderRoomList();
    return;
  }
  if (f.offset <= (room.readBy.get(f.user.id) ?? 0)) return;
  room.readBy.set(f.user.id, f.offset);
  if (room.name === store.current) view.updateSeen(room);
}

function seesNewest(room) {
  return room.loaded && room.name === store.current && document.visibilityState === "visible" && view.nearBottom();
}

/**
 * The user can see the newest messages of the current room (the tab is
 * visible and the list is scrolled to the bottom): everything up to now is
 * read. Coming back to unread messages puts the "new messages" divider above
 * them first.
 */
function readCurrentIfSeen() {
  const room = store.currentRoom();
  if (!room || !seesNewest(room)) return;
  if (room.unread > 0 && room.dividerAfter === null) {
    room.dividerAfter = room.lastRead;
    view.renderMessages({ keepScroll: true });
  }
  if (room.lastOffset > room.lastRead) {
    room.lastRead = room.lastOffset;
    reads.mark(room.name, room.lastOffset);
  }
  if (room.unread) {
    room.unread = 0;
    view.renderRoomList();
  }
}

function onTyping(f) {
  const room = store.rooms.get(f.room);
  if (!room || !f.user || !f.user.id || store.isMine(f.user)) return;
  const prev = room.typing.get(f.user.id);
  if (prev) clearTimeout(prev.timer);
  const entry = {
    name: f.user.name || f.user.id,
    timer: setTimeout(() => {
      room.typing.delete(f.user.id);
      if (room.name === store.current) view.renderTyping();
    }, TYPING_SHOW_MS),
  };
  room.typing.set(f.user.id, entry);
  if (room.name === store.current) view.renderTyping();
}

function clearTyping(room) {
  for (const t of room.typing.values()) clearTimeout(t.timer);
  room.typing.clear();
  if (room.name === store.current) view.renderTyping();
}

function onError(f, reply) {
  const code = f.code || "error";
  const message = f.message || code;
  if (reply && reply.kind === "publish") return outbox.onError(f, reply);
  if (reply && reply.kind === "change") return changes.onError(f, reply);
  if (reply && reply.kind === "join") {
    const room = store.rooms.get(reply.room);
    const why = {
      forbidden: `You are not allowed to join #${reply.room}.`,
      limit_exceeded: `You have joined too many rooms; leave one before joining #${reply.room}.`,
      bad_request: `Can't join #${reply.room}: ${message}`,
    }[code];
    if (code === "unavailable" || code === "internal" || code === "rate_limited") {
      // Transient: try again shortly.
      view.notify(`Couldn't join #${reply.room} yet (${message}); retrying…`, { kind: "warn" });
      const seq = transport.seq;
      setTimeout(() => {
        if (seq === transport.seq && room && store.rooms.get(room.name) === room) sendJoin(room);
      }, f.retry_after || Math.round(rand(1000, 3000)));
      return;
    }
    if (room && !room.loaded) {
      removeRoomLocally(reply.room);
    }
    view.notify(why || `Can't join #${reply.room}: ${message}`, { kind: "error", timeout: 12000 });
    return;
  }
  if (code === "not_joined" && reply && reply.kind === "leave") return; // already gone
  // Best effort: a server without `directs`, or one that could not read the
  // list now. New direct rooms still arrive live (`direct`).
  if (reply && reply.kind === "directs") return;
  view.notify(`Server: ${message}`, { kind: "error" });
}

// ---------------------------------------------------------------- publishing

function publish(text) {
  const roomName = store.current;
  if (!roomName) return undefined;
  const cps = codePoints(text);
  const frameBytes = new TextEncoder().encode(
    JSON.stringify({
      type: "publish", id: "c000000", room: roomName, text,
      client_msg_id: "00000000-0000-0000-0000-000000000000",
    }),
  ).length;
  if (cps > MAX_TEXT_CHARS || frameBytes > MAX_FRAME_BYTES - 64) {
    view.notify(`That message is too long (${cps} characters; the limit is ${MAX_TEXT_CHARS}).`, {
      kind: "error", key: "too_large",
    });
    return false;
  }
  const p = outbox.add(roomName, text);
  view.clearDivider(store.rooms.get(roomName)); // answering means the new ones were read
  view.addPending(p);
  outbox.flush(roomName);
  return true;
}

/** An edit, deletion or reaction in the current room; it shows once the server logs it. */
function sendChange(frame) {
  if (store.current) changes.send(store.current, frame);
}

// ---------------------------------------------------------------- rooms

function joinRoom(name) {
  if (!store.rooms.has(name)) {
    const room = store.addRoom(name);
    if (transport.connected) sendJoin(room);
  }
  switchRoom(name);
  store.persistRooms();
}

function switchRoom(name) {
  if (!store.rooms.has(name)) return;
  const previous = store.currentRoom();
  if (previous) previous.dividerAfter = null; // seen: no divider next time
  store.current = name;
  const room = store.rooms.get(name);
  room.dividerAfter = room.unread > 0 ? room.lastRead : null;
  if (room.dormant) { // listed by `directs`, joined now that it is opened
    room.dormant = false;
    if (transport.connected) sendJoin(room);
  }
  store.persistRooms();
  view.renderRoomList();
  view.renderCurrentRoom();
  refreshPresence(room);
  readCurrentIfSeen();
}

/** Opens (joining if needed) the direct room with `user`, from the member list. */
function startDirect(user) {
  if (!store.user || !user || !user.id || store.isMine(user)) return;
  store.peerNames.set(user.id, { id: user.id, name: user.name || user.id });
  joinRoom(directRoomName(store.user.id, user.id));
  ui.messageInput.focus();
}

/** Asks for a fresh member list (in a big room the one we have is a sample that ages). */
function refreshPresence(room) {
  if (transport.connected && room.joinedConn === transport.seq) {
    transport.request({ type: "presence", room: room.name }, { kind: "presence", room: room.name });
  }
}

function removeRoomLocally(name) {
  const room = store.rooms.get(name);
  if (!room) return;
  clearTyping(room);
  outbox.forgetRoom(name);
  changes.forgetRoom(name);
  reads.forgetRoom(name);
  const wasCurrent = store.current === name;
  store.removeRoom(name);
  if (wasCurrent) view.renderCurrentRoom();
  store.persistRooms();
  view.renderRoomList();
}

function leaveCurrentRoom() {
  const name = store.current;
  if (!name) return;
  if (transport.connected) transport.request({ type: "leave", room: name }, { kind: "leave", room: name });
  removeRoomLocally(name);
  view.announce(`Left #${name}`);
  view.focusAfterLeave();
}

// ---------------------------------------------------------------- DOM events

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
  if (!isRoomName(name)) {
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
  if (!text.trim() || !store.current) {
    ui.messageInput.focus();
    return;
  }
  if (publish(text) !== false) {
    // Our message clears our typing indicator on the other side; typing again
    // right away should announce itself again.
    const room = store.currentRoom();
    if (room) room.lastTypingSent = 0;
    ui.messageInput.value = "";
    view.autosize();
  }
  ui.messageInput.focus();
});

ui.messageInput.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.composer.requestSubmit();
  } else if (ev.key === "ArrowUp" && !ui.messageInput.value && view.editLastOwn()) {
    ev.preventDefault(); // the usual chat shortcut: edit your last message
  }
});

ui.messageInput.addEventListener("input", () => {
  view.autosize();
  const room = store.currentRoom();
  if (!room || !ui.messageInput.value.trim()) return;
  const now = Date.now();
  if (now - room.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  if (transport.connected && room.joinedConn === transport.seq && transport.send({ type: "typing", room: room.name })) {
    room.lastTypingSent = now;
  }
});

ui.scroller.addEventListener("scroll", () => {
  if (view.nearBottom()) {
    ui.jumpLatest.hidden = true;
    readCurrentIfSeen();
  }
});
document.addEventListener("visibilitychange", readCurrentIfSeen);
ui.jumpLatest.addEventListener("click", () => {
  view.scrollToBottom();
  ui.messageInput.focus();
});

window.addEventListener("online", () => transport.retryNow());
window.addEventListener("offline", () => {
  if (store.token && !transport.connected) view.setConnState("offline");
});

// ---------------------------------------------------------------- boot

function boot() {
  const saved = store.restore();
  store.myIds = new Set(saved.myIds);
  if (saved.name) {
    store.name = saved.name;
    ui.nameInput.value = saved.name;
  }
  if (saved.name && (saved.token || saved.user)) {
    store.token = saved.token;
    store.user = saved.user || { id: saved.name, name: saved.name };
    if (saved.user && saved.user.id) store.myIds.add(saved.user.id);
    view.setMe(store.user, saved.name);
    if (saved.token) {
      enterChat(saved.rooms, saved.current);
    } else {
      // Signed in before, but the token was dropped (e.g. a 4001 then reload).
      openRooms(saved.rooms, saved.current);
      refreshTokenAndReconnect();
    }
  } else {
    view.setConnState("signed-out");
    ui.nameInput.focus();
  }
}

// Exposed for debugging in the console and for tests; not an API.
window.switchboard = { store, transport, outbox, view, signOut };

boot();
