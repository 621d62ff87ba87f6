// The dashboard's side panels: question queue, moderator activity, wall rules, sources.
// Rebuilt whole on change (they hold at most a few hundred entries); text as text.

import { clear, clock, fullTime, h, networkLabel, richText } from "./dom.js";
import { author, timeLink, verb, who } from "./rows.js";

const MAX_QUESTIONS = 200;

export function renderQuestions(list, messages, { onAnswer, onStar, onShow }) {
  clear(list);
  if (!messages.length) {
    list.append(h("li", { class: "muted empty", text: "No open questions." }));
    return;
  }
  for (const m of messages.slice(0, MAX_QUESTIONS)) {
    const item = h(
      "li",
      { class: `q${m.starred ? " is-starred" : ""}`, dataset: { id: String(m.id) } },
      h("div", { class: "q-head" }, author(m), timeLink(m)),
      h("p", { class: "q-text", dir: "auto" }, richText(m.text)),
      h(
        "div",
        { class: "q-actions" },
        h("button", { type: "button", class: "btn btn-sm btn-answer", text: "Answered", title: "Mark answered: it leaves the queue", on: { click: () => onAnswer(m.id) } }),
        h("button", { type: "button", class: "btn btn-sm btn-quiet", text: m.starred ? "★ Starred" : "☆ Star", "aria-pressed": m.starred ? "true" : "false", on: { click: () => onStar(m.id) } }),
        h("button", { type: "button", class: "btn btn-sm btn-quiet", text: "Show in feed", on: { click: () => onShow(m.id) } }),
      ),
    );
    list.append(item);
  }
  if (messages.length > MAX_QUESTIONS) {
    list.append(h("li", { class: "muted", text: `and ${messages.length - MAX_QUESTIONS} more` }));
  }
}

function subjectLabel(item, messageOf) {
  if (item.message) {
    const m = messageOf(item.message.id) || item.message;
    const text = String(m.text || "");
    return [
      h("bdi", { class: "handle", text: `@${m.author_handle}` }),
      h("span", { class: "quote", text: ` “${text.length > 70 ? text.slice(0, 69) + "…" : text}”` }),
    ];
  }
  if (item.subject) return [h("bdi", { class: "subject", text: item.subject })];
  return [];
}

export function renderActivity(list, items, messageOf, me, onShow) {
  clear(list);
  if (!items.length) {
    list.append(h("li", { class: "muted", text: "Nothing yet." }));
    return;
  }
  for (const item of items) {
    const entry = h(
      "li",
      { class: `activity-item act-${String(item.action).replace(/[^a-z-]/g, "")}${item.actor === me ? " is-mine" : ""}` },
      h("span", { class: "activity-time", text: clock(item.created_at, { seconds: true }), title: fullTime(item.created_at) }),
      h("span", { class: "activity-text" }, h("bdi", { class: "activity-actor", text: who(item.actor, me) }), ` ${verb(item.action)} `, subjectLabel(item, messageOf)),
    );
    if (item.message) {
      entry.classList.add("is-clickable");
      entry.addEventListener("click", () => onShow(item.message.id));
    }
    list.append(entry);
  }
}

function ruleItem(label, buttonText, onClick) {
  return h(
    "li",
    null,
    h("bdi", { class: "rule-label", text: label }),
    h("button", { type: "button", class: "btn btn-sm btn-quiet", text: buttonText, on: { click: onClick } }),
  );
}

export function renderRules(blockedList, mutedList, rules, act) {
  clear(blockedList);
  for (const subject of [...rules.blocked].sort()) {
    const at = subject.indexOf(":");
    const label = at > 0 ? `@${subject.slice(at + 1)} (${networkLabel(subject.slice(0, at))})` : subject;
    blockedList.append(ruleItem(label, "Unblock", () => act("unblock", subject)));
  }
  if (!rules.blocked.size) blockedList.append(h("li", { class: "muted small", text: "No blocked authors." }));
  clear(mutedList);
  for (const term of rules.muted) mutedList.append(ruleItem(`“${term}”`, "Unmute", () => act("unmute", term)));
  if (!rules.muted.length) mutedList.append(h("li", { class: "muted small", text: "No muted terms." }));
}

// A source's state (backchannel/sources/base.py SourceState) to its badge's colour.
const STATE_CLASS = {
  collecting: "src-ok",
  sleeping: "src-wait",
  "backing off": "src-wait",
  failing: "src-bad",
  stopped: "src-off",
};

export function renderSources(list, data) {
  clear(list);
  const sources = Array.isArray(data?.sources) ? data.sources : [];
  const gaps = Array.isArray(data?.gaps) ? data.gaps : [];
  if (!sources.length) {
    list.append(h("li", { class: "muted small", text: "No live sources (replay or import only)." }));
    return;
  }
  for (const s of sources) {
    const state = String(s.state ?? "?");
    const count = Number(s.collected) || 0;
    const item = h(
      "li",
      { class: "src", dataset: { source: String(s.source ?? "") } },
      h(
        "div",
        { class: "src-head" },
        h("bdi", { class: "src-name", text: String(s.source ?? "") }),
        h("span", { class: `src-state ${STATE_CLASS[state] || "src-off"}`, text: state }),
        h("span", { class: "src-count muted", text: `${count.toLocaleString()} collected`, title: `updated ${fullTime(s.updated_at)}` }),
      ),
    );
    const notes = [];
    if (s.detail) notes.push(h("span", { class: "src-detail", text: String(s.detail) }));
    if (s.next_try) notes.push(h("span", { class: "src-next", text: `next try ${clock(s.next_try, { seconds: true })}`, title: fullTime(s.next_try) }));
    if (notes.length) item.append(h("div", { class: "src-notes muted small" }, notes));
    if (s.last_error) item.append(h("p", { class: "src-error", text: String(s.last_error) }));
    for (const g of gaps.filter((gap) => gap.source === s.source)) {
      item.append(h("p", { class: "src-gap small", text: `gap ${clock(g.from)}–${clock(g.to)}: ${g.reason ?? ""}`, title: `${fullTime(g.from)} – ${fullTime(g.to)}` }));
    }
    list.append(item);
  }
  // Gaps recorded by a source that no longer reports a state.
  const known = new Set(sources.map((s) => s.source));
  for (const g of gaps.filter((gap) => !known.has(gap.source))) {
    list.append(h("li", { class: "src src-gap small" }, h("bdi", { text: String(g.source ?? "") }), `: gap ${clock(g.from)}–${clock(g.to)}: ${g.reason ?? ""}`));
  }
}
