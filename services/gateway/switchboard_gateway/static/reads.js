// Tells the server how far the user has read each room (`read`, protocol
// §11): never backwards, and at most one frame per room per READ_EVERY_MS
// (the server stores one write per second per user and room anyway); the
// last mark of a burst is sent when the interval ends, and a mark that found
// no socket is sent after the next `joined`.

const READ_EVERY_MS = 1000;

export class ReadMarks {
  /** `send(frame)` returns whether it went out on a joined socket. */
  constructor({ send }) {
    this.send = send;
    this.rooms = new Map(); // room -> {sent, wanted, lastAt, timer}
  }

  mark(roomName, offset) {
    const r = this.rooms.get(roomName) || { sent: 0, wanted: 0, lastAt: 0, timer: null };
    this.rooms.set(roomName, r);
    if (offset <= r.wanted) return;
    r.wanted = offset;
    this.flush(roomName);
  }

  /** Sends the room's mark if it moved and the interval allows; else waits for it. */
  flush(roomName) {
    const r = this.rooms.get(roomName);
    if (!r || r.wanted <= r.sent || r.timer) return;
    const wait = r.lastAt + READ_EVERY_MS - Date.now();
    if (wait > 0) {
      r.timer = setTimeout(() => {
        r.timer = null;
        this.flush(roomName);
      }, wait);
      return;
    }
    if (this.send({ type: "read", room: roomName, offset: r.wanted })) {
      r.sent = r.wanted;
      r.lastAt = Date.now();
    }
  }

  forgetRoom(roomName) {
    const r = this.rooms.get(roomName);
    if (r) clearTimeout(r.timer);
    this.rooms.delete(roomName);
  }

  clear() {
    for (const name of [...this.rooms.keys()]) this.forgetRoom(name);
  }
}
