// The public wall: the newest approved-for-display messages, large, advancing on
// their own, with the pinned message featured. Read-only and public.
//
// Data: GET /api/wall/E (items + pinned), then the wall's websocket, whose items are
// already filtered by the server (wire.wall_item): messages the wall may show (no
// reposts or copies, no moderation state but the pin), changes to them (a pin, an
// unpin), `retract: id` for a message it must drop at once (hidden, blocked, muted,
// unapproved), and a bare event action after which the wall reloads its snapshot.

import { clear, clock, h, networkLabel, richText } from "./dom.js";
import { LiveFeed, State } from "./live.js";

const SHOWN = 5; // cards on the stage
const POOL = 30; // recent messages the stage rotates through when nothing new comes
const ADVANCE_MS = 9000; // one step of the rotation
const IDLE_MS = 20_000; // quiet time before the rotation starts

const EVENT = document.body.dataset.event;
const stage = document.querySelector("#stage");
const featured = document.querySelector("#featured");
const empty = document.querySelector("#wall-empty");
const conn = document.querySelector("#wall-conn");

let pool = new Map(); // id -> message, everything the wall may show
let pinned = null; // id
let offset = 0; // rotation offset into the newest-first pool
let lastArrival = 0;
let fresh = new Set(); // ids to animate in

function newestFirst() {
  return [...pool.values()].filter((m) => m.id !== pinned).sort((a, b) => b.seq - a.seq);
}

function card(m, { big = false } = {}) {
  const node = h(
    "article",
    { class: `wall-card${big ? " wall-card-featured" : ""}${fresh.has(m.id) ? " is-fresh" : ""}`, dataset: { id: String(m.id) } },
    h("p", { class: "wall-text", dir: "auto" }, richText(m.text, { links: false })),
    h(
      "footer",
      { class: "wall-by" },
      h("bdi", { class: "wall-name", text: m.author_name || m.author_handle }),
      h("bdi", { class: "wall-handle", text: `@${m.author_handle}` }),
      h("span", { class: "wall-meta", text: `${networkLabel(m.network)} · ${clock(m.created_at)}` }),
    ),
  );
  if (m.text.length > 200) node.classList.add("is-long");
  return node;
}

function render() {
  const pin = pinned !== null ? pool.get(pinned) : undefined;
  clear(featured);
  featured.hidden = !pin;
  if (pin) featured.append(h("p", { class: "wall-label", text: "Featured" }), card(pin, { big: true }));
  const all = newestFirst();
  const span = Math.min(all.length, POOL);
  if (offset >= span) offset = 0;
  const shown = [];
  for (let i = 0; i < Math.min(SHOWN - (pin ? 2 : 0), span); i += 1) shown.push(all[(offset + i) % span]);
  clear(stage).append(...shown.map((m) => card(m)));
  empty.hidden = Boolean(pin) || shown.length > 0;
  fresh = new Set();
}

function upsert(m) {
  const isNew = !pool.has(m.id);
  pool.set(m.id, m);
  if (m.pinned) {
    if (pinned !== null && pinned !== m.id) {
      const before = pool.get(pinned);
      if (before) pool.set(before.id, { ...before, pinned: false });
    }
    pinned = m.id;
  } else if (pinned === m.id) {
    pinned = null;
  }
  return isNew;
}

function drop(id) {
  pool.delete(id);
  if (pinned === id) pinned = null;
}

function trim() {
  // Keep the pool small: the newest POOL messages and the pinned one.
  const keep = new Set(newestFirst().slice(0, POOL * 2).map((m) => m.id));
  if (pinned !== null) keep.add(pinned);
  for (const id of pool.keys()) if (!keep.has(id)) pool.delete(id);
}

let held = null; // items that arrive while a snapshot is on its way, applied after it

async function loadSnapshot() {
  held = held ?? [];
  try {
    const response = await fetch(`/api/wall/${encodeURIComponent(EVENT)}`, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`wall snapshot: ${response.status}`);
    const data = await response.json();
    pool = new Map();
    pinned = null;
    for (const m of data.items || []) upsert(m);
    if (data.pinned) upsert(data.pinned);
    offset = 0;
    render();
    const later = held.filter((item) => item.seq > data.last_seq);
    held = null;
    if (later.length) applyItems(later);
    return data;
  } catch (err) {
    const waiting = held;
    held = null;
    if (waiting.length) applyItems(waiting); // better late than lost
    throw err;
  }
}

let reloading = null;
function reload() {
  // Event actions change what the wall may show (a block, a mute, premoderation):
  // the server's snapshot is the truth. Coalesce a burst of them into one request.
  if (!reloading) {
    reloading = loadSnapshot()
      .catch((err) => console.warn("backchannel wall:", err))
      .finally(() => {
        reloading = null;
      });
  }
  return reloading;
}

function applyItems(items) {
  if (held) {
    held.push(...items);
    return;
  }
  let arrived = false;
  let changed = false;
  let needReload = false;
  for (const item of items) {
    if (item.kind === "message") {
      if (upsert(item)) {
        arrived = true;
        fresh.add(item.id);
      }
      changed = true;
    } else if (item.kind === "moderation") {
      if (item.retract !== undefined && item.retract !== null) {
        drop(item.retract);
        changed = true;
      } else if (item.message) {
        if (upsert(item.message)) {
          arrived = true;
          fresh.add(item.message.id);
        }
        changed = true;
      } else {
        needReload = true;
      }
    }
  }
  if (arrived) {
    offset = 0; // new messages first
    lastArrival = Date.now();
    trim();
  }
  if (changed) render();
  if (needReload) reload();
}

const CONN_TEXT = {
  [State.CONNECTING]: "",
  [State.LIVE]: "",
  [State.RESUMED]: "",
  [State.RELOADED]: "",
  [State.RECONNECTING]: "reconnecting…",
  [State.LOST]: "offline · retrying",
  [State.LOGGED_OUT]: "",
};

const feed = new LiveFeed(`/ws/wall/${encodeURIComponent(EVENT)}`, {
  onItems: applyItems,
  onReset: async () => (await loadSnapshot()).last_seq,
  onState: (state) => {
    conn.textContent = CONN_TEXT[state] ?? "";
    conn.dataset.state = state;
    document.body.classList.toggle("is-offline", state === State.LOST || state === State.RECONNECTING);
  },
});

setInterval(() => {
  if (Date.now() - lastArrival < IDLE_MS) return;
  const span = Math.min(newestFirst().length, POOL);
  if (span <= SHOWN) return; // everything is on screen already
  offset = (offset + 1) % span;
  render();
}, ADVANCE_MS);

async function boot() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const data = await loadSnapshot();
      feed.start(data.epoch, data.last_seq);
      document.body.dataset.ready = "true";
      return;
    } catch (err) {
      console.warn("backchannel wall:", err);
      conn.textContent = "waiting for the server…";
      await new Promise((resolve) => setTimeout(resolve, Math.min(15_000, 1000 * 2 ** attempt)));
    }
  }
}

boot();
