// The statistics panel: totals, a messages-per-minute chart, top posters, hashtags
// and links, from GET /api/events/E/stats (backchannel/core/stats.py `as_json`).
// The chart is SVG built with DOM calls; names and links are inserted as text.

import { clear, h, link, networkLabel, shortUrl, svg } from "./dom.js";

const CHART_W = 400;
const CHART_H = 96;
const AXIS_H = 16;
const MAX_MINUTES = 90; // the chart shows the last hour and a half of the session

function minuteDate(key) {
  // "2010-06-22T12:26Z" -> a Date at that minute (UTC)
  const t = Date.parse(String(key).replace(/Z$/, ":00Z"));
  return Number.isNaN(t) ? null : new Date(t);
}

const minuteFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });

/** Minutes from the first to the last key with data, zeros filled in. */
function series(perMinute) {
  const points = [];
  for (const [key, count] of perMinute || []) {
    const date = minuteDate(key);
    if (date) points.push([date.getTime(), Number(count) || 0]);
  }
  if (!points.length) return [];
  const byTime = new Map(points);
  const last = points[points.length - 1][0];
  const first = Math.max(points[0][0], last - (MAX_MINUTES - 1) * 60_000);
  const out = [];
  for (let t = first; t <= last; t += 60_000) out.push([t, byTime.get(t) || 0]);
  return out;
}

export function renderChart(container, perMinute) {
  const data = series(perMinute);
  clear(container);
  if (!data.length) {
    container.append(h("p", { class: "muted small", text: "No messages yet." }));
    return;
  }
  const max = Math.max(1, ...data.map(([, n]) => n));
  const plotH = CHART_H - AXIS_H;
  const step = CHART_W / Math.max(data.length, 20);
  const barW = Math.max(1, step * 0.78);
  const chart = svg("svg", {
    viewBox: `0 0 ${CHART_W} ${CHART_H}`,
    class: "chart-svg",
    role: "img",
    "aria-label": `Messages per minute, at most ${max}`,
  });
  chart.append(svg("line", { x1: 0, x2: CHART_W, y1: plotH + 0.5, y2: plotH + 0.5, class: "chart-axis" }));
  chart.append(svg("line", { x1: 0, x2: CHART_W, y1: 0.5, y2: 0.5, class: "chart-grid" }));
  data.forEach(([t, n], i) => {
    const barH = n ? Math.max(2, (n / max) * (plotH - 4)) : 0;
    const bar = svg("rect", {
      x: (i * step).toFixed(2),
      y: (plotH - barH).toFixed(2),
      width: barW.toFixed(2),
      height: barH.toFixed(2),
      class: i === data.length - 1 ? "chart-bar chart-bar-last" : "chart-bar",
    });
    const title = svg("title");
    title.textContent = `${minuteFormat.format(new Date(t))}: ${n} message${n === 1 ? "" : "s"}`;
    bar.append(title);
    chart.append(bar);
  });
  const label = (x, anchor, text) => {
    const node = svg("text", { x, y: CHART_H - 3, "text-anchor": anchor, class: "chart-label" });
    node.textContent = text;
    return node;
  };
  chart.append(label(0, "start", minuteFormat.format(new Date(data[0][0]))));
  chart.append(label(CHART_W, "end", minuteFormat.format(new Date(data[data.length - 1][0]))));
  const peak = svg("text", { x: CHART_W, y: 11, "text-anchor": "end", class: "chart-label" });
  peak.textContent = `peak ${max}/min`;
  chart.append(peak);
  container.append(chart);
}

function bar(count, max) {
  const fill = h("span", { class: "toplist-fill" });
  fill.style.width = `${Math.round((count / Math.max(1, max)) * 100)}%`; // CSSOM: allowed by the CSP
  return h("span", { class: "toplist-bar", "aria-hidden": "true" }, fill);
}

function topList(list, rows, labelFor) {
  clear(list);
  if (!rows || !rows.length) {
    list.append(h("li", { class: "muted small", text: "None yet." }));
    return;
  }
  const max = Math.max(...rows.map(([, n]) => Number(n) || 0));
  for (const [key, count] of rows) {
    list.append(
      h("li", null, h("span", { class: "toplist-label" }, labelFor(String(key))), h("span", { class: "toplist-count", text: String(count) }), bar(count, max)),
    );
  }
}

function posterLabel(key) {
  const at = key.indexOf(":");
  const network = at > 0 ? key.slice(0, at) : "";
  const handle = at > 0 ? key.slice(at + 1) : key;
  return h("span", { title: `${networkLabel(network)} · @${handle}` }, h("bdi", { text: `@${handle}` }));
}

export function renderStats(data, els) {
  clear(els.totals);
  const total = (label, value, cls = "") => h("div", { class: `total ${cls}`.trim() }, h("span", { class: "total-value", text: String(value) }), h("span", { class: "total-label", text: label }));
  els.totals.append(total("messages", data.total ?? 0), total("reposts", data.reposts ?? 0), total("questions", data.questions ?? 0, "total-q"));
  const networks = Object.entries(data.networks || {});
  if (networks.length) {
    els.totals.append(
      h("div", { class: "networks" }, networks.map(([net, n]) => h("span", { class: `net-chip net-${net}`, text: `${networkLabel(net)} ${n}` }))),
    );
  }
  renderChart(els.chart, data.per_minute);
  topList(els.posters, data.top_posters, posterLabel);
  topList(els.hashtags, data.top_hashtags, (tag) => h("span", { class: "tag", text: `#${tag}` }));
  topList(els.links, data.top_links, (url) => link(url, shortUrl(url, 44)));
}
