// JSON calls to the server's API (backchannel/server/api.py) for the dashboard.
//
// Writes carry the session's CSRF token (from <meta name="csrf-token">) in the
// X-CSRF-Token header, and an action_id so that a retry after a network error is
// applied once by the server.

import { uuid } from "./dom.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const RETRIES = [500, 1500, 4000]; // ms between attempts when the network fails

export class Api {
  constructor(event, csrf) {
    this.base = `/api/events/${encodeURIComponent(event)}`;
    this.csrf = csrf;
  }

  async get(path, params) {
    const url = new URL(this.base + path, window.location.href);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, String(value));
    }
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    return decode(response);
  }

  /** POST with an action id; retried on network errors with the same id. */
  async post(path, body) {
    const payload = JSON.stringify({ ...body, action_id: uuid() });
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await fetch(this.base + path, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrf, Accept: "application/json" },
          body: payload,
        });
      } catch (err) {
        if (attempt >= RETRIES.length) throw new ApiError(0, "the server cannot be reached");
        await new Promise((resolve) => setTimeout(resolve, RETRIES[attempt]));
        continue;
      }
      return decode(response);
    }
  }

  messages(params) {
    return this.get("/messages", params);
  }
  questions() {
    return this.get("/questions");
  }
  stats() {
    return this.get("/stats");
  }
  settings() {
    return this.get("/settings");
  }
  sources() {
    return this.get("/sources");
  }
  moderate(action, ids) {
    return this.post("/moderate", { action, ids });
  }
  eventAction(action, subject = "") {
    return this.post("/event-actions", { action, subject });
  }
}

async function decode(response) {
  if (response.ok) return response.json();
  let message = `${response.status} ${response.statusText}`;
  try {
    const text = await response.text();
    if (text) {
      try {
        message = JSON.parse(text).error || text;
      } catch {
        message = text;
      }
    }
  } catch {
    /* keep the status line */
  }
  throw new ApiError(response.status, message.slice(0, 300));
}
