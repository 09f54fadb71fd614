// One message on the page: author, time, text (or the inline editor, or the
// "message deleted" placeholder), the "edited" marker, reaction chips, the
// "seen" receipt, and the actions toolbar (react; edit and delete on one's
// own). Rendering only: what a click does is the caller's `on` callbacks.
// Every control is a <button> (reachable with Tab, works with Enter/Space);
// the toolbar shows on hover and whenever focus is inside the message.

import { avatar, el, hhmm } from "./dom.js";

const EDIT_MAX_HEIGHT_PX = 200;

function names(users) {
  return users.map((u) => u.name || u.id).join(", ");
}

function reactionChips(msg, mine, on) {
  const chips = [...msg.reactions].map(([emoji, users]) => {
    const me = users.some(mine);
    return el("button", {
      type: "button",
      class: me ? "chip me" : "chip",
      "data-testid": "reaction",
      "data-action": "chip",
      "data-emoji": emoji,
      "aria-pressed": me ? "true" : "false",
      "aria-label": `${emoji} ${users.length}: ${names(users)}${me ? " (click to remove yours)" : ""}`,
      title: names(users),
      onclick: () => (me ? on.unreact(msg, emoji) : on.react(msg, emoji)),
    }, el("span", { class: "chip-emoji", "aria-hidden": "true", text: emoji }),
    el("span", { class: "chip-count", "aria-hidden": "true", text: String(users.length) }));
  });
  if (!chips.length) return null;
  chips.push(el("button", {
    type: "button", class: "chip chip-add", "data-action": "chip-add", "aria-label": "Add reaction",
    title: "Add reaction", text: "+", onclick: (ev) => on.openPicker(msg, ev.currentTarget),
  }));
  return el("div", { class: "reactions", role: "group", "aria-label": "Reactions" }, ...chips);
}

function editor(msg, draft, on) {
  const box = el("textarea", {
    class: "edit-input", "data-testid": "edit-input", "data-action": "edit-input",
    "aria-label": "Edit message", rows: "1",
  });
  box.value = draft;
  const grow = () => {
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight, EDIT_MAX_HEIGHT_PX)}px`;
  };
  box.addEventListener("input", () => {
    on.draftChanged(msg, box.value);
    grow();
  });
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.preventDefault();
      on.cancelEdit(msg);
    } else if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      on.saveEdit(msg, box.value);
    }
  });
  requestAnimationFrame(grow);
  return el("form", {
    class: "editor",
    onsubmit: (ev) => {
      ev.preventDefault();
      on.saveEdit(msg, box.value);
    },
  }, box,
  el("div", { class: "editor-bar" },
    el("span", { class: "editor-hint", text: "Enter to save · Esc to cancel" }),
    el("button", { type: "button", class: "link-button", "data-testid": "edit-cancel", text: "Cancel", onclick: () => on.cancelEdit(msg) }),
    el("button", { type: "submit", class: "btn btn-primary btn-small", "data-testid": "edit-save", text: "Save" })));
}

function toolbar(msg, mine, confirming, on) {
  if (confirming) {
    return el("div", { class: "msg-actions confirming", role: "group", "aria-label": "Confirm delete" },
      el("span", { class: "confirm-text", text: "Delete this message?" }),
      el("button", {
        type: "button", class: "btn btn-danger btn-small", "data-testid": "delete-confirm", "data-action": "delete-confirm",
        text: "Delete", onclick: () => on.confirmDelete(msg),
      }),
      el("button", {
        type: "button", class: "btn btn-ghost btn-small", "data-action": "delete-cancel", text: "Cancel",
        onclick: () => on.cancelDelete(msg),
      }));
  }
  return el("div", { class: "msg-actions", role: "group", "aria-label": "Message actions" },
    el("button", {
      type: "button", class: "icon-button", "data-testid": "react-button", "data-action": "react",
      "aria-label": "Add reaction", title: "Add reaction", text: "☺",
      onclick: (ev) => on.openPicker(msg, ev.currentTarget),
    }),
    mine ? el("button", {
      type: "button", class: "icon-button", "data-testid": "edit-button", "data-action": "edit",
      "aria-label": "Edit message", title: "Edit", text: "✎", onclick: () => on.startEdit(msg),
    }) : null,
    mine ? el("button", {
      type: "button", class: "icon-button danger", "data-testid": "delete-button", "data-action": "delete",
      "aria-label": "Delete message", title: "Delete", text: "🗑", onclick: () => on.askDelete(msg),
    }) : null);
}

/**
 * The <li> for `msg`. `ctx`: {isMine(user), cont (same author as the one
 * above, shortly before), seen (the peer of a direct room read it), editing
 * (the draft while the inline editor is open, else null), confirmingDelete,
 * on: {react, unreact, openPicker, startEdit, saveEdit, cancelEdit,
 * draftChanged, askDelete, confirmDelete, cancelDelete}}.
 */
export function messageEl(msg, ctx) {
  const mine = ctx.isMine(msg.user);
  const name = msg.user.name || msg.user.id || "?";
  const d = new Date(msg.ts);
  const li = el("li", {
    class: `msg${mine ? " mine" : ""}${ctx.cont ? " cont" : ""}${msg.deleted ? " deleted" : ""}`,
    "data-testid": "message",
    "data-offset": String(msg.offset),
    "data-user": msg.user.id,
  });
  const meta = el("div", { class: "meta" },
    el("span", { class: "author", text: name }),
    mine ? el("span", { class: "you-tag", text: "you" }) : null,
    el("time", { class: "time", datetime: d.toISOString(), title: d.toLocaleString(), text: hhmm(msg.ts) }));
  let content;
  if (msg.deleted) {
    content = el("div", { class: "content" },
      el("span", { class: "text deleted-text", "data-testid": "deleted", text: "message deleted" }));
  } else if (ctx.editing !== null && ctx.editing !== undefined) {
    content = editor(msg, ctx.editing, ctx.on);
  } else {
    content = el("div", { class: "content" },
      el("span", { class: "text", text: msg.text }),
      msg.edited ? el("span", { class: "edited", "data-testid": "edited", text: "(edited)" }) : null);
  }
  const body = el("div", { class: "body" }, meta, content,
    msg.deleted ? null : reactionChips(msg, ctx.isMine, ctx.on),
    ctx.seen ? el("div", { class: "seen", "data-testid": "seen", text: "Seen" }) : null);
  li.append(avatar(msg.user), body);
  if (!msg.deleted && (ctx.editing === null || ctx.editing === undefined)) {
    li.append(toolbar(msg, mine, ctx.confirmingDelete, ctx.on));
  }
  return li;
}
