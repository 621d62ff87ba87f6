// One message row of the dashboard feed, and the small pieces shared with the
// question queue. Text, names and URLs go in as text nodes or checked links only.

import { clock, fullTime, h, link, networkLabel, richText, safeUrl, shortUrl } from "./dom.js";
import { offWallReason } from "./model.js";

const STATUS_LABEL = { new: "New", approved: "Approved", hidden: "Hidden" };

const VERBS = {
  approve: "approved",
  hide: "hid",
  restore: "restored",
  star: "starred",
  unstar: "unstarred",
  answer: "marked answered",
  unanswer: "marked unanswered",
  pin: "pinned to the wall",
  unpin: "unpinned",
  block: "blocked",
  unblock: "unblocked",
  mute: "muted",
  unmute: "unmuted",
  "premoderation-on": "turned premoderation on",
  "premoderation-off": "turned premoderation off",
};

export function verb(action) {
  return VERBS[action] || String(action);
}

export function who(actor, me) {
  return actor === me ? "you" : String(actor || "someone");
}

function chip(text, cls, title) {
  return h("span", { class: `chip ${cls}`, text, title: title || null });
}

export function author(m) {
  return h(
    "span",
    { class: "author" },
    h("bdi", { class: "name", text: m.author_name || m.author_handle }),
    h("bdi", { class: "handle", text: `@${m.author_handle}` }),
  );
}

export function timeLink(m) {
  const label = clock(m.created_at);
  // A permalink that is not http(s) is no link at all: the time shows as plain text.
  const node = safeUrl(m.permalink) ? link(m.permalink, label, "time") : h("span", { class: "time", text: label });
  node.title = `${fullTime(m.created_at)} · open on ${networkLabel(m.network)}`;
  return node;
}

/** The row's chips: status, then flags, then why the wall does not show it. */
function chips(m, rules) {
  const out = [chip(STATUS_LABEL[m.status] || m.status, `chip-${m.status}`)];
  if (m.is_question) out.push(chip(m.answered ? "Answered" : "Question", m.answered ? "chip-answered" : "chip-question"));
  if (m.starred) out.push(chip("★ Starred", "chip-star"));
  if (m.pinned) out.push(chip("Pinned on wall", "chip-pin"));
  const reason = offWallReason(m, rules);
  if (reason && reason !== "hidden" && reason !== "repost") {
    out.push(chip(`Off wall: ${reason}`, "chip-offwall", "The public wall does not show this message"));
  }
  return out;
}

function actionButton(act, label, { pressed = null, title = "", cls = "" } = {}) {
  const button = h("button", {
    type: "button",
    class: `act ${cls}`.trim(),
    dataset: { act },
    title,
    tabindex: "-1",
    text: label,
  });
  if (pressed !== null) button.setAttribute("aria-pressed", pressed ? "true" : "false");
  return button;
}

function actions(m, blocked) {
  return h(
    "div",
    { class: "actions", role: "group", "aria-label": "Moderate" },
    actionButton(m.status === "approved" ? "restore" : "approve", m.status === "approved" ? "✓ Approved" : "Approve", {
      pressed: m.status === "approved",
      title: m.status === "approved" ? "Approved; click to set back to new" : "Approve (a)",
      cls: "act-approve",
    }),
    actionButton(m.status === "hidden" ? "restore" : "hide", m.status === "hidden" ? "Hidden" : "Hide", {
      pressed: m.status === "hidden",
      title: m.status === "hidden" ? "Hidden; click to restore (h)" : "Hide (h)",
      cls: "act-hide",
    }),
    actionButton(m.starred ? "unstar" : "star", m.starred ? "★ Starred" : "☆ Star", {
      pressed: m.starred,
      title: "Star (s)",
      cls: "act-star",
    }),
    actionButton(m.answered ? "unanswer" : "answer", m.answered ? "✓ Answered" : "Answered", {
      pressed: m.answered,
      title: m.answered ? "Answered; click to put it back in the queue (d)" : "Mark answered (d)",
      cls: "act-answer",
    }),
    actionButton(m.pinned ? "unpin" : "pin", m.pinned ? "✓ Pinned" : "Pin", {
      pressed: m.pinned,
      title: "Pin to the wall (p); one message is pinned at a time",
      cls: "act-pin",
    }),
    actionButton(blocked ? "unblock" : "block", blocked ? "Unblock" : "Block", {
      title: blocked ? "Let this author back on the wall" : "Block this author from the wall (click twice)",
      cls: "act-block",
    }),
  );
}

/**
 * A feed row. `ctx`: {parent, rules, me, mark (the search term to highlight)}.
 */
export function messageRow(m, ctx) {
  const { parent, rules, me, mark } = ctx;
  const blocked = rules.blocked.has(`${m.network}:${String(m.author_handle).toLowerCase()}`);
  const classes = ["row", `st-${m.status}`];
  if (m.is_question && !m.answered) classes.push("is-question");
  if (m.starred) classes.push("is-starred");
  if (m.pinned) classes.push("is-pinned");
  if (m._flashUntil && m._flashUntil > Date.now()) classes.push("flash");

  const text = h("p", { class: "text", dir: "auto" }, richText(m.text, { mark }));
  text.title = m.text.length > 140 ? m.text : "";

  const meta = [];
  if (m.reply_to) {
    const context = parent
      ? h("span", { class: "reply" }, "↩ ", h("bdi", { class: "reply-name", text: parent.author_name || parent.author_handle }), ": ", h("bdi", { class: "reply-text", text: parent.text }))
      : h("span", { class: "reply" }, "↩ reply to ", link(m.reply_to, "an earlier message", "reply-link"));
    if (parent) context.title = `In reply to ${parent.author_name}: ${parent.text}`;
    meta.push(context);
  }
  if (m.repost_count) meta.push(h("span", { class: "count", text: `⟳ ${m.repost_count} repost${m.repost_count === 1 ? "" : "s"}` }));
  if (m.copy_count) meta.push(h("span", { class: "count", text: `❝ ${m.copy_count} RT cop${m.copy_count === 1 ? "y" : "ies"}`, title: 'Manual "RT @…" copies folded onto this message' }));
  for (const url of (m.links || []).slice(0, 2)) meta.push(link(url, shortUrl(url, 36), "meta-link"));
  if (m._last) {
    meta.push(
      h("span", { class: "actor", title: fullTime(m._last.at) }, `${verb(m._last.action)} by `, h("bdi", { text: who(m._last.actor, me) }), ` · ${clock(m._last.at)}`),
    );
  }

  return h(
    "div",
    { class: classes.join(" "), role: "listitem", dataset: { id: String(m.id) } },
    h("input", { type: "checkbox", class: "row-check", tabindex: "-1", "aria-label": "Select this message" }),
    h(
      "div",
      { class: "row-body" },
      h("div", { class: "row-head" }, author(m), h("span", { class: `net net-${m.network}`, text: networkLabel(m.network) }), timeLink(m), h("span", { class: "chips" }, chips(m, rules))),
      text,
      h("div", { class: "row-meta" }, meta),
    ),
    actions(m, blocked),
  );
}
