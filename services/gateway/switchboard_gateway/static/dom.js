// Building DOM nodes. Security rule for every module that renders: user
// strings (message text, names, room names, emoji, server messages) only go
// through textContent and attributes, never innerHTML.

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

const pad2 = (n) => String(n).padStart(2, "0");

export function hhmm(ts) {
  const d = new Date(ts);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

export function hashHue(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(h) % 360;
}

export function initialOf(name) {
  const first = [...(name || "?").trim()][0] || "?";
  return first.toUpperCase();
}

export function avatar(user, { small = false } = {}) {
  const name = user.name || user.id || "?";
  const node = el("span", { class: small ? "avatar small" : "avatar", "aria-hidden": "true", text: initialOf(name) });
  node.style.setProperty("--hue", String(hashHue(user.id || name)));
  return node;
}
