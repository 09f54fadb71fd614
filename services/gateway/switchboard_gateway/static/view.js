// Everything on the page. Security rule for this file: user-controlled
// strings (message text, names, room names, server error messages and close
// reasons) only ever go through textContent / attributes, never innerHTML.

import { avatar, el } from "./dom.js";
import { messageEl } from "./message_view.js";
import { EmojiPicker } from "./picker.js";

const GROUP_WINDOW_MS = 5 * 60 * 1000;

const $ = (id) => document.getElementById(id);

export { el };

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

// Thousands separators in the reader's locale: "12,345".
const formatCount = (n) => n.toLocaleString();

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
 * refreshPresence, retry, discard, react, unreact, edit, remove, startDirect).
 */
export class View {
  constructor({ store, isConnected, pendingIn, actions }) {
    this.store = store;
    this.isConnected = isConnected;
    this.pendingIn = pendingIn;
    this.actions = actions;
    this.pendingEls = new Map(); // client_msg_id -> {li, status, actions} in the pending list
    this.editing = null;         // {room, offset, draft} while a message's inline editor is open
    this.confirming = null;      // offset of the message whose deletion awaits confirmation
    this.picker = new EmojiPicker();
    this.messageActions = this.makeMessageActions(); // one object for every message rendered
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

  /** How a room is named on the page: "#lobby", or "@Bob" for a direct room. */
  roomLabel(room) {
    const peer = this.store.peerOf(room);
    return peer ? { sigil: "@", name: peer.name } : { sigil: "#", name: room.name };
  }

  renderRoomList() {
    const { store } = this;
    const items = [];
    for (const room of store.rooms.values()) {
      const active = room.name === store.current;
      const { sigil, name } = this.roomLabel(room);
      const btn = el("button", {
        type: "button",
        class: "room-button",
        "aria-current": active ? "true" : null,
        title: `${sigil}${name}`,
      },
      el("span", { class: "hash", "aria-hidden": "true", text: sigil }),
      el("span", { class: "room-name", text: name }),
      room.unread && !active
        ? el("span", {
          class: "unread", "data-testid": "unread", "aria-label": `${room.unread} unread`,
          text: room.unread > 99 ? "99+" : String(room.unread),
        })
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
    this.editing = null;
    this.confirming = null;
    this.picker.close({ refocus: false });
    this.renderRoomTitle();
    this.renderMessages();
    this.renderPendingForCurrent();
    this.renderPresence();
    this.renderTyping();
    this.updateComposerState();
  }

  renderRoomTitle() {
    const room = this.store.currentRoom();
    ui.roomTitle.replaceChildren();
    if (room) {
      const { sigil, name } = this.roomLabel(room);
      ui.roomTitle.append(el("span", { class: "hash", "aria-hidden": "true", text: sigil }), name);
      ui.messageLabel.textContent = `Message ${sigil}${name}`;
      ui.messageInput.placeholder = `Message ${sigil}${name}`;
      document.title = `${sigil}${name} · Switchboard`;
    } else {
      ui.roomTitle.textContent = "No room";
      ui.messageLabel.textContent = "Message";
      ui.messageInput.placeholder = "Join a room to chat";
      document.title = "Switchboard";
    }
    ui.leaveRoom.hidden = !room;
  }

  focusAfterLeave() {
    (ui.roomList.querySelector("button") || ui.roomInput).focus();
  }

  // -------------------------------------------------------------- messages

  /** In a direct room: the offset of our newest message once the peer has read it (shows "Seen"). */
  seenOffset(room) {
    const { store } = this;
    if (!store.peerOf(room)) return null;
    for (let i = room.messages.length - 1; i >= 0; i--) {
      const m = room.messages[i];
      if (m.deleted || !store.isMine(m.user)) continue;
      return store.seenByPeer(room, m) ? m.offset : null;
    }
    return null;
  }

  messageEl(room, msg, prev, seenAt = this.seenOffset(room)) {
    const editing = this.editing && this.editing.room === room.name && this.editing.offset === msg.offset
      ? this.editing.draft : null;
    return messageEl(msg, {
      isMine: (u) => this.store.isMine(u),
      cont: !!sameGroup(prev, msg) && !msg.deleted && !(prev && prev.deleted),
      seen: seenAt === msg.offset,
      editing,
      confirmingDelete: this.confirming === msg.offset,
      on: this.messageActions,
    });
  }

  nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jumpLatest.hidden = true;
  }

  /** The first message the "new messages" divider goes above, or null. */
  dividerBefore(room) {
    if (room.dividerAfter === null) return null;
    return room.messages.find((m) => m.offset > room.dividerAfter && !m.deleted && !this.store.isMine(m.user)) || null;
  }

  renderMessages({ keepScroll = false } = {}) {
    const room = this.store.currentRoom();
    const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
    const frag = document.createDocumentFragment();
    let divider = null;
    if (room) {
      const seenAt = this.seenOffset(room);
      const firstNew = this.dividerBefore(room);
      let prev = null;
      for (const m of room.messages) {
        if (m === firstNew) {
          divider = el("li", { class: "new-divider", "data-testid": "new-divider", role: "separator" },
            el("span", { text: "New messages" }));
          frag.append(divider);
          prev = null; // the first new message shows its author again
        }
        frag.append(this.messageEl(room, m, prev, seenAt));
        prev = m;
      }
    }
    ui.messageList.replaceChildren(frag);
    this.updateEmptyState();
    if (keepScroll) ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
    else if (divider && divider.offsetTop > ui.scroller.clientHeight / 2) {
      // Many unread: start at the first of them rather than the bottom.
      ui.scroller.scrollTop = divider.offsetTop - 48;
      ui.jumpLatest.hidden = this.nearBottom();
    } else this.scrollToBottom();
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
    const node = this.messageEl(room, msg, prev);
    let before = null;
    if (next) before = ui.messageList.querySelector(`[data-offset="${next.offset}"]`);
    ui.messageList.insertBefore(node, before);
    if (before) before.classList.toggle("cont", !!sameGroup(msg, next));
    this.updateSeen(room);
    this.updateEmptyState();
    if (stick || this.store.isMine(msg.user)) this.scrollToBottom();
    else ui.jumpLatest.hidden = false;
  }

  /**
   * `msg` changed (edited, deleted, reacted to): its <li> is rendered again.
   * Focus inside it stays on the same control, so keyboard users keep their place.
   */
  replaceMessage(room, msg) {
    const old = ui.messageList.querySelector(`[data-testid="message"][data-offset="${msg.offset}"]`);
    if (!old) return;
    const focused = old.contains(document.activeElement) ? document.activeElement : null;
    const action = focused && focused.dataset.action;
    const emoji = focused && focused.dataset.emoji;
    const idx = room.messages.indexOf(msg);
    const node = this.messageEl(room, msg, idx > 0 ? room.messages[idx - 1] : null);
    node.classList.toggle("cont", old.classList.contains("cont") && !msg.deleted);
    old.replaceWith(node);
    if (focused) {
      const same = [...node.querySelectorAll("[data-action]")]
        .find((b) => b.dataset.action === action && (b.dataset.emoji ?? null) === (emoji ?? null));
      (same || node.querySelector("[data-action]") || ui.messageInput).focus();
    }
  }

  /** The user answered: the "new messages" divider has done its job. */
  clearDivider(room) {
    if (!room || room.dividerAfter === null) return;
    room.dividerAfter = null;
    if (room.name === this.store.current) ui.messageList.querySelector('[data-testid="new-divider"]')?.remove();
  }

  /** Moves the "Seen" receipt of a direct room to where it belongs now. */
  updateSeen(room) {
    const at = this.seenOffset(room);
    for (const n of ui.messageList.querySelectorAll('[data-testid="seen"]')) {
      if (n.closest("[data-offset]").dataset.offset !== String(at)) n.remove();
    }
    if (at === null) return;
    const li = ui.messageList.querySelector(`[data-testid="message"][data-offset="${at}"]`);
    if (li && !li.querySelector('[data-testid="seen"]')) {
      li.querySelector(".body").append(el("div", { class: "seen", "data-testid": "seen", text: "Seen" }));
    }
  }

  /** Opens the inline editor on our newest message (ArrowUp in an empty composer). */
  editLastOwn() {
    const room = this.store.currentRoom();
    if (!room) return false;
    for (let i = room.messages.length - 1; i >= 0; i--) {
      const m = room.messages[i];
      if (!m.deleted && this.store.isMine(m.user)) {
        this.startEdit(m);
        return true;
      }
    }
    return false;
  }

  startEdit(msg) {
    const room = this.store.currentRoom();
    if (!room) return;
    this.editing = { room: room.name, offset: msg.offset, draft: msg.text };
    this.confirming = null;
    this.replaceMessage(room, room.byOffset.get(msg.offset) || msg);
    const box = ui.messageList.querySelector(`[data-offset="${msg.offset}"] .edit-input`);
    if (box) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
      box.scrollIntoView({ block: "nearest" });
    }
  }

  /** What the controls of a rendered message do (message_view.js calls these). */
  makeMessageActions() {
    const current = () => this.store.currentRoom();
    const rerender = (offset) => {
      const room = current();
      const msg = room && room.byOffset.get(offset);
      if (msg) this.replaceMessage(room, msg);
      return room ? ui.messageList.querySelector(`[data-testid="message"][data-offset="${offset}"]`) : null;
    };
    return {
      react: (msg, emoji) => this.actions.react(msg.offset, emoji),
      unreact: (msg, emoji) => this.actions.unreact(msg.offset, emoji),
      openPicker: (msg, button) => this.picker.open(button, (emoji) => {
        const room = current();
        const now = room && room.byOffset.get(msg.offset);
        if (!now || now.deleted) return;
        const mineAlready = (now.reactions.get(emoji) || []).some((u) => this.store.isMine(u));
        if (mineAlready) this.actions.unreact(msg.offset, emoji);
        else this.actions.react(msg.offset, emoji);
      }),
      startEdit: (msg) => this.startEdit(msg),
      draftChanged: (msg, text) => {
        if (this.editing && this.editing.offset === msg.offset) this.editing.draft = text;
      },
      saveEdit: (msg, text) => {
        const room = current();
        const now = room && room.byOffset.get(msg.offset);
        if (!text.trim()) {
          this.notify("A message can't be empty: delete it instead.", { kind: "warn", key: "edit" });
          return;
        }
        this.editing = null;
        if (now && !now.deleted && text !== now.text) this.actions.edit(msg.offset, text);
        rerender(msg.offset);
        ui.messageInput.focus();
      },
      cancelEdit: (msg) => {
        this.editing = null;
        const li = rerender(msg.offset);
        (li && li.querySelector('[data-action="edit"]') || ui.messageInput).focus();
      },
      askDelete: (msg) => {
        this.confirming = msg.offset;
        this.editing = null;
        const li = rerender(msg.offset);
        if (li) li.querySelector('[data-action="delete-confirm"]')?.focus();
      },
      confirmDelete: (msg) => {
        this.confirming = null;
        this.actions.remove(msg.offset);
        rerender(msg.offset);
        ui.messageInput.focus();
      },
      cancelDelete: (msg) => {
        this.confirming = null;
        const li = rerender(msg.offset);
        (li && li.querySelector('[data-action="delete"]') || ui.messageInput).focus();
      },
    };
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
    li.append(avatar({ id: (store.user && store.user.id) || name, name }), el("div", { class: "body" },
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
      const mine = store.isMine(p.user);
      const who = [avatar(p.user, { small: true }), el("span", { class: "member-name", text: name })];
      return el("li", {
        class: mine ? "member me" : "member",
        dataset: { user: p.user.id, testid: "member" },
        title: p.connections > 1 ? `${name} (${p.connections} connections)` : name,
      }, ...(mine
        ? [...who, el("span", { class: "you-tag", text: "you" })]
        // Anyone else: a button that opens the direct room with them.
        : [el("button", {
          type: "button", class: "member-button", "data-testid": "member-dm",
          "aria-label": `${name}: send a direct message`, title: `Send ${name} a direct message`,
          onclick: () => this.actions.startDirect(p.user),
        }, ...who, el("span", { class: "dm-hint", "aria-hidden": "true", text: "DM" }))]));
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
