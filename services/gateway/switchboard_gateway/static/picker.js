// The small emoji picker for reactions: one popover, reused, opened next to
// the button that asked for it. Keyboard: arrows move, Enter/Space pick,
// Escape (or leaving it) closes and gives focus back to that button.

import { el } from "./dom.js";

// A few common reactions; any emoji is accepted by the server (1–16 code points, no spaces).
export const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];

export class EmojiPicker {
  constructor() {
    this.onPick = null;
    this.returnTo = null;
    this.buttons = QUICK_EMOJI.map((emoji) => el("button", {
      type: "button", class: "picker-option", role: "menuitem", "aria-label": `React with ${emoji}`,
      "data-testid": "emoji-option", dataset: { emoji }, text: emoji, tabindex: "-1",
    }));
    this.node = el("div", {
      class: "emoji-picker", role: "menu", "aria-label": "Pick a reaction", "data-testid": "emoji-picker", hidden: true,
    }, ...this.buttons);
    this.node.addEventListener("click", (ev) => {
      const b = ev.target.closest(".picker-option");
      if (b) this.pick(b.dataset.emoji);
    });
    this.node.addEventListener("keydown", (ev) => this.onKey(ev));
    this.node.addEventListener("focusout", (ev) => {
      if (!this.node.contains(ev.relatedTarget)) this.close({ refocus: false });
    });
    document.body.append(this.node);
  }

  get isOpen() {
    return !this.node.hidden;
  }

  /** Opens under `anchor`; `onPick(emoji)` runs for the emoji chosen. */
  open(anchor, onPick) {
    this.onPick = onPick;
    this.returnTo = anchor;
    this.node.hidden = false;
    const r = anchor.getBoundingClientRect();
    const w = this.node.offsetWidth;
    const h = this.node.offsetHeight;
    const left = Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8));
    const below = r.bottom + 4 + h < window.innerHeight;
    this.node.style.left = `${left}px`;
    this.node.style.top = `${below ? r.bottom + 4 : Math.max(8, r.top - h - 4)}px`;
    this.buttons[0].focus();
  }

  close({ refocus = true } = {}) {
    if (!this.isOpen) return;
    this.node.hidden = true;
    const back = this.returnTo;
    this.onPick = null;
    this.returnTo = null;
    if (refocus && back && back.isConnected) back.focus();
  }

  pick(emoji) {
    const run = this.onPick;
    this.close();
    if (run) run(emoji);
  }

  onKey(ev) {
    const i = this.buttons.indexOf(document.activeElement);
    const move = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[ev.key];
    if (move) {
      ev.preventDefault();
      const n = this.buttons.length;
      this.buttons[(Math.max(i, 0) + move + n) % n].focus();
    } else if (ev.key === "Home" || ev.key === "End") {
      ev.preventDefault();
      this.buttons[ev.key === "Home" ? 0 : this.buttons.length - 1].focus();
    } else if (ev.key === "Escape" || ev.key === "Tab") {
      ev.preventDefault();
      this.close();
    }
  }
}
