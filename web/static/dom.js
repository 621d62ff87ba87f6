// DOM helpers shared by the dashboard and the wall.
//
// Every piece of message data (text, names, handles, URLs) reaches the page through
// these helpers as text nodes or checked attributes: nothing here, nor anywhere in
// the scripts, assigns innerHTML. Links are made only for http: and https: URLs.

const SVG_NS = "http://www.w3.org/2000/svg";
const LINK_REL = "noopener noreferrer nofollow ugc";
// Attributes that could carry a URL or a style are refused by h(): use link().
const FORBIDDEN_ATTRS = new Set(["href", "src", "style", "srcdoc", "action", "formaction"]);

/** Create an element: h("p", {class: "x", text: "…"}, child, "text", …). */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  appendAll(node, children);
  return node;
}

/** Create an SVG element (attributes are plain numbers and our own class names). */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null) continue;
    if (FORBIDDEN_ATTRS.has(key) || key.startsWith("on")) throw new Error(`refusing attribute ${key}`);
    node.setAttribute(key, String(value));
  }
  appendAll(node, children);
  return node;
}

function setProps(node, props) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "title") node.title = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (FORBIDDEN_ATTRS.has(key) || key.startsWith("on")) throw new Error(`refusing attribute ${key}`);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function appendAll(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    // A string becomes a text node: never parsed as markup.
    node.append(child instanceof Node ? child : String(child));
  }
}

/** Remove every child of a node. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** The URL, normalised, if it is an absolute http: or https: URL; otherwise null.
 *
 * `new URL` strips leading spaces and control characters and lowercases the scheme,
 * so " JaVaScRiPt:…", "java\tscript:…" and "data:…" all fail this check. */
export function safeUrl(raw) {
  if (typeof raw !== "string" || raw.length > 4096) return null;
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** A short, readable form of a URL for display: host and path, ellipsised. */
export function shortUrl(raw, max = 48) {
  let shown = String(raw ?? "");
  if (safeUrl(shown) !== null) {
    const url = new URL(shown);
    shown = url.host + (url.pathname === "/" ? "" : url.pathname) + url.search;
  } // anything else is shown as it is: a moderator should see a "javascript:" for what it is
  return shown.length > max ? shown.slice(0, max - 1) + "…" : shown;
}

/** An external link if the URL is http(s), else its text in a span (never a link). */
export function link(raw, text, className = "") {
  const href = safeUrl(raw);
  const label = text ?? raw ?? "";
  if (href === null) return h("span", { class: `unsafe-url ${className}`.trim(), text: label, title: "not a web link" });
  const a = h("a", { class: className || null, text: label, target: "_blank", rel: LINK_REL });
  a.href = href; // a property set after the check, with the normalised URL
  return a;
}

// URLs, #hashtags and @mentions in plain text. Unicode letters for tags (#Bildung,
// #café); mentions may carry a Mastodon server (@user@server.example).
const TOKENS = /(https?:\/\/[^\s<>"'\u200b-\u200f\u2028-\u202e]+)|(#[\p{L}\p{N}_]+)|(@[A-Za-z0-9_]+(?:@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?)/gu;
const TRAILING = new Set(".,;:!?)]}'\"»");

/** How many of a URL token's last characters are the sentence's punctuation, not the URL's.
 *
 * A loop, not the regex /[.,;:!?)…]+$/: that one tries every position of a run of dots
 * that is not at the end, quadratic in the run (16 s for 50,000 dots in one token). */
export function trailingLength(token) {
  let end = token.length;
  while (end > 0 && TRAILING.has(token[end - 1])) end -= 1;
  return token.length - end;
}

/** Append `text` to `parent`, with each occurrence of `term` (any case) in a <mark>. */
function appendMarked(parent, text, term) {
  const lower = text.toLowerCase();
  // Lowercasing can change a string's length (İ): then indexes would not line up.
  if (!term || lower.length !== text.length) {
    parent.append(text);
    return;
  }
  let from = 0;
  for (let at = lower.indexOf(term); at !== -1; at = lower.indexOf(term, from)) {
    if (at > from) parent.append(text.slice(from, at));
    parent.append(h("mark", { text: text.slice(at, at + term.length) }));
    from = at + term.length;
  }
  if (from < text.length) parent.append(text.slice(from));
}

/** Plain message text as a fragment: text nodes, tag/mention spans, checked links.
 *
 * `links: false` (the wall) shows URLs as text only; `mark` highlights a search term. */
export function richText(text, { links = true, mark = "" } = {}) {
  const term = mark ? mark.toLowerCase() : "";
  const plain = (target, value) => appendMarked(target, value, term);
  const fragment = document.createDocumentFragment();
  const source = typeof text === "string" ? text : "";
  let last = 0;
  for (const match of source.matchAll(TOKENS)) {
    let token = match[0];
    let end = match.index + token.length;
    if (match[1]) {
      const trailing = trailingLength(token);
      if (trailing) {
        token = token.slice(0, -trailing);
        end -= trailing;
      }
    }
    if (match.index > last) plain(fragment, source.slice(last, match.index));
    if (match[1]) {
      fragment.append(links ? link(token, shortUrl(token), "msg-link") : h("span", { class: "msg-url", text: shortUrl(token) }));
    } else if (match[2]) {
      fragment.append(h("span", { class: "tag", text: token }));
    } else {
      fragment.append(h("span", { class: "mention", text: token }));
    }
    last = end;
  }
  if (last < source.length) plain(fragment, source.slice(last));
  return fragment;
}

const NETWORKS = { x: "X", mastodon: "Mastodon", bluesky: "Bluesky", youtube: "YouTube", feed: "Feed", file: "File" };

export function networkLabel(network) {
  return NETWORKS[network] || String(network || "?");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const secondsFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function parseTime(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : new Date(t);
}

export function clock(iso, { seconds = false } = {}) {
  const date = parseTime(iso);
  if (!date) return "";
  return (seconds ? secondsFormat : timeFormat).format(date);
}

export function fullTime(iso) {
  const date = parseTime(iso);
  return date ? fullFormat.format(date) : "";
}

/** A random UUID, also outside secure contexts (plain-http LAN deployments). */
export function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
