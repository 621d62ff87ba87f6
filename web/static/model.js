// The dashboard's message state: every message it knows, upserted by id.
//
// Wire items (backchannel/core/wire.py) are idempotent to apply: each message keeps
// the seq of the newest information it was built from (`_v`), and an older item
// never overwrites a newer state. Native reposts and manual "RT @x:" copies are not
// rows of their own: they count onto their original, once, and only if the original's
// counts were read before them (`_countsAsOf`).

export const MESSAGE = "message";
export const MODERATION = "moderation";
export const EVENT_ACTIONS = new Set([
  "block", "unblock", "mute", "unmute", "premoderation-on", "premoderation-off",
]);

export class Messages {
  constructor() {
    this.byId = new Map();
    this.byUri = new Map();
  }

  get(id) {
    return this.byId.get(id);
  }

  byUriGet(uri) {
    const id = this.byUri.get(uri);
    return id === undefined ? undefined : this.byId.get(id);
  }

  /** Store a message read from the API as of `asOf` (the response's last_seq).
   * Returns the stored message, or undefined if we hold newer information. */
  fromSnapshot(item, asOf) {
    return this.put(item, Math.max(asOf, item.seq), asOf);
  }

  /** Store a message carried by a wire item numbered `seq`. */
  fromWire(item, seq) {
    return this.put(item, seq, seq);
  }

  put(item, version, countsAsOf) {
    const current = this.byId.get(item.id);
    if (current && current._v > version) return undefined;
    const next = { ...item, _v: version, _countsAsOf: countsAsOf, _last: current?._last ?? null };
    if (current) {
      // Counts read earlier than what we have already counted stay ours.
      if (current._countsAsOf > countsAsOf) {
        next.repost_count = current.repost_count;
        next.copy_count = current.copy_count;
        next._countsAsOf = current._countsAsOf;
      }
    }
    this.byId.set(item.id, next);
    if (typeof item.uri === "string") this.byUri.set(item.uri, item.id);
    return next;
  }

  /** A new native repost or manual copy: +1 on its original, if we hold it and its
   * counts were read before this item. Returns the original when it changed. */
  countOnto(item) {
    const uri = item.repost_of || item.copy_of;
    const original = uri ? this.byUriGet(uri) : undefined;
    if (!original || item.seq <= original._countsAsOf) return undefined;
    const field = item.repost_of ? "repost_count" : "copy_count";
    const next = { ...original, [field]: (original[field] || 0) + 1, _countsAsOf: item.seq };
    this.byId.set(original.id, next);
    return next;
  }

  /** Remember who did what last to a message (shown on its row). */
  noteAction(id, action, actor, at) {
    const current = this.byId.get(id);
    if (current) this.byId.set(id, { ...current, _last: { action, actor, at } });
  }
}

export function isCollapsed(m) {
  return Boolean(m.repost_of || m.copy_of);
}

/** The active filter as the API's query parameters (empty values left out). */
export function filterParams(filter) {
  const params = {};
  if (filter.q) params.q = filter.q;
  if (filter.author) params.author = filter.author;
  if (filter.question) params.question = "true";
  if (filter.has_link) params.has_link = "true";
  if (filter.status) params.status = filter.status;
  if (filter.network) params.network = filter.network;
  return params;
}

/** Client-side mirror of the server's search (store/queries.py `_apply_query`),
 * so live items respect the active filter without a round trip. */
export function matches(m, filter) {
  if (isCollapsed(m)) return false;
  if (filter.q && !String(m.text).toLowerCase().includes(filter.q.toLowerCase())) return false;
  if (filter.author) {
    const needle = filter.author.replace(/^@+/, "").toLowerCase();
    const handle = String(m.author_handle).toLowerCase();
    const name = String(m.author_name).toLowerCase();
    if (!handle.includes(needle) && !name.includes(needle)) return false;
  }
  if (filter.question && !m.is_question) return false;
  if (filter.has_link && !(m.links && m.links.length)) return false;
  if (filter.status && m.status !== filter.status) return false;
  if (filter.network && m.network !== filter.network) return false;
  return true;
}

/** Whether a message belongs in the question queue (as GET /questions lists them,
 * less those a moderator hid). */
export function inQuestionQueue(m) {
  return Boolean(m.is_question && !m.answered && !isCollapsed(m) && m.status !== "hidden");
}

/** Client-side mirror of `WallRules.visible` (core/moderation.py): why the public
 * wall does not show this message, or null if it does. */
export function offWallReason(m, rules) {
  if (m.status === "hidden") return "hidden";
  if (m.repost_of) return "repost";
  if (rules.premoderation && m.status !== "approved") return "awaiting approval";
  if (rules.blocked.has(`${m.network}:${String(m.author_handle).toLowerCase()}`)) return "author blocked";
  const muted = mutedBy(m, rules.muted);
  if (muted !== null) return `muted: ${muted}`;
  return null;
}

function mutedBy(m, muted) {
  if (!muted.length) return null;
  const text = String(m.text).toLowerCase();
  const tags = new Set((m.hashtags || []).map((t) => String(t).toLowerCase()));
  for (const term of muted) {
    const t = term.toLowerCase();
    if (t.startsWith("#") && tags.has(t.slice(1))) return term;
    if (text.includes(t)) return term;
  }
  return null;
}

/** Wall rules from GET /settings, in the shape offWallReason needs. */
export function wallRules(settings) {
  return {
    premoderation: Boolean(settings.premoderation),
    blocked: new Set((settings.blocked || []).map((s) => String(s).toLowerCase())),
    muted: (settings.muted || []).map(String),
  };
}

/** Insert `id` into `ids` (sorted by seq, newest first) at its place; returns the index. */
export function insertBySeq(ids, id, seqOf) {
  const seq = seqOf(id);
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (seqOf(ids[mid]) > seq) lo = mid + 1;
    else hi = mid;
  }
  ids.splice(lo, 0, id);
  return lo;
}
