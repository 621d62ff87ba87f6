// The websocket feed of one event, shared by the dashboard and the wall.
//
// Wire format: backchannel/core/wire.py. The client connects with the epoch and the
// highest seq it holds (`?epoch=E&since=N`); the server replays what was missed and
// says "recovered", or says "reset" and the client reloads its snapshot (live items
// keep coming on the same connection). Items are handed to the page as they come;
// the page upserts them by id, so an item seen twice does no harm.
//
// Reconnecting: at once after a drop, then with exponential backoff and jitter
// (1 s, 2 s, 4 s … capped at 15 s) so a restarted server is not hit by every
// dashboard in the same millisecond. A connection that reached "hello" resets the
// backoff. Close code 4001 means the user logged out: no reconnect.

const MAX_DELAY_MS = 15_000;
const LOST_AFTER_FAILURES = 2; // failed attempts in a row before we say "connection lost"

export const State = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RESUMED: "resumed",
  RELOADED: "reloaded",
  RECONNECTING: "reconnecting",
  LOST: "lost",
  LOGGED_OUT: "logged-out",
});

export class LiveFeed {
  /**
   * @param {string} path  e.g. "/ws/events/slz"
   * @param {object} handlers  onItems(items), onReset(reason) -> Promise, onState(state, detail)
   */
  constructor(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.epoch = null;
    this.since = null;
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
    this.hadHello = false;
    this.wasLive = false;
    window.addEventListener("online", () => {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.emit(State.LIVE);
      else this.reconnectNow();
    });
    window.addEventListener("offline", () => this.emit(State.LOST, { offline: true }));
  }

  /** Start (or restart) from a snapshot's position. */
  start(epoch, since) {
    this.epoch = epoch;
    this.since = since;
    this.connect();
  }

  /** Note that the page now holds everything up to `seq` (a snapshot was loaded). */
  advance(seq) {
    if (typeof seq === "number" && (this.since === null || seq > this.since)) this.since = seq;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "page closed");
  }

  emit(state, detail = {}) {
    this.handlers.onState?.(state, detail);
  }

  url() {
    const url = new URL(this.path, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    if (this.epoch) url.searchParams.set("epoch", this.epoch);
    if (this.since !== null) url.searchParams.set("since", String(this.since));
    return url.href;
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.hadHello = false;
    this.emit(this.failures ? State.RECONNECTING : State.CONNECTING, { attempt: this.failures });
    const ws = (this.ws = new WebSocket(this.url()));
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.warn("backchannel: ignoring a frame that is not JSON");
        return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.onClose(event);
    });
  }

  onFrame(frame) {
    switch (frame.type) {
      case "hello":
        this.hadHello = true;
        this.failures = 0;
        if (this.epoch && frame.epoch !== this.epoch) this.since = null; // a reset follows
        this.epoch = frame.epoch;
        break;
      case "items": {
        const items = Array.isArray(frame.items) ? frame.items : [];
        this.handlers.onItems(items);
        for (const item of items) this.advance(item.seq);
        break;
      }
      case "recovered":
        this.emit(this.wasLive ? State.RESUMED : State.LIVE, {
          missed: Math.max(0, frame.to_seq - frame.from_seq + 1),
        });
        this.wasLive = true;
        break;
      case "reset":
        this.wasLive = true;
        Promise.resolve(this.handlers.onReset(frame.reason))
          .then((seq) => {
            this.advance(seq);
            this.emit(State.RELOADED, { reason: frame.reason });
          })
          .catch((err) => {
            console.error("backchannel: reloading the snapshot failed", err);
            this.ws?.close(4000, "snapshot failed");
          });
        break;
      default:
        break; // "ping" and frames from a newer server: nothing to do
    }
  }

  onClose(event) {
    if (this.stopped) return;
    if (event.code === 4001) {
      this.emit(State.LOGGED_OUT, {});
      return;
    }
    if (!this.hadHello) this.failures += 1;
    // First drop of a working connection: reconnect at once (within 250 ms, spread so
    // that a restarted server is not hit by every client together). Then back off.
    const base = this.failures === 0 ? 250 : Math.min(MAX_DELAY_MS, 1000 * 2 ** (this.failures - 1));
    const delay = this.failures === 0 ? base * Math.random() : base * (0.5 + Math.random() / 2);
    const state = this.failures >= LOST_AFTER_FAILURES ? State.LOST : State.RECONNECTING;
    this.emit(state, { delay, attempt: this.failures, code: event.code });
    this.handlers.onDisconnect?.(this.failures);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    this.connect();
  }
}
