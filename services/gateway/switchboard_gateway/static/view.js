// Everything on the page. Security rule for this file: user-controlled
// strings (message text, names, room names, server error messages and close
// reasons) only ever go through textContent / attributes, never innerHTML.

const GROUP_WINDOW_MS = 5 * 60 * 1000;

const $ = (id) => document.getElementById(id);

/** A DOM element; `text` and children are text nodes, never markup. */
export function el(tag, props = {}, ...children) {
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

export const ui = {
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
  presenceMore: $("presence-more"),
  presenceMoreText: $("presence-more-text"),
  presenceRefresh: $("presence-refresh"),
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

// ---------------------------------------------------------------- formatting

const pad2 = (n) => String(n).padStart(2, "0");

// Thousands separators in the reader's locale: "12,345".
const formatCount = (n) => n.toLocaleString();

function hhmm(ts) {
  const d = new Date(ts);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function hashHue(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(h) % 360;
}

function initialOf(name) {
  const first = [...(name || "?").trim()][0] || "?";
  return first.toUpperCase();
}

function sameGroup(a, b) {
  return a && b && a.user.id === b.user.id && Math.abs(b.ts - a.ts) < GROUP_WINDOW_MS;
}

// Text is read by tests: it contains "connected", "connecting", "reconnecting"
// or "signed out". Never "disconnected" (that would contain "connected").
const CONN_LABELS = {
  "signed-out": "signed out",
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  offline: "offline — reconnecting…",
  kicked: "removed by the server",
};

/**
 * `store` is read, never written. `isConnected()` says whether the socket
 * got `welcome`; `pendingIn(room)` lists the room's pending publishes;
 * `actions` are what clicks in the rendered parts do (switchRoom,
 * refreshPresence, retry, discard).
 */
export class View {
  constructor({ store, isConnected, pendingIn, actions }) {
    this.store = store;
    this.isConnected = isConnected;
    this.pendingIn = pendingIn;
    this.actions = actions;
    this.pendingEls = new Map(); // client_msg_id -> {li, status, actions} in the pending list
    ui.presenceRefresh.addEventListener("click", () => this.actions.refreshPresence());
  }

  // -------------------------------------------------------------- header

  setConnState(kind, detail = "") {
    ui.connState.dataset.state = kind;
    ui.connState.textContent = detail ? `${CONN_LABELS[kind]} ${detail}` : CONN_LABELS[kind];
    document.body.dataset.conn = kind;
    this.updateComposerState();
  }

  setNode(node) {
    if (node) {
      ui.nodeBadge.textContent = `served by ${node}`;
      ui.nodeBadge.hidden = false;
    } else {
      ui.nodeBadge.hidden = true;
    }
  }

  setMe(user, typedName) {
    ui.meLabel.textContent = (user && user.name) || typedName;
    ui.meLabel.title = (user && user.id) || "";
  }

  showChat() {
    ui.signinView.hidden = true;
    ui.chatView.hidden = false;
    ui.account.hidden = false;
  }

  showSignIn(message, name) {
    ui.chatView.hidden = true;
    ui.account.hidden = true;
    ui.signinView.hidden = false;
    ui.messageList.replaceChildren();
    ui.pendingList.replaceChildren();
    this.pendingEls.clear();
    ui.notices.replaceChildren();
    ui.signinError.textContent = message;
    if (name) ui.nameInput.value = name;
    ui.nameInput.focus();
  }

  // -------------------------------------------------------------- notices

  /** `action`: {label, run} adds a button that runs it and dismisses the notice. */
  notify(text, { kind = "info", room = null, timeout = 8000, key = null, action = null } = {}) {
    if (key) this.dismiss(key);
    const close = el("button", {
      type: "button", class: "notice-close", "aria-label": "Dismiss", text: "×",
    });
    const item = el("div", {
      class: `notice notice-${kind}`, "data-testid": "notice", role: kind === "error" ? "alert" : null,
      dataset: { kind, ...(key ? { key } : {}), ...(room ? { room } : {}) },
    }, el("span", { class: "notice-text", text }),
    action ? el("button", {
      type: "button", class: "link-button", "data-testid": "notice-action", text: action.label,
      onclick: () => { item.remove(); action.run(); },
    }) : null,
    close);
    close.addEventListener("click", () => item.remove());
    ui.notices.append(item);
    while (ui.notices.children.length > 4) ui.notices.firstElementChild.remove();
    if (timeout) setTimeout(() => item.remove(), timeout);
    return item;
  }

  dismiss(key) {
    for (const n of ui.notices.querySelectorAll("[data-key]")) {
      if (n.dataset.key === key) n.remove();
    }
  }

  announce(text) {
    const p = el("p", { text });
    ui.announcer.append(p);
    while (ui.announcer.children.length > 5) ui.announcer.firstElementChild.remove();
  }

  // -------------------------------------------------------------- rooms

  renderRoomList() {
    const { store } = this;
    const items = [];
    for (const room of store.rooms.values()) {
      const active = room.name === store.current;
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
      btn.addEventListener("click", () => this.actions.switchRoom(room.name));
      items.push(el("li", {
        class: active ? "room-item active" : "room-item",
        dataset: { room: room.name, testid: "room" },
      }, btn));
    }
    ui.roomList.replaceChildren(...items);
  }

  renderCurrentRoom() {
    const room = this.store.currentRoom();
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
    this.renderMessages();
    this.renderPendingForCurrent();
    this.renderPresence();
    this.renderTyping();
    this.updateComposerState();
  }

  focusAfterLeave() {
    (ui.roomList.querySelector("button") || ui.roomInput).focus();
  }

  // -------------------------------------------------------------- messages

  messageEl(msg, prev) {
    const mine = this.store.isMine(msg.user);
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

  nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jumpLatest.hidden = true;
  }

  renderMessages({ keepScroll = false } = {}) {
    const room = this.store.currentRoom();
    const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
    const frag = document.createDocumentFragment();
    if (room) {
      let prev = null;
      for (const m of room.messages) {
        frag.append(this.messageEl(m, prev));
        prev = m;
      }
    }
    ui.messageList.replaceChildren(frag);
    this.updateEmptyState();
    if (keepScroll) ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
    else this.scrollToBottom();
  }

  /** The room (the current one) got `msg`; `trimmed` means old ones fell off. */
  renderInsertedMessage(room, msg, trimmed) {
    if (trimmed) {
      this.renderMessages();
      return;
    }
    const stick = this.nearBottom();
    const idx = room.messages.indexOf(msg);
    const prev = idx > 0 ? room.messages[idx - 1] : null;
    const next = room.messages[idx + 1];
    const node = this.messageEl(msg, prev);
    let before = null;
    if (next) before = ui.messageList.querySelector(`[data-offset="${next.offset}"]`);
    ui.messageList.insertBefore(node, before);
    if (before) before.classList.toggle("cont", !!sameGroup(msg, next));
    this.updateEmptyState();
    if (stick || this.store.isMine(msg.user)) this.scrollToBottom();
    else ui.jumpLatest.hidden = false;
  }

  // -------------------------------------------------------------- pending publishes

  pendingStatusText(p) {
    switch (p.status) {
      case "failed": return p.error || "Not sent";
      case "rate_limited": return "Sending too fast — will retry…";
      case "retrying": return "Server busy — will retry…";
      case "sent": return "Sent";
      default: return this.isConnected() ? "Sending…" : "Waiting for connection…";
    }
  }

  /** Shows `p` in the pending list (if it belongs to the current room). */
  addPending(p) {
    const { store } = this;
    if (p.room !== store.current) return;
    const name = (store.user && store.user.name) || store.name || "you";
    const status = el("span", { class: "pending-status" });
    const actions = el("span", { class: "pending-actions" });
    const li = el("li", {
      class: "msg mine pending", "data-testid": "pending-message", "data-cmid": p.cmid,
      "aria-label": "Message not yet delivered",
    });
    const avatar = el("span", { class: "avatar", "aria-hidden": "true", text: initialOf(name) });
    avatar.style.setProperty("--hue", String(hashHue((store.user && store.user.id) || name)));
    li.append(avatar, el("div", { class: "body" },
      el("div", { class: "text", text: p.text }),
      el("div", { class: "pending-meta" }, status, actions)));
    this.pendingEls.set(p.cmid, { li, status, actions });
    ui.pendingList.append(li);
    this.updatePending(p);
    this.updateEmptyState();
    this.scrollToBottom();
  }

  updatePending(p) {
    const shown = this.pendingEls.get(p.cmid);
    if (!shown) return;
    shown.status.textContent = this.pendingStatusText(p);
    // A message that arrived before its ack hides the ghost, unless it then failed.
    shown.li.hidden = !!p.matched && p.status !== "failed";
    shown.li.classList.toggle("failed", p.status === "failed");
    shown.actions.replaceChildren();
    if (p.status === "failed") {
      const retry = el("button", { type: "button", class: "link-button", text: "Retry" });
      retry.addEventListener("click", () => this.actions.retry(p));
      const drop = el("button", { type: "button", class: "link-button", text: "Discard" });
      drop.addEventListener("click", () => this.actions.discard(p));
      if (p.error && !/too long/i.test(p.error)) shown.actions.append(retry);
      shown.actions.append(drop);
    }
  }

  hidePending(p) {
    const shown = this.pendingEls.get(p.cmid);
    if (shown) shown.li.hidden = true;
  }

  removePending(p) {
    const shown = this.pendingEls.get(p.cmid);
    if (shown) shown.li.remove();
    this.pendingEls.delete(p.cmid);
    this.updateEmptyState();
  }

  renderPendingForCurrent() {
    ui.pendingList.replaceChildren();
    this.pendingEls.clear();
    if (!this.store.current) return;
    for (const p of this.pendingIn(this.store.current)) this.addPending(p);
  }

  updateEmptyState() {
    const room = this.store.currentRoom();
    let text = "";
    if (!room) text = "You're not in any room. Join one from the sidebar.";
    else if (!room.messages.length && !ui.pendingList.querySelector("li:not([hidden])")) {
      text = room.loaded ? `No messages in #${room.name} yet. Say hello!` : "Loading…";
    }
    ui.emptyState.textContent = text;
    ui.emptyState.hidden = !text;
  }

  // -------------------------------------------------------------- presence and typing

  renderPresence() {
    const { store } = this;
    const room = store.currentRoom();
    const members = room ? [...room.presence.values()] : [];
    members.sort((a, b) => {
      const am = store.isMine(a.user) ? 0 : 1;
      const bm = store.isMine(b.user) ? 0 : 1;
      if (am !== bm) return am - bm;
      return String(a.user.name || a.user.id).localeCompare(String(b.user.name || b.user.id));
    });
    const items = members.map((p) => {
      const name = p.user.name || p.user.id;
      const dot = el("span", { class: "avatar small", "aria-hidden": "true", text: initialOf(name) });
      dot.style.setProperty("--hue", String(hashHue(p.user.id)));
      return el("li", {
        class: store.isMine(p.user) ? "member me" : "member",
        dataset: { user: p.user.id, testid: "member" },
        title: p.connections > 1 ? `${name} (${p.connections} connections)` : name,
      }, dot, el("span", { class: "member-name", text: name }),
      store.isMine(p.user) ? el("span", { class: "you-tag", text: "you" }) : null);
    });
    ui.presenceList.replaceChildren(...items);
    const { count, listed } = room ? store.presenceSummary(room) : { count: 0, listed: 0 };
    ui.presenceCount.textContent = room ? formatCount(count) : "";
    ui.presenceCount.setAttribute("aria-label", room ? `${formatCount(count)} here` : "");
    // A big room lists a capped sample: say how much of the room it is.
    const partial = !!room && count > listed;
    ui.presenceMore.hidden = !partial;
    ui.presenceMoreText.textContent = partial ? `showing ${formatCount(listed)} of ${formatCount(count)}` : "";
  }

  renderTyping() {
    const room = this.store.currentRoom();
    const names = room ? [...room.typing.values()].map((t) => t.name) : [];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names[0]}, ${names[1]} and ${names.length - 2} more are typing…`;
    ui.typing.textContent = text;
    ui.typing.classList.toggle("active", !!text);
  }

  // -------------------------------------------------------------- composer

  updateComposerState() {
    ui.messageInput.disabled = !this.store.current;
    ui.composer.classList.toggle("offline", !this.isConnected());
  }

  autosize() {
    const t = ui.messageInput;
    t.style.height = "auto";
    t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
  }
}
