// Client state: who we are, the rooms we are in, their logs and the messages
// folded from them, read state, presence and typing. No DOM and no socket:
// main.js feeds it frames, view.js renders it.
// Identity and the room list survive a reload through sessionStorage.

export const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
// A direct room: `dm:<id>+<id>`, the two user ids sorted (protocol §11).
const DIRECT_RE = /^dm:([A-Za-z0-9_.:@-]{1,64})\+([A-Za-z0-9_.:@-]{1,64})$/;
export const DEFAULT_ROOM = "lobby";
// Log entries kept per room; a change is small, so this is about 1000 messages with their reactions.
const MAX_ENTRIES_PER_ROOM = 2000;

export function isRoomName(name) {
  return ROOM_RE.test(name) || DIRECT_RE.test(name);
}

/** The direct room of two users: the same name whoever starts it. */
export function directRoomName(a, b) {
  const [first, second] = a < b ? [a, b] : [b, a];
  return `dm:${first}+${second}`;
}

export function isDirectRoom(name) {
  return DIRECT_RE.test(name);
}

/** In a direct room of ours, the other user's id; otherwise null. */
export function directPeerId(name, myIds) {
  const m = DIRECT_RE.exec(name);
  if (!m) return null;
  if (myIds.has(m[1])) return m[2];
  if (myIds.has(m[2])) return m[1];
  return null;
}

const KEYS = {
  token: "switchboard.token",
  user: "switchboard.user",
  name: "switchboard.name",
  myIds: "switchboard.myIds",
  rooms: "switchboard.rooms",
  current: "switchboard.current",
};

function load(key, fallback = null) {
  try {
    const v = sessionStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    if (value === null || value === undefined) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the session just won't survive a reload */
  }
}

export function validMessage(m) {
  return m && typeof m === "object" && Number.isInteger(m.offset) && m.offset > 0;
}

// ---------------------------------------------------------------- folding the log
//
// A room's history is a log (protocol §11): ordinary messages, and entries
// that change one of them (edit, delete, react, unreact; `target` is its
// offset). The store keeps the raw entries, which is what `since` and
// recovery are about, and derives the messages shown with these pure
// functions, so a change that arrives before its message (an older page
// loaded later) still lands on it.

const CHANGE_KINDS = new Set(["edit", "delete", "react", "unreact"]);

/** A log entry from a frame, or null if it is not a usable one. */
export function entryFrom(m, roomEpoch = null) {
  if (!validMessage(m)) return null;
  const kind = typeof m.kind === "string" ? m.kind : "message"; // servers before §11 send no kind
  if (CHANGE_KINDS.has(kind) && !Number.isInteger(m.target)) return null;
  return {
    kind,
    offset: m.offset,
    epoch: m.epoch ?? roomEpoch,
    msg_id: m.msg_id,
    user: m.user && typeof m.user === "object" ? m.user : { id: "?", name: "?" },
    text: typeof m.text === "string" ? m.text : String(m.text ?? ""),
    ts: typeof m.ts === "number" ? m.ts : Date.now(),
    target: CHANGE_KINDS.has(kind) ? m.target : null,
    emoji: typeof m.emoji === "string" ? m.emoji : null,
  };
}

/**
 * The message shown for a `message` entry. `reactions`: emoji -> the users
 * who gave it, in the order given (a Map: emoji keep the order they first
 * appeared in).
 */
export function messageOf(entry) {
  const { offset, epoch, msg_id, user, text, ts } = entry;
  return { offset, epoch, msg_id, user, text, ts, edited: false, deleted: false, reactions: new Map() };
}

/** `msg` with one change applied: a new object, `msg` itself is left alone. */
export function applyChange(msg, change) {
  switch (change.kind) {
    case "edit":
      return msg.deleted ? msg : { ...msg, text: change.text, edited: true };
    case "delete":
      return { ...msg, text: "", edited: false, deleted: true, reactions: new Map() };
    case "react":
      return msg.deleted ? msg : { ...msg, reactions: withReaction(msg.reactions, change.emoji, change.user) };
    case "unreact":
      return { ...msg, reactions: withoutReaction(msg.reactions, change.emoji, change.user) };
    default:
      return msg; // a kind this client does not know changes nothing it shows
  }
}

export function withReaction(reactions, emoji, user) {
  const users = reactions.get(emoji) || [];
  if (!emoji || users.some((u) => u.id === user.id)) return reactions; // once per user and emoji
  return new Map(reactions).set(emoji, [...users, user]);
}

export function withoutReaction(reactions, emoji, user) {
  const users = reactions.get(emoji);
  if (!users || !users.some((u) => u.id === user.id)) return reactions;
  const next = new Map(reactions);
  const left = users.filter((u) => u.id !== user.id);
  if (left.length) next.set(emoji, left);
  else next.delete(emoji);
  return next;
}

/**
 * The messages shown for a log (entries ascending): offset -> message, in
 * offset order. A change whose message is not in the log changes nothing.
 */
export function foldLog(entries) {
  const shown = new Map();
  for (const e of entries) {
    if (e.kind === "message") shown.set(e.offset, messageOf(e));
    else if (shown.has(e.target)) shown.set(e.target, applyChange(shown.get(e.target), e));
  }
  return shown;
}

/** Where `offset` goes in an array sorted by offset (binary search). */
function sortedIndex(arr, offset) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid].offset < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Room {
  constructor(name) {
    this.name = name;
    this.entries = [];           // the log as received: sorted by offset, unique (see foldLog)
    this.entryOffsets = new Set();
    this.messages = [];          // derived from entries: the messages shown, sorted by offset
    this.byOffset = new Map();   // derived: offset -> message shown
    this.epoch = null;
    this.lastOffset = 0;
    this.loaded = false;         // got at least one `joined` (since is meaningful)
    this.joinedConn = 0;         // transport seq on which `joined` arrived
    this.joinSentConn = 0;
    this.presence = new Map();   // user id -> {user, connections}: capped in a big room
    this.presenceCount = null;   // distinct users present (exact), null until the server says
    this.presenceCap = Infinity; // the server's list cap, learnt from a list shorter than its count
    this.presenceSampled = false; // the list may hold users who left unnamed (a count came instead)
    this.presenceRenewedAt = 0;  // when main.js last re-listed a stale list by itself
    this.presenceRenewTimer = null;
    this.typing = new Map();     // user id -> {name, timer}
    this.lastTypingSent = 0;
    this.unread = 0;             // the badge: messages of others after lastRead
    this.lastRead = 0;           // the highest offset this user has read (server-side read state)
    this.dividerAfter = null;    // "new messages" divider after this offset, while the room is open
    this.readBy = new Map();     // user id -> highest offset they read (`read` events, `joined.peer_read`)
    this.dormant = false;        // a direct room listed by `directs` but not joined yet (joined when opened)
  }

  // The lowest offset still held: older ones were trimmed (or never loaded).
  trimmedFloor() {
    return this.entries.length ? this.entries[0].offset - 1 : 0;
  }
}

export class Store {
  constructor() {
    this.token = null;
    this.user = null;            // {id, name} from the server
    this.name = null;            // the name the user typed (for token refresh)
    this.myIds = new Set();      // every user id this session has had (a token refresh changes it)
    this.rooms = new Map();      // room -> Room
    this.current = null;
    this.peerNames = new Map();  // user id -> {id, name}, for direct rooms started from the member list
  }

  isMine(user) {
    return !!user && this.myIds.has(user.id);
  }

  currentRoom() {
    return this.current ? this.rooms.get(this.current) : null;
  }

  // ------------------------------------------------------------ identity

  /** What a previous page load of this tab left behind. */
  restore() {
    return {
      token: load(KEYS.token),
      user: load(KEYS.user),
      name: load(KEYS.name),
      myIds: load(KEYS.myIds, []) || [],
      rooms: load(KEYS.rooms, [DEFAULT_ROOM]) || [DEFAULT_ROOM],
      current: load(KEYS.current, DEFAULT_ROOM),
    };
  }

  adoptIdentity(name, body) {
    this.token = body.token;
    this.user = body.user && typeof body.user === "object" ? body.user : { id: name, name };
    this.name = name;
    this.myIds.add(this.user.id);
    save(KEYS.token, this.token);
    save(KEYS.user, this.user);
    save(KEYS.name, name);
    save(KEYS.myIds, [...this.myIds]);
  }

  rememberUserId(id) {
    this.myIds.add(id);
    save(KEYS.myIds, [...this.myIds]);
  }

  /** The token was refused (4001): never use it again. */
  dropToken() {
    this.token = null;
    save(KEYS.token, null);
  }

  /** Sign-out: forget everything but the typed name (it prefills the form). */
  forget() {
    this.token = null;
    this.user = null;
    this.rooms.clear();
    this.current = null;
    for (const key of Object.values(KEYS)) save(key, null);
  }

  // ------------------------------------------------------------ rooms

  openRooms(names, current) {
    this.rooms.clear();
    for (const r of names) if (isRoomName(r)) this.rooms.set(r, new Room(r));
    if (!this.rooms.size) this.rooms.set(DEFAULT_ROOM, new Room(DEFAULT_ROOM));
    this.current = this.rooms.has(current) ? current : this.rooms.keys().next().value;
  }

  persistRooms() {
    // Dormant direct rooms are not kept: the next `directs` lists them again.
    save(KEYS.rooms, [...this.rooms.values()].filter((r) => !r.dormant).map((r) => r.name));
    save(KEYS.current, this.current);
  }

  addRoom(name) {
    const room = new Room(name);
    this.rooms.set(name, room);
    return room;
  }

  /** Removes the room; the current room moves to the first one left. */
  removeRoom(name) {
    this.rooms.delete(name);
    if (this.current === name) {
      this.current = this.rooms.size ? this.rooms.keys().next().value : null;
    }
  }

  // ------------------------------------------------------------ the room's log

  /**
   * Adds one log entry (once) and updates the messages shown. Returns null
   * when it is known or unusable, else {entry, msg, trimmed, refolded}:
   * `msg` is the message shown for it (the new one, or the changed target;
   * null when the target is not loaded), `refolded` means every message was
   * derived again (the entry landed before newer ones, or old ones fell off).
   */
  insertEntry(room, m) {
    const entry = entryFrom(m, room.epoch);
    if (!entry || room.entryOffsets.has(entry.offset)) return null;
    const log = room.entries;
    const appended = !log.length || log[log.length - 1].offset < entry.offset;
    log.splice(appended ? log.length : sortedIndex(log, entry.offset), 0, entry);
    room.entryOffsets.add(entry.offset);
    let trimmed = false;
    while (log.length > MAX_ENTRIES_PER_ROOM) {
      room.entryOffsets.delete(log.shift().offset);
      trimmed = true;
    }
    if (entry.offset > room.lastOffset) room.lastOffset = entry.offset;
    const shownAt = entry.kind === "message" ? entry.offset : entry.target;
    if (!appended || trimmed) {
      this.refold(room);
      return { entry, msg: room.byOffset.get(shownAt) ?? null, trimmed, refolded: true };
    }
    // The common case, a live entry: change only what it touches.
    let msg = null;
    if (entry.kind === "message") {
      msg = messageOf(entry);
      room.messages.push(msg);
      room.byOffset.set(msg.offset, msg);
    } else if (room.byOffset.has(shownAt)) {
      msg = applyChange(room.byOffset.get(shownAt), entry);
      room.messages[sortedIndex(room.messages, shownAt)] = msg;
      room.byOffset.set(shownAt, msg);
    }
    return { entry, msg, trimmed: false, refolded: false };
  }

  /** Derives the messages shown from the whole log again. */
  refold(room) {
    room.byOffset = foldLog(room.entries);
    room.messages = [...room.byOffset.values()];
  }

  clearMessages(room) {
    room.entries = [];
    room.entryOffsets.clear();
    room.messages = [];
    room.byOffset.clear();
  }

  /** The room's history was replaced on the server under a new epoch. */
  resetRoom(room, epoch, offset) {
    this.clearMessages(room);
    room.epoch = epoch ?? null;
    room.lastOffset = offset;
  }

  // ------------------------------------------------------------ read state

  /** Loaded messages of others, not deleted, after `offset`: what an unread badge counts. */
  unreadAfter(room, offset) {
    let n = 0;
    for (let i = room.messages.length - 1; i >= 0 && room.messages[i].offset > offset; i--) {
      const m = room.messages[i];
      if (!m.deleted && !this.isMine(m.user)) n++;
    }
    return n;
  }

  /** The other user's read mark in a direct room moved to `offset` (never backwards). */
  peerRead(room, offset) {
    const peer = directPeerId(room.name, this.myIds);
    if (peer === null || !Number.isInteger(offset) || offset <= (room.readBy.get(peer) ?? 0)) return false;
    room.readBy.set(peer, offset);
    return true;
  }

  /** The peer's read mark reached `msg` (a direct room's "seen"). */
  seenByPeer(room, msg) {
    const peer = directPeerId(room.name, this.myIds);
    return peer !== null && (room.readBy.get(peer) ?? 0) >= msg.offset;
  }

  // ------------------------------------------------------------ direct rooms

  /** The other user of a direct room: {id, name}, the name as far as we know it. */
  peerOf(room) {
    const id = directPeerId(room.name, this.myIds);
    if (id === null) return null;
    const seen = room.presence.get(id)?.user
      ?? [...room.messages].reverse().find((m) => m.user.id === id)?.user
      ?? this.peerNames.get(id);
    return { id, name: (seen && seen.name) || id };
  }

  // ------------------------------------------------------------ presence
  //
  // In a big room the member list is a sample (at most PRESENCE_LIST_MAX,
  // and above PRESENCE_EVENTS_MAX no names arrive), so the count is kept
  // apart from it: the latest `count` the server sent wins.

  /** `joined` / `presence`: a fresh (capped) list and the exact count. */
  setPresence(room, members, count) {
    room.presence.clear();
    for (const p of Array.isArray(members) ? members : []) {
      if (p && p.user && p.user.id) room.presence.set(p.user.id, p);
    }
    room.presenceCount = Number.isInteger(count) ? count : null;
    room.presenceSampled = room.presenceCount !== null && room.presence.size < room.presenceCount;
    if (room.presenceSampled) room.presenceCap = Math.max(1, room.presence.size);
  }

  presenceJoined(room, user, count) {
    const prev = room.presence.get(user.id);
    room.presence.set(user.id, { user, connections: prev ? prev.connections : 1 });
    this.presenceCounted(room, count);
  }

  presenceLeft(room, userId, count) {
    room.presence.delete(userId);
    this.presenceCounted(room, count);
  }

  /** `presence_count`: joins and leaves went by without names, so the list may be stale. */
  presenceCountOnly(room, count) {
    room.presenceSampled = true;
    this.presenceCounted(room, count);
  }

  /** The `count` of `presence_count` or of a join or leave (absent from older servers). */
  presenceCounted(room, count) {
    if (Number.isInteger(count) && count >= 0) room.presenceCount = count;
    else if (room.presenceCount !== null) room.presenceCount = null; // unknown: fall back to the list
  }

  /** What the sidebar says: {count, listed}; count >= listed unless the list is stale. */
  presenceSummary(room) {
    const listed = room.presence.size;
    return { listed, count: room.presenceCount ?? listed };
  }

  /**
   * Whether asking `presence` again would show more than we do: above
   * PRESENCE_EVENTS_MAX joins and leaves come without names, so once the
   * room is small enough to list whole, or someone unnamed left, the list
   * we hold is wrong. A room bigger than the cap keeps its sample (and a
   * Refresh button): renewing it on every change would cost every member a
   * request per change.
   */
  presenceNeedsRenewal(room) {
    if (room.presenceCount === null) return false;
    const { listed, count } = this.presenceSummary(room);
    // Once the room fits in one list again, a list that went without names is renewed.
    return listed > count || listed < Math.min(count, room.presenceCap)
      || (room.presenceSampled && count <= room.presenceCap);
  }

  /** Offline: nobody is known to be here until the next `joined`. */
  clearPresence(room) {
    room.presence.clear();
    room.presenceCount = null;
  }
}
