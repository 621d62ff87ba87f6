// The moderators' dashboard: live feed, filters, moderation, question queue, stats.
//
// State flows one way: a snapshot from the JSON API, then websocket items
// (backchannel/core/wire.py), both upserted into `msgs` by id; the feed view is the
// ids of the messages that match the active filter, newest first. The page holds no
// data in markup: event and CSRF token come from data attributes and a <meta>.

import { Api, ApiError } from "./api.js";
import { clock, h } from "./dom.js";
import { LiveFeed, State } from "./live.js";
import {
  EVENT_ACTIONS, MESSAGE, MODERATION, Messages, filterParams, inQuestionQueue, insertBySeq, isCollapsed,
  matches, wallRules,
} from "./model.js";
import { renderActivity, renderQuestions, renderRules, renderSources } from "./panels.js";
import { messageRow } from "./rows.js";
import { renderStats } from "./stats.js";
import { VirtualList } from "./vlist.js";

const PAGE = 200; // the API's largest page
const STATS_THROTTLE_MS = 4000; // at most one stats request per this, while items flow
const STATS_EVERY_MS = 30_000; // and this often anyway
const SOURCES_EVERY_MS = 10_000; // the live sources' states
const LOAD_OLDER_WITHIN = 30; // rows from the end of the list that trigger the next page
const FLASH_MS = 2500; // how long a row changed by another moderator is highlighted

const EVENT = document.body.dataset.event;
const ME = document.body.dataset.user;
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const api = new Api(EVENT, CSRF);

const $ = (selector) => document.querySelector(selector);
const els = {
  conn: $("#conn"),
  premod: $("#premod"),
  filters: $("#filters"),
  pause: $("#pause"),
  newcount: $("#newcount"),
  feedCount: $("#feed-count"),
  feed: $("#feed"),
  empty: $("#feed .feed-empty"),
  older: $("#older"),
  olderStatus: $("#older-status"),
  bulk: $("#bulk"),
  bulkCount: $("#bulk-count"),
  questions: $("#questions"),
  qCount: $("#q-count"),
  activity: $("#activity"),
  blocked: $("#blocked"),
  muted: $("#muted"),
  toasts: $("#toasts"),
  statsUpdated: $("#stats-updated"),
  sources: $("#sources"),
  sourcesUpdated: $("#sources-updated"),
  stats: {
    totals: $("#totals"),
    chart: $("#chart"),
    posters: $("#top-posters"),
    hashtags: $("#top-hashtags"),
    links: $("#top-links"),
  },
};

let msgs = new Messages();
const state = {
  filter: { q: "", author: "", question: false, has_link: false, status: "", network: "" },
  ids: [], // the view: ids matching the filter, newest (highest seq) first
  inView: new Set(),
  oldestSeq: null, // the oldest seq fetched for this filter: older ones come by paging
  moreOlder: false,
  loadingOlder: false,
  generation: 0, // bumped on each reload, so a late response for an old filter is dropped
  paused: false,
  pending: new Set(), // ids that would join or leave the view, held while paused
  unseenAbove: 0, // rows added above while the moderator reads further down
  cursor: null,
  selected: new Set(),
  lastToggled: null,
  rules: wallRules({}),
  rulesVersion: 0,
  questions: new Set(),
  activity: [],
  activitySeqs: new Set(),
  armed: null, // {id, until}: a block button waiting for its confirming click
};

const seqOf = (id) => msgs.get(id)?.seq ?? 0;

// -- the feed view ---------------------------------------------------------------------

const list = new VirtualList(
  els.feed,
  (id) => messageRow(msgs.get(id), { parent: parentOf(msgs.get(id)), rules: state.rules, me: ME, mark: state.filter.q }),
  (id) => {
    const m = msgs.get(id);
    const parent = parentOf(m);
    return `${m._v}.${m._countsAsOf}.${m._last?.at ?? ""}.${parent ? parent._v : 0}.${state.rulesVersion}.${state.filter.q}`;
  },
);
list.decorate = (el, id) => {
  const cursor = id === state.cursor;
  const selected = state.selected.has(id);
  if (el.classList.contains("is-cursor") !== cursor) {
    el.classList.toggle("is-cursor", cursor);
    el.setAttribute("aria-current", cursor ? "true" : "false");
  }
  if (el.classList.contains("is-selected") !== selected) el.classList.toggle("is-selected", selected);
  const check = el.querySelector(".row-check");
  if (check.checked !== selected) check.checked = selected;
  const armed = Boolean(state.armed && state.armed.id === id && state.armed.until > Date.now());
  const block = el.querySelector('[data-act="block"]');
  if (block && block.classList.contains("is-armed") !== armed) {
    block.classList.toggle("is-armed", armed);
    block.textContent = armed ? "Sure? Block" : "Block";
  }
};
list.onRange = (first, last) => {
  if (state.unseenAbove && els.feed.scrollTop < list.rowHeight / 2) {
    state.unseenAbove = 0;
    updateNewCount();
  }
  if (state.moreOlder && !state.loadingOlder && last >= state.ids.length - LOAD_OLDER_WITHIN) loadOlder();
};

function parentOf(m) {
  return m && m.reply_to ? msgs.byUriGet(m.reply_to) : undefined;
}

function wanted(m) {
  if (!m || !matches(m, state.filter)) return false;
  // Older than the oldest page fetched: paging will bring it, in its place.
  return state.oldestSeq === null || !state.moreOlder || m.seq >= state.oldestSeq;
}

function setView(ids, { shift = 0 } = {}) {
  state.ids = ids;
  state.inView = new Set(ids);
  if (state.cursor !== null && !state.inView.has(state.cursor)) state.cursor = null;
  list.setIds(ids, { shift });
  els.empty.hidden = ids.length > 0;
  updateCounts();
}

/** Bring the view up to date for messages that changed. While paused, new rows and
 * rows that stop matching wait in `pending`, so nothing moves under the reader. */
function reconcile(changed) {
  const add = [];
  const remove = new Set();
  for (const id of changed) {
    const want = wanted(msgs.get(id));
    const has = state.inView.has(id);
    if (want === has) {
      state.pending.delete(id);
      continue;
    }
    if (state.paused) state.pending.add(id);
    else if (want) add.push(id);
    else remove.add(id);
  }
  if (!add.length && !remove.size) {
    list.refresh();
    updateNewCount();
    return;
  }
  let ids = state.ids;
  const firstVisible = Math.floor(els.feed.scrollTop / list.rowHeight);
  let removedAbove = 0;
  for (const id of remove) if (list.indexOf(id) < firstVisible) removedAbove += 1;
  if (remove.size) {
    if (state.cursor !== null && remove.has(state.cursor)) {
      // The cursor's row left the view: the cursor stays at the same place in the list.
      const cursorIndex = list.indexOf(state.cursor);
      const next = ids.slice(cursorIndex).find((id) => !remove.has(id)) ?? ids.slice(0, cursorIndex).reverse().find((id) => !remove.has(id));
      state.cursor = next ?? null;
    }
    ids = ids.filter((id) => !remove.has(id));
  } else {
    ids = ids.slice();
  }
  let addedAbove = 0;
  for (const id of add.sort((a, b) => seqOf(b) - seqOf(a))) {
    const at = insertBySeq(ids, id, seqOf);
    if (at <= firstVisible) addedAbove += 1;
  }
  if (addedAbove && els.feed.scrollTop > list.rowHeight / 2) {
    state.unseenAbove += addedAbove;
  }
  setView(ids, { shift: addedAbove - removedAbove });
  updateNewCount();
}

function setPaused(paused) {
  state.paused = paused;
  els.pause.setAttribute("aria-pressed", paused ? "true" : "false");
  els.pause.textContent = paused ? "Resume feed" : "Pause";
  document.body.classList.toggle("is-paused", paused);
  if (!paused) {
    const held = [...state.pending];
    state.pending.clear();
    state.unseenAbove = 0;
    els.feed.scrollTop = 0;
    reconcile(held);
  }
  updateNewCount();
}

function updateNewCount() {
  let count = 0;
  if (state.paused) {
    for (const id of state.pending) if (!state.inView.has(id)) count += 1;
  } else {
    count = state.unseenAbove;
  }
  els.newcount.hidden = count === 0;
  els.newcount.textContent = state.paused ? `${count} new · show` : `${count} new ↑`;
}

function updateCounts() {
  const n = state.ids.length;
  const filtered = Object.values(state.filter).some(Boolean);
  els.feedCount.textContent = `${n.toLocaleString()}${filtered ? " matching" : ""} message${n === 1 ? "" : "s"} loaded`;
  els.older.hidden = !state.moreOlder;
  els.olderStatus.textContent = state.loadingOlder
    ? "Loading older messages…"
    : state.moreOlder
      ? "Older messages load as you scroll."
      : n
        ? "Beginning of the session."
        : "";
}

// -- loading -----------------------------------------------------------------------

/** Fetch the first page for the active filter and make it the view. */
async function loadFirstPage() {
  const generation = ++state.generation;
  const page = await api.messages({ ...filterParams(state.filter), limit: PAGE });
  if (generation !== state.generation) return null;
  const ids = [];
  for (const item of page.items) {
    msgs.fromSnapshot(item, page.last_seq);
    ids.push(item.id);
  }
  const fetched = new Set(ids);
  state.oldestSeq = page.items.length ? page.items[page.items.length - 1].seq : null;
  state.moreOlder = page.items.length === PAGE;
  state.pending.clear();
  state.unseenAbove = 0;
  // Live items that came in while the page was on its way and match it.
  for (const [id, m] of msgs.byId) {
    if (!fetched.has(id) && m.seq > (state.oldestSeq ?? 0) && m._v > page.last_seq && matches(m, state.filter)) {
      insertBySeq(ids, id, seqOf);
    }
  }
  els.feed.scrollTop = 0;
  setView(ids);
  updateNewCount();
  setPremoderation(page.premoderation);
  return page;
}

async function loadOlder() {
  if (state.loadingOlder || !state.moreOlder || state.oldestSeq === null) return;
  state.loadingOlder = true;
  updateCounts();
  const generation = state.generation;
  try {
    const page = await api.messages({ ...filterParams(state.filter), before: state.oldestSeq, limit: PAGE });
    if (generation !== state.generation) return;
    const ids = state.ids.slice();
    for (const item of page.items) {
      msgs.fromSnapshot(item, page.last_seq);
      if (!state.inView.has(item.id) && matches(msgs.get(item.id), state.filter)) ids.push(item.id);
    }
    if (page.items.length) state.oldestSeq = page.items[page.items.length - 1].seq;
    state.moreOlder = page.items.length === PAGE;
    setView(ids);
  } catch (err) {
    report("Could not load older messages", err);
  } finally {
    state.loadingOlder = false;
    updateCounts();
  }
}

async function loadQuestions() {
  const data = await api.questions();
  for (const item of data.items) msgs.fromSnapshot(item, item.seq);
  state.questions = new Set(data.items.map((item) => item.id).filter((id) => inQuestionQueue(msgs.get(id))));
  drawQuestions();
}

async function loadSettings() {
  applySettings(await api.settings());
}

function applySettings(settings) {
  state.rules = wallRules(settings);
  state.rulesVersion += 1;
  setPremoderation(state.rules.premoderation);
  renderRules(els.blocked, els.muted, state.rules, (action, subject) => eventAction(action, subject));
  list.refresh();
}

function setPremoderation(on) {
  els.premod.setAttribute("aria-checked", on ? "true" : "false");
  document.body.classList.toggle("premoderation", Boolean(on));
}

let statsTimer = 0;
let statsLoading = false;
async function loadStats() {
  clearTimeout(statsTimer);
  statsTimer = 0;
  if (statsLoading) return;
  statsLoading = true;
  try {
    renderStats(await api.stats(), els.stats);
    els.statsUpdated.textContent = `updated ${clock(new Date().toISOString(), { seconds: true })}`;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 0)) console.warn("backchannel: stats", err);
  } finally {
    statsLoading = false;
  }
}

function scheduleStats() {
  if (!statsTimer) statsTimer = setTimeout(loadStats, STATS_THROTTLE_MS);
}

let sourcesLoading = false;
async function loadSources() {
  if (sourcesLoading) return;
  sourcesLoading = true;
  try {
    renderSources(els.sources, await api.sources());
    els.sourcesUpdated.textContent = `updated ${clock(new Date().toISOString(), { seconds: true })}`;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 0)) console.warn("backchannel: sources", err);
  } finally {
    sourcesLoading = false;
  }
}

// -- live items --------------------------------------------------------------------

/** Apply wire items (from the websocket or a moderation response). `live`: they
 * arrived now, so other moderators' actions are highlighted and logged. */
function applyItems(items, { live = true } = {}) {
  const changed = new Set();
  let newMessages = false;
  let rulesChanged = false;
  for (const item of items) {
    if (!item || typeof item.seq !== "number") continue;
    if (item.kind === MESSAGE) {
      if (isCollapsed(item)) {
        const original = msgs.countOnto(item);
        if (original) changed.add(original.id);
        newMessages = true;
        continue;
      }
      if (msgs.fromWire(item, item.seq)) {
        changed.add(item.id);
        newMessages = true;
      }
    } else if (item.kind === MODERATION) {
      if (item.message && typeof item.message === "object") {
        const m = msgs.fromWire(item.message, item.seq);
        if (!m) continue;
        msgs.noteAction(m.id, item.action, item.actor, item.created_at);
        if (live && item.actor !== ME) msgs.get(m.id)._flashUntil = Date.now() + FLASH_MS;
        changed.add(m.id);
        if (m.pinned) {
          // The store pins one message per event: the others are unpinned without items.
          for (const other of msgs.byId.values()) {
            if (other.pinned && other.id !== m.id) {
              msgs.byId.set(other.id, { ...other, pinned: false });
              changed.add(other.id);
            }
          }
        }
      } else if (EVENT_ACTIONS.has(item.action)) {
        rulesChanged = true;
      }
      logActivity(item);
    }
  }
  if (changed.size) {
    for (const id of changed) {
      if (inQuestionQueue(msgs.get(id))) state.questions.add(id);
      else state.questions.delete(id);
    }
    drawQuestions();
    reconcile(changed);
  }
  if (rulesChanged) loadSettings().catch((err) => report("Could not reload the wall rules", err));
  if (newMessages) scheduleStats();
}

function logActivity(item) {
  if (state.activitySeqs.has(item.seq)) return;
  state.activitySeqs.add(item.seq);
  state.activity.unshift(item);
  if (state.activity.length > 60) state.activity.length = 60;
  drawActivity();
}

let questionsFrame = 0;
function drawQuestions() {
  if (questionsFrame) return;
  questionsFrame = requestAnimationFrame(() => {
    questionsFrame = 0;
    const ids = [...state.questions].sort((a, b) => seqOf(a) - seqOf(b));
    els.qCount.textContent = String(ids.length);
    renderQuestions(els.questions, ids.map((id) => msgs.get(id)), {
      onAnswer: (id) => moderate("answer", [id]),
      onStar: (id) => moderate(msgs.get(id)?.starred ? "unstar" : "star", [id]),
      onShow: (id) => showInFeed(id),
      me: ME,
    });
  });
}

let activityFrame = 0;
function drawActivity() {
  if (activityFrame) return;
  activityFrame = requestAnimationFrame(() => {
    activityFrame = 0;
    renderActivity(els.activity, state.activity, (id) => msgs.get(id), ME, (id) => showInFeed(id));
  });
}

// -- moderation --------------------------------------------------------------------

async function moderate(action, ids) {
  if (!ids.length) return;
  try {
    const result = await api.moderate(action, ids);
    applyItems(result.changes, { live: false });
  } catch (err) {
    report(`Could not ${action}`, err);
  }
}

async function eventAction(action, subject = "") {
  try {
    const result = await api.eventAction(action, subject);
    applyItems(result.changes, { live: false });
    await loadSettings();
    return true;
  } catch (err) {
    report(`Could not ${action.replace("-", " ")}`, err);
    return false;
  }
}

/** The messages an action applies to: the selection if any, else the cursor's. */
function targets() {
  if (state.selected.size) return [...state.selected].filter((id) => msgs.get(id));
  return state.cursor !== null ? [state.cursor] : [];
}

function toggleAction(ids, flag, on, off) {
  const all = ids.every((id) => msgs.get(id)?.[flag]);
  return all ? off : on;
}

function keyAction(kind) {
  const ids = targets();
  if (!ids.length) return;
  const bulk = state.selected.size > 0;
  let action;
  switch (kind) {
    case "approve":
      action = "approve";
      break;
    case "hide":
      action = ids.every((id) => msgs.get(id)?.status === "hidden") ? "restore" : "hide";
      break;
    case "star":
      action = toggleAction(ids, "starred", "star", "unstar");
      break;
    case "answer":
      action = toggleAction(ids, "answered", "answer", "unanswer");
      break;
    case "pin": {
      const id = state.cursor ?? ids[0]; // one message is pinned at a time
      moderate(msgs.get(id)?.pinned ? "unpin" : "pin", [id]);
      return;
    }
    default:
      return;
  }
  if (!bulk && (action === "approve" || action === "hide")) moveCursor(1); // on to the next one
  moderate(action, ids);
  if (bulk) clearSelection();
}

function blockSubject(m) {
  return `${m.network}:${m.author_handle}`;
}

function onRowAction(id, act) {
  const m = msgs.get(id);
  if (!m) return;
  if (act === "block") {
    if (state.armed && state.armed.id === id && state.armed.until > Date.now()) {
      state.armed = null;
      eventAction("block", blockSubject(m));
    } else {
      state.armed = { id, until: Date.now() + 4000 };
      setTimeout(() => list.refresh(), 4100);
    }
    list.refresh();
    return;
  }
  if (act === "unblock") {
    eventAction("unblock", blockSubject(m));
    return;
  }
  moderate(act, [id]);
}

// -- cursor and selection ------------------------------------------------------------

function setCursor(id, { reveal = true } = {}) {
  state.cursor = id;
  if (reveal && id !== null) list.reveal(list.indexOf(id));
  else list.refresh();
}

function moveCursor(delta) {
  if (!state.ids.length) return;
  const index = state.cursor === null ? (delta > 0 ? -1 : state.ids.length) : list.indexOf(state.cursor);
  const next = Math.max(0, Math.min(state.ids.length - 1, index + delta));
  setCursor(state.ids[next]);
}

function toggleSelected(id, { range = false } = {}) {
  if (range && state.lastToggled !== null && state.inView.has(state.lastToggled)) {
    const a = list.indexOf(state.lastToggled);
    const b = list.indexOf(id);
    const on = !state.selected.has(id);
    for (let i = Math.min(a, b); i <= Math.max(a, b); i += 1) {
      if (on) state.selected.add(state.ids[i]);
      else state.selected.delete(state.ids[i]);
    }
  } else if (state.selected.has(id)) state.selected.delete(id);
  else state.selected.add(id);
  state.lastToggled = id;
  updateBulk();
  list.refresh();
}

function clearSelection() {
  state.selected.clear();
  updateBulk();
  list.refresh();
}

function updateBulk() {
  const n = state.selected.size;
  els.bulk.hidden = n === 0;
  els.bulkCount.textContent = `${n} selected`;
}

function showInFeed(id) {
  if (state.inView.has(id)) {
    setCursor(id);
    els.feed.focus({ preventScroll: true });
  } else {
    toast("That message is not in the current view: clear the filters or load older messages.");
  }
}

// -- status and errors -------------------------------------------------------------

const CONN_TEXT = {
  [State.CONNECTING]: "Connecting…",
  [State.LIVE]: "Live",
  [State.RESUMED]: "Resumed",
  [State.RELOADED]: "Resumed · reloaded",
  [State.RECONNECTING]: "Connection dropped · reconnecting…",
  [State.LOST]: "Connection lost · retrying",
  [State.LOGGED_OUT]: "Logged out",
};
let connTimer = 0;

function showConnection(conn, detail) {
  clearTimeout(connTimer);
  let text = CONN_TEXT[conn] || conn;
  let cls = conn;
  if (conn === State.RESUMED) text = detail.missed ? `Resumed · ${detail.missed} missed item${detail.missed === 1 ? "" : "s"} caught up` : "Resumed";
  if (conn === State.LOST && detail.offline) text = "Connection lost · offline";
  else if (conn === State.LOST && detail.delay) text = `Connection lost · retrying in ${Math.ceil(detail.delay / 1000)} s`;
  if (conn === State.RESUMED || conn === State.RELOADED) {
    cls = "resumed";
    connTimer = setTimeout(() => showConnection(State.LIVE, {}), 5000);
  }
  els.conn.textContent = text;
  els.conn.className = `conn conn-${cls}`;
  els.conn.dataset.state = conn;
  els.conn.title = conn === State.LOST ? "Click to retry now" : "";
  document.body.classList.toggle("is-offline", conn === State.LOST || conn === State.RECONNECTING || conn === State.LOGGED_OUT);
  if (conn === State.LOGGED_OUT) sessionEnded();
}

function sessionEnded() {
  if ($("#session-ended")) return;
  const back = h("a", { class: "btn btn-primary", text: "Log in again" });
  back.href = `/login?next=${encodeURIComponent(window.location.pathname)}`;
  document.body.prepend(h("div", { id: "session-ended", class: "banner banner-error", role: "alert" }, "Your session has ended; the feed has stopped. ", back));
}

function toast(text, kind = "info") {
  const node = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", text });
  els.toasts.append(node);
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 4000);
}

function report(what, err) {
  if (err instanceof ApiError && err.status === 401) {
    sessionEnded();
    return;
  }
  const why = err instanceof ApiError ? err.message : String(err);
  toast(`${what}: ${why}`, "error");
  console.warn(`backchannel: ${what}`, err);
}

// -- wiring ------------------------------------------------------------------------

const feed = new LiveFeed(`/ws/events/${encodeURIComponent(EVENT)}`, {
  onItems: (items) => applyItems(items),
  onReset: async (reason) => {
    if (reason === "epoch") {
      msgs = new Messages(); // another history: nothing we hold is valid
      list.reset();
    }
    state.selected.clear();
    updateBulk();
    const [page] = await Promise.all([loadFirstPage(), loadQuestions(), loadSettings()]);
    scheduleStats();
    return page ? page.last_seq : null;
  },
  onState: showConnection,
  onDisconnect: (failures) => {
    // Several failures in a row may mean the session is gone (a 401 at the handshake
    // looks like any other failure to a browser): ask the API, which says so plainly.
    if (failures === 2) {
      api.settings().catch((err) => {
        if (err instanceof ApiError && err.status === 401) sessionEnded();
      });
    }
  },
});
els.conn.addEventListener("click", () => feed.reconnectNow());

els.feed.addEventListener("click", (event) => {
  const row = event.target.closest(".row");
  if (!row) return;
  const id = Number(row.dataset.id);
  const button = event.target.closest("button[data-act]");
  if (button) {
    onRowAction(id, button.dataset.act);
    return;
  }
  if (event.target.closest(".row-check")) {
    // The box toggles itself; the selection follows, and decorate() keeps them equal.
    toggleSelected(id, { range: event.shiftKey });
    return;
  }
  if (event.target.closest("a")) return;
  setCursor(id, { reveal: false });
});

els.pause.addEventListener("click", () => setPaused(!state.paused));
els.newcount.addEventListener("click", () => {
  if (state.paused) setPaused(false);
  else {
    els.feed.scrollTop = 0;
    state.unseenAbove = 0;
    updateNewCount();
  }
});
els.older.addEventListener("click", () => loadOlder());
els.premod.addEventListener("click", () => {
  const on = els.premod.getAttribute("aria-checked") === "true";
  eventAction(on ? "premoderation-off" : "premoderation-on");
});
els.bulk.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-bulk]");
  if (!button) return;
  const action = button.dataset.bulk;
  if (action === "clear") clearSelection();
  else {
    moderate(action, [...state.selected]);
    clearSelection();
  }
});

function readFilter() {
  const form = new FormData(els.filters);
  return {
    q: String(form.get("q") || "").trim(),
    author: String(form.get("author") || "").trim(),
    question: form.get("question") === "on",
    has_link: form.get("has_link") === "on",
    status: String(form.get("status") || ""),
    network: String(form.get("network") || ""),
  };
}

let filterTimer = 0;
function filterChanged(delay) {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    const next = readFilter();
    if (JSON.stringify(next) === JSON.stringify(state.filter)) return;
    state.filter = next;
    state.cursor = null;
    document.body.classList.toggle("is-filtered", Object.values(next).some(Boolean));
    loadFirstPage().catch((err) => report("Could not search", err));
  }, delay);
}
els.filters.addEventListener("input", (event) => filterChanged(event.target.type === "search" ? 300 : 0));
els.filters.addEventListener("change", () => filterChanged(0));
els.filters.addEventListener("reset", () => setTimeout(() => filterChanged(0), 0));
els.filters.addEventListener("submit", (event) => {
  event.preventDefault();
  filterChanged(0);
});

for (const form of [$("#block-form"), $("#mute-form")]) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = form.elements.namedItem("subject");
    const subject = input.value.trim();
    if (!subject) return;
    if (await eventAction(form.id === "block-form" ? "block" : "mute", subject)) input.value = "";
  });
}

const KEYS = { a: "approve", h: "hide", s: "star", d: "answer", p: "pin" };

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  const typing = 'input:not([type="checkbox"]):not([type="radio"]), textarea, select, [contenteditable]';
  if (target instanceof Element && target.closest(typing)) {
    if (event.key === "Escape") target.blur();
    return;
  }
  const key = event.key;
  if (key === "j" || (key === "ArrowDown" && target === els.feed)) moveCursor(1);
  else if (key === "k" || (key === "ArrowUp" && target === els.feed)) moveCursor(-1);
  else if (KEYS[key]) keyAction(KEYS[key]);
  else if (key === "x") {
    if (state.cursor !== null) toggleSelected(state.cursor);
  } else if (key === "Escape") clearSelection();
  else if (key === " ") {
    if (target instanceof Element && target.closest("button, a, input, label")) return;
    setPaused(!state.paused);
  } else if (key === "/") els.filters.elements.namedItem("q").focus();
  else if (key === "g") {
    els.feed.scrollTop = 0;
    if (state.ids.length) setCursor(state.ids[0]);
  } else if (key === "o") {
    const link = state.cursor !== null ? list.rowElement(state.cursor)?.querySelector("a.time") : null;
    if (link) link.click();
  } else return;
  event.preventDefault();
});

async function boot() {
  performance.mark("bc:start");
  loadSources();
  try {
    const [page] = await Promise.all([loadFirstPage(), loadSettings()]);
    requestAnimationFrame(() => performance.mark("bc:first-rows")); // the frame that paints them
    feed.start(page.epoch, page.last_seq);
    await Promise.all([loadQuestions(), loadStats()]);
    requestAnimationFrame(() => {
      performance.mark("bc:snapshot");
      document.body.dataset.ready = "true";
    });
  } catch (err) {
    report("Could not load the event", err);
  }
  setInterval(loadStats, STATS_EVERY_MS);
  setInterval(loadSources, SOURCES_EVERY_MS);
}

boot();
