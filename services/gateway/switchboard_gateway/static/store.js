// Client state: who we are, the rooms we are in, their messages, presence and
// typing. No DOM and no socket: main.js feeds it frames, view.js renders it.
// Identity and the room list survive a reload through sessionStorage.

export const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
export const DEFAULT_ROOM = "lobby";
const MAX_MESSAGES_PER_ROOM = 1000;

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

export class Room {
  constructor(name) {
    this.name = name;
    this.messages = [];          // sorted by offset, unique
    this.byOffset = new Map();   // offset -> message
    this.epoch = null;
    this.lastOffset = 0;
    this.loaded = false;         // got at least one `joined` (since is meaningful)
    this.joinedConn = 0;         // transport seq on which `joined` arrived
    this.joinSentConn = 0;
    this.presence = new Map();   // user id -> {user, connections}: capped in a big room
    this.presenceCount = null;   // distinct users present (exact), null until the server says
    this.presenceCap = Infinity; // the server's list cap, learnt from a list shorter than its count
    this.presenceRenewedAt = 0;  // when main.js last re-listed a stale list by itself
    this.presenceRenewTimer = null;
    this.typing = new Map();     // user id -> {name, timer}
    this.lastTypingSent = 0;
    this.unread = 0;
  }

  // The lowest offset still held: older ones were trimmed (or never loaded).
  trimmedFloor() {
    return this.messages.length ? this.messages[0].offset - 1 : 0;
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
    for (const r of names) if (ROOM_RE.test(r)) this.rooms.set(r, new Room(r));
    if (!this.rooms.size) this.rooms.set(DEFAULT_ROOM, new Room(DEFAULT_ROOM));
    this.current = this.rooms.has(current) ? current : this.rooms.keys().next().value;
  }

  persistRooms() {
    save(KEYS.rooms, [...this.rooms.keys()]);
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

  // ------------------------------------------------------------ messages

  /**
   * Inserts keeping room.messages sorted and unique by offset.
   * Returns {msg, trimmed} when the message is new, else null.
   */
  insertMessage(room, m) {
    if (!validMessage(m) || room.byOffset.has(m.offset)) return null;
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
    return { msg, trimmed };
  }

  clearMessages(room) {
    room.messages = [];
    room.byOffset.clear();
  }

  /** The room's history was replaced on the server under a new epoch. */
  resetRoom(room, epoch, offset) {
    this.clearMessages(room);
    room.epoch = epoch ?? null;
    room.lastOffset = offset;
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
    if (room.presenceCount !== null && room.presence.size < room.presenceCount) {
      room.presenceCap = Math.max(1, room.presence.size);
    }
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

  /** `presence_count`, or the `count` of a join or leave (absent from older servers). */
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
    return listed > count || listed < Math.min(count, room.presenceCap);
  }

  /** Offline: nobody is known to be here until the next `joined`. */
  clearPresence(room) {
    room.presence.clear();
    room.presenceCount = null;
  }
}
