"""Fan-out: an event's items to every websocket watching it; publish never waits on a client.

The hub keeps no history. The store is the truth: every message and every
moderation change has a per-event sequence number, and what a client missed is
read back from the store, never from the hub's memory. Live push is at most once;
resume makes delivery exact. The frames are those of `backchannel.core.wire`.

Design
------
Publishing. `Hub.publish(event, items)` is a plain function: it appends the items
to the event's pending list and returns. It is called from the event loop's thread,
in seq order per event (the server's writers hold one lock per event from commit to
publish): a client resumes after the highest seq it has seen.

Coalescing. The first publish after a quiet period is flushed at once, so an idle
dashboard sees a message with no added latency. A publish within the window of the
previous flush waits for the window's end, and everything published in the meantime
goes out as one "items" frame. The window is `coalesce_window` (30 ms), or `pace`
times as long as the last flush took to reach every connection's socket if that is
longer: a flush to 1,000 clients costs ~1,000 sends, so on a slow or overloaded
machine the window grows and fan-out never takes more than about 1/(1 + pace) of
the loop. A flush applies each channel's view to the items and encodes them once
per channel (not once per client); every subscriber of that channel gets the same
bytes object appended to its queue.

One writer per connection. Each connection has a bounded queue and one writer task
that drains it: it waits until the queue is non-empty, takes everything queued (up
to `MAX_FRAME_BYTES`) and sends it as one frame, so batches that piled up while a
send was in flight are coalesced again, per client. When it took exactly one batch,
it sends the shared bytes without copying them. No code ever awaits a send in a
loop over clients. The common case skips the writer altogether: a flush builds the
websocket frame of each channel's batch once (server frames are not masked, so every
client gets the same bytes), and a connection whose writer is idle and whose socket
buffer is nearly empty gets those bytes written to its transport at once, as the
`websockets` library's `broadcast` does. Only a client that is behind goes through
its queue and writer, which wait for its socket to drain.

Slow clients. Each connection has a budget in items (`max_queue`) and in bytes
(`max_bytes`, 1 MiB): what it holds is its queued frames plus what sits in its
transport's write buffer (frames written straight to the transport count there). A
connection that already holds more than either budget when a flush reaches it is
dropped: removed from the hub at once, its queue freed, its writer cancelled, and
its socket closed with code 4008 "too slow", the transport aborted if even the close
frame cannot be written within `CLOSE_TIMEOUT`. Memory per connection is therefore
at most `max_bytes` plus one flush's batch (shared by every subscriber) and the
frame its writer has in flight: N stalled clients cost at most about N x 1 MiB,
however long they stall. A dropped client reconnects and resumes.

What the kernel holds is outside that count: its send buffer (autotuned up to
`net.ipv4.tcp_wmem`'s maximum, 4 MiB) is not the process's memory, and a healthy
client far away legitimately has megabytes in flight there. A connection that ends
abnormally (dropped, heartbeat timeout, an error) or with bytes still unsent is
aborted with a TCP reset (`SO_LINGER` 0), which frees the transport's buffer and the
kernel's at once: a plain close would keep the socket ESTABLISHED, flushing forever
to a peer that does not read.

Every exit path frees a subscription's queue, and a subscription holds no reference
cycle once it is stopped (its writer task is dropped when done), so reference
counting frees it at once: `backchannel serve` runs the cyclic collector rarely
(`cli.tune_gc`), and a stalled client's queue must not wait for it. (aiohttp's own
objects of a closed connection do wait for it, some 50 objects; their buffers are
empty by then.)

Resuming. A connection is registered (live items buffer in its queue) before its
backlog is read, and the backlog reader reports the event's head read before the
items. So every item up to the head is in the backlog, and every item after it is
in the queue (some earlier ones may be too): the backlog is sent up to the head, and
the writer skips queued items at or below it. The client gets exactly what it
missed, in order, without duplicate or gap, then "recovered". When it cannot
(another epoch, a `since` beyond the head, more than `max_gap` seqs missed) it gets
"reset" and reloads a snapshot; live items after the head follow.

Channels. A `Channel` is a view applied per item (a stored message or change in,
a wire item or nothing out), the same on the live path and on the resume path: an
event's `WallChannel` applies `WallRules.visible`, so the public wall cannot
receive by resuming a message it would not get live.

Keepalive and limits. `websocket_response()` builds aiohttp responses with protocol
pings (`heartbeat`; no pong within half of it ends the connection, which finds
half-open sockets and clients that stopped reading; aiohttp would only close the
transport, so the hub's response resets it instead), a 64 KiB limit on client
frames, and no permessage-deflate: compressing per client would undo encoding once
per channel and cost CPU for every client.

What the hub does not do: read the store (the backlog reader is injected), check
Origin or authenticate (the route does that before `prepare`), or span processes
(a Redis Streams feed will call `publish` in each process).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from backchannel.core import wire
from backchannel.core.moderation import WallRules
from backchannel.core.wire import Item, Publishable

log = logging.getLogger(__name__)

# Home Assistant's bound for pending messages per websocket: minutes of a busy
# backchannel for a client that is merely slow, far less than a stalled one piles up.
MAX_QUEUE = 4096
# A connection holding more than this (queued frames and its transport's write buffer)
# is dropped: at 100 messages/s of 8 KB a stalled client reaches it in about a second
# once the kernel's buffers are full, while a dashboard that is merely slow has
# seconds of an ordinary stream (~700-byte items) in hand. N stalled clients cost at
# most about N MiB.
MAX_BYTES = 1024 * 1024
# The shortest spacing of flushes under load, so at most ~33 frames a second per
# client, while a message still reaches an idle dashboard at once (coalescing starts
# only when publishes come closer than this). Measured on 2 cores with 1,000 clients
# at 100 items/s (bench/hub_fanout.py): 20 ms sends ~47 frames/s per client, more than
# a one-process load generator reads (p99 130 ms and up); 30 ms kept p99 near 100 ms.
COALESCE_WINDOW = 0.030
# Under load, wait at least as long as the last fan-out took before the next one, so
# fan-out never takes more than half the loop, however large the audience or slow
# the machine.
PACE = 1.0
# However slow fan-out gets, an item waits at most this long for its flush.
MAX_WINDOW = 0.100
# The most seqs a resume replays; past it a snapshot is cheaper than a replay.
MAX_GAP = 10_000
# A coalesced frame stays under every client's default limit (websockets: 1 MiB).
MAX_FRAME_BYTES = 256 * 1024
# Ping every 20 s, and close when no pong comes within 10 s: a half-open connection is
# found within half a minute, at the cost of one small frame per client per 20 s.
HEARTBEAT = 20.0
# Client frames are small control messages; 64 KiB bounds what one can make us buffer.
MAX_CLIENT_MESSAGE = 64 * 1024
# A connection whose socket buffer holds more than this is behind: its frames go
# through its queue and writer (which wait for the socket to drain), not straight out.
DIRECT_WRITE_LIMIT = 64 * 1024
# A close handshake longer than this is a client that does not read: abort instead.
CLOSE_TIMEOUT = 2.0

CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 4008


class Channel:
    """What a kind of connection may see: a view applied per item, live and on resume.

    Subscribers of one channel object share its encoded frames, so a channel is
    compared by identity; the moderators' `DASHBOARD` sees every item in full.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def view(self, value: Publishable) -> Item | None:
        return wire.to_item(value)

    def apply(self, values: Iterable[Publishable]) -> list[Item]:
        view = self.view
        return [item for value in values if (item := view(value)) is not None]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class WallChannel(Channel):
    """One event's public wall: what `WallRules.visible` accepts (see `wire.wall_item`).

    The server keeps one per event and assigns `rules` when moderators change them
    (the event action's own item tells walls to reload their snapshot).
    """

    __slots__ = ("rules",)

    def __init__(self, rules: WallRules, name: str = "wall") -> None:
        super().__init__(name)
        self.rules = rules

    def view(self, value: Publishable) -> Item | None:
        return wire.wall_item(value, self.rules)


DASHBOARD = Channel("dashboard")


@dataclass(frozen=True, slots=True)
class Backlog:
    """The event's head and what a client missed, as a `BacklogReader` returns them.

    `epoch` and `last_seq` are read before `items`, so every item with
    `after_seq < seq <= last_seq` is in `items`. Items beyond `last_seq` may be there
    too; the hub ignores them (they reach the client from its live queue).
    """

    epoch: str
    last_seq: int
    items: Sequence[Publishable] = ()


class BacklogReader(Protocol):
    """Reads the store for a resume, in seq order, at most `limit` items.

    `after_seq` None asks for the head only. The reader may also skip reading items
    when `after_seq` is beyond the head or more than `limit` behind it: the hub
    resets such a client. It may pre-filter for its channel; the hub applies the
    channel's view again.
    """

    async def __call__(self, event: str, *, after_seq: int | None, limit: int) -> Backlog: ...


class Connection(Protocol):
    """The transport a subscription writes to (an aiohttp websocket in production)."""

    async def send(self, frame: bytes) -> None:
        """Send one text frame whose payload is already UTF-8 JSON."""

    def send_now(self, ws_frame: bytes) -> bool:
        """Write a whole websocket frame (`websocket_frame`) at once if the socket can take
        it without waiting; False, having written nothing, if it cannot."""

    def buffered(self) -> int:
        """Bytes written to the transport that the socket has not taken yet."""

    async def close(self, code: int, reason: str) -> None:
        """Close, bounded in time; never raises for a connection already gone."""


class Outcome(enum.StrEnum):
    """How a connection started."""

    LIVE = "live"  # no resume point: live items after the head
    RECOVERED = "recovered"
    RESET = "reset"
    DROPPED = "dropped"  # too slow before it even went live


@dataclass(slots=True)
class HubStats:
    published: int = 0  # items given to publish() while someone listened
    flushes: int = 0  # batches encoded (one per channel per flush)
    frames: int = 0  # frames sent, summed over connections
    dropped: int = 0  # connections dropped as too slow
    aborted: int = 0  # transports reset rather than closed (stalled, timed out, broken)
    recovered: int = 0
    resets: int = 0
    window: float = 0.0  # the flush spacing last set (of whichever event flushed last)


@dataclass(frozen=True, slots=True)
class _Batch:
    """One flush's items for one channel, encoded once and shared by its subscribers."""

    seqs: tuple[int, ...]
    parts: tuple[bytes, ...]
    frame: bytes
    ws_frame: bytes  # `frame` as a whole websocket frame, for `Connection.send_now`
    lo: int
    hi: int


def _batch(items: Sequence[Item]) -> _Batch:
    parts = tuple(wire.encode_item(item) for item in items)
    seqs = tuple(int(item["seq"]) for item in items)
    frame = wire.items_frame(parts)
    return _Batch(seqs, parts, frame, websocket_frame(frame), min(seqs), max(seqs))


def websocket_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 section 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def _frames(items: Sequence[Item]) -> Iterable[bytes]:
    """Items as frames of at most MAX_FRAME_BYTES (a larger single item goes alone)."""
    parts: list[bytes] = []
    size = 0
    for item in items:
        part = wire.encode_item(item)
        if parts and size + len(part) > MAX_FRAME_BYTES:
            yield wire.items_frame(parts)
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield wire.items_frame(parts)


class Subscription:
    """One connection's place in the hub: a bounded queue and its writer task."""

    __slots__ = (
        "__weakref__",
        "_hub",
        "_queue",
        "_queued",
        "_queued_bytes",
        "_skip_through",
        "_waiter",
        "_writer",
        "channel",
        "conn",
        "dropped",
        "event",
    )

    def __init__(self, hub: Hub, event: str, channel: Channel, conn: Connection) -> None:
        self._hub = hub
        self.event = event
        self.channel = channel
        self.conn = conn
        self.dropped = False
        self._queue: deque[_Batch] = deque()
        self._queued = 0  # items in _queue, the quantity max_queue bounds
        self._queued_bytes = 0  # frame bytes in _queue, which max_bytes bounds with the transport's
        # Items at or below this seq were covered by the resume (or predate a fresh start).
        self._skip_through = -1
        self._waiter: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def held(self) -> int:
        """Bytes this connection holds: its queued frames and its transport's write buffer."""
        return self._queued_bytes + self.conn.buffered()

    def _push(self, batch: _Batch) -> bool:
        """Send or queue a batch; False when the connection was already over a budget."""
        if (
            self._waiter is not None  # the writer is idle: nothing queued, no send under way
            and batch.lo > self._skip_through
            and self.conn.send_now(batch.ws_frame)
        ):
            self._hub.stats.frames += 1
            return True
        # Counted before this batch, so one batch larger than the budget (a replay's
        # thousand items) does not drop a client that had caught up.
        held = self.held
        self._queue.append(batch)
        self._queued += len(batch.seqs)
        self._queued_bytes += len(batch.frame)
        if self._queued > self._hub.max_queue or held > self._hub.max_bytes:
            return False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    async def resume(self, resume: wire.Resume, backlog: BacklogReader) -> Outcome:
        """Send hello, then the missed items and "recovered" (or "reset"), then go live."""
        hub = self._hub
        since = resume.since
        head = await backlog(self.event, after_seq=since, limit=hub.max_gap)
        if self.dropped:
            return Outcome.DROPPED
        await self.conn.send(wire.Hello(self.event, head.epoch, head.last_seq).encode())
        through = head.last_seq
        if since is None:
            outcome = Outcome.LIVE
        else:
            reason: wire.ResetReason | None = None
            if resume.epoch != head.epoch:
                reason = wire.ResetReason.EPOCH
            elif since > head.last_seq:
                reason = wire.ResetReason.AHEAD
            elif head.last_seq - since > hub.max_gap:
                reason = wire.ResetReason.GAP
            if reason is not None:
                hub.stats.resets += 1
                await self.conn.send(wire.Reset(reason).encode())
                outcome = Outcome.RESET
            else:
                # Items past the head may be in the backlog too, but they were committed
                # after this connection was registered, so they are queued already:
                # sending them from the queue alone keeps one rule for duplicates.
                missed = [i for i in self.channel.apply(head.items) if since < i["seq"] <= through]
                for frame in _frames(missed):
                    if self.dropped:
                        return Outcome.DROPPED
                    await self.conn.send(frame)
                hub.stats.recovered += 1
                await self.conn.send(wire.Recovered(since + 1, through).encode())
                outcome = Outcome.RECOVERED
        if self.dropped:
            return Outcome.DROPPED
        self._skip_through = through
        self._writer = asyncio.create_task(self._write(), name=f"hub-writer-{self.event}")
        return outcome

    def _take(self) -> bytes | None:
        """Everything queued (up to MAX_FRAME_BYTES) as one frame, resumed seqs left out."""
        queue = self._queue
        skip = self._skip_through
        batch = queue.popleft()
        self._queued -= len(batch.seqs)
        self._queued_bytes -= len(batch.frame)
        if not queue and batch.lo > skip:
            return batch.frame  # the common case: the channel's shared bytes, no copy
        parts: list[bytes] = []
        size = 0
        while True:
            if batch.lo > skip:
                parts.extend(batch.parts)
            elif batch.hi > skip:
                parts.extend(p for s, p in zip(batch.seqs, batch.parts, strict=True) if s > skip)
            size += len(batch.frame)
            if not queue or size + len(queue[0].frame) > MAX_FRAME_BYTES:
                break
            batch = queue.popleft()
            self._queued -= len(batch.seqs)
            self._queued_bytes -= len(batch.frame)
        return wire.items_frame(parts) if parts else None

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        send = self.conn.send
        stats = self._hub.stats
        try:
            while True:
                if not queue:
                    waiter = self._waiter = loop.create_future()
                    await waiter  # resolved by _push
                    continue
                frame = self._take()
                if frame is not None:
                    await send(frame)
                    stats.frames += 1
        except ConnectionError as exc:
            # The client went away; the route's read loop sees it too and unsubscribes.
            log.debug("hub writer for %s stopped: %r", self.event, exc)

    def _clear(self) -> None:
        """Free the queue (the client resumes from the store) and stop the writer."""
        self._queue.clear()
        self._queued = self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()

    async def _stop(self) -> None:
        self._clear()
        task = self._writer
        if task is not None:
            if not task.done():
                # wait() rather than awaiting the task: a cancellation of *this* task
                # must still propagate, and the writer's own CancelledError must not.
                await asyncio.wait([task])
            # The finished task's CancelledError holds the writer's frame, which holds
            # this subscription: a cycle only the cyclic collector would free.
            self._writer = None


class _Topic:
    """One event's subscribers by channel, and the items waiting for a flush."""

    __slots__ = ("groups", "last_flush", "pending", "timer", "window")

    def __init__(self, window: float) -> None:
        # dict as an ordered set: subscribers are served in the order they came.
        self.groups: dict[Channel, dict[Subscription, None]] = {}
        self.pending: list[Publishable] = []
        self.timer: asyncio.TimerHandle | None = None
        self.last_flush = float("-inf")
        self.window = window  # the current spacing of flushes (see Hub._measure)

    def __len__(self) -> int:
        return sum(len(subs) for subs in self.groups.values())


class Hub:
    """In-process fan-out of every event's items to its subscribers (see module docs)."""

    def __init__(
        self,
        *,
        max_queue: int = MAX_QUEUE,
        max_bytes: int = MAX_BYTES,
        coalesce_window: float = COALESCE_WINDOW,
        pace: float = PACE,
        max_gap: int = MAX_GAP,
    ) -> None:
        if max_queue < 1 or max_bytes < 1 or coalesce_window < 0 or pace < 0 or max_gap < 0:
            raise ValueError(
                "max_queue and max_bytes must be positive; coalesce_window, pace and max_gap not negative"
            )
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.coalesce_window = coalesce_window
        self.pace = pace
        self.max_gap = max_gap
        self.stats = HubStats()
        self._topics: dict[str, _Topic] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- publishing ------------------------------------------------------------------

    def publish(self, event: str, items: Iterable[Publishable]) -> None:
        """Queue items for every subscriber of `event`, in seq order; never waits.

        Stored messages and changes are turned into wire items at the flush, by each
        channel's view; `publish` is a `pipeline.Publisher` as it stands.
        """
        topic = self._topics.get(event)
        if topic is None:
            return  # nobody listens; the store keeps the items for later resumes
        before = len(topic.pending)
        topic.pending.extend(items)
        if len(topic.pending) == before:
            return
        self.stats.published += len(topic.pending) - before
        if topic.timer is not None:
            return  # a flush is already due: these ride along
        loop = asyncio.get_running_loop()
        due = topic.last_flush + topic.window
        if loop.time() >= due:
            self._flush(topic, loop)
        else:
            topic.timer = loop.call_at(due, self._flush, topic, loop)

    def _flush(self, topic: _Topic, loop: asyncio.AbstractEventLoop) -> None:
        topic.timer = None
        topic.last_flush = started = loop.time()
        items, topic.pending = topic.pending, []
        if not items:
            return
        for channel, subs in list(topic.groups.items()):
            seen = channel.apply(items)
            if not seen or not subs:
                continue
            batch = _batch(seen)
            self.stats.flushes += 1
            too_slow: list[Subscription] = []
            for sub in subs:
                if not sub._push(batch):
                    too_slow.append(sub)
            for sub in too_slow:
                self._drop(sub, CLOSE_TOO_SLOW, "too slow")
        # Waking a writer scheduled its step just now, so a callback scheduled after them
        # all runs once every writer has handed this flush to its socket.
        loop.call_soon(self._measure, topic, started, loop)

    def _measure(self, topic: _Topic, started: float, loop: asyncio.AbstractEventLoop) -> None:
        took = loop.time() - started
        topic.window = self.stats.window = min(MAX_WINDOW, max(self.coalesce_window, self.pace * took))

    # -- subscribing -----------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, event: str, channel: Channel, conn: Connection) -> AsyncIterator[Subscription]:
        """Register a connection; live items buffer until `Subscription.resume` starts its writer."""
        sub = Subscription(self, event, channel, conn)
        topic = self._topics.get(event)
        if topic is None:
            topic = self._topics[event] = _Topic(self.coalesce_window)
        topic.groups.setdefault(channel, {})[sub] = None
        try:
            yield sub
        finally:
            self._remove(sub)
            await sub._stop()

    def _remove(self, sub: Subscription) -> None:
        topic = self._topics.get(sub.event)
        if topic is None:
            return
        subs = topic.groups.get(sub.channel)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del topic.groups[sub.channel]
        if not topic.groups:
            if topic.timer is not None:
                topic.timer.cancel()
            del self._topics[sub.event]

    def _drop(self, sub: Subscription, code: int, reason: str) -> None:
        if sub.dropped:
            return
        sub.dropped = True
        self._remove(sub)
        held, queued = sub.held, sub.queued
        sub._clear()  # free its backlog now, not when its handler notices
        if code == CLOSE_TOO_SLOW:
            self.stats.dropped += 1
            log.info(
                "dropping a %s client of %s: %d items, %d bytes held (budget %d items, %d bytes)",
                sub.channel.name,
                sub.event,
                queued,
                held,
                self.max_queue,
                self.max_bytes,
            )
        task = asyncio.get_running_loop().create_task(sub.conn.close(code, reason))
        # Keep a reference until done: the loop holds tasks only weakly.
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def subscribers(self, event: str) -> int:
        topic = self._topics.get(event)
        return len(topic) if topic is not None else 0

    def subscriptions(self, event: str) -> list[Subscription]:
        """The event's current subscriptions (for metrics and tests)."""
        topic = self._topics.get(event)
        if topic is None:
            return []
        return [sub for subs in topic.groups.values() for sub in subs]

    async def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutdown") -> None:
        """Close every connection (at shutdown: 1001, and clients resume elsewhere)."""
        for topic in list(self._topics.values()):
            for subs in list(topic.groups.values()):
                for sub in list(subs):
                    self._drop(sub, code, reason)
        if self._closing:
            await asyncio.wait(list(self._closing))

    # -- aiohttp ---------------------------------------------------------------------

    async def attach(
        self,
        request: web.BaseRequest,
        ws: web.WebSocketResponse,
        *,
        event: str,
        channel: Channel,
        resume: wire.Resume,
        backlog: BacklogReader,
    ) -> Outcome:
        """Serve a prepared websocket until it closes: resume, then live items.

        Client frames are read (reading is what handles pongs and the close
        handshake) and ignored: the wire has no client message yet. However it
        ends, a connection that did not close cleanly is aborted (see module docs).
        """
        conn = AiohttpConnection(ws, request.transport)
        outcome = Outcome.DROPPED
        try:
            async with self.subscribe(event, channel, conn) as sub:
                try:
                    outcome = await sub.resume(resume, backlog)
                    async for _message in ws:
                        pass
                except ConnectionError as exc:
                    log.debug("websocket for %s went away: %r", event, exc)
        finally:
            # A heartbeat timeout ends the loop above with the transport merely closing:
            # it would wait forever to flush its buffer to a peer that does not read. (A
            # connection the hub is closing, as too slow or at shutdown, is left to that
            # close, which aborts it in turn if the close frame cannot go out.)
            stuck = ws.close_code == WSCloseCode.ABNORMAL_CLOSURE or conn.buffered()
            if stuck and not conn.closing and conn.abort():
                self.stats.aborted += 1
        return outcome


def _linger_zero(transport: asyncio.BaseTransport) -> bool:
    """Make the socket's close a reset (RST), dropping the kernel's send queue; False if
    the socket is closed already. Without it the kernel keeps retrying a peer that does
    not read, holding the data (and the FIN queued behind it) for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return False
    with contextlib.suppress(OSError):  # already gone
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return True


class _WebSocketResponse(web.WebSocketResponse):
    """aiohttp's websocket response, except that a heartbeat timeout resets the connection.

    On a missing pong aiohttp only closes the transport, which then waits to flush what
    a peer that does not read will never take, or hands the kernel a FIN that stays
    queued behind its send buffer. tests/test_hub.py checks both cases.
    """

    def _pong_not_received(self) -> None:
        request = self._req
        if request is not None and request.transport is not None:
            _linger_zero(request.transport)
        super()._pong_not_received()


def websocket_response(*, heartbeat: float | None = HEARTBEAT) -> web.WebSocketResponse:
    """An aiohttp websocket response with the hub's keepalive and limits (see module docs)."""
    return _WebSocketResponse(
        heartbeat=heartbeat,
        max_msg_size=MAX_CLIENT_MESSAGE,
        compress=False,
        # How long close() waits for the client's close frame before closing anyway.
        timeout=CLOSE_TIMEOUT,
    )


class AiohttpConnection:
    """`Connection` over an aiohttp `WebSocketResponse`."""

    __slots__ = ("_transport", "_ws", "closing")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self._ws = ws
        self._transport = transport
        self.closing = False  # close() was called

    async def send(self, frame: bytes) -> None:
        # send_frame takes the bytes as they are: send_str would encode them again per client.
        await self._ws.send_frame(frame, WSMsgType.TEXT)

    def buffered(self) -> int:
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def abort(self) -> bool:
        """Reset the connection: its buffers, ours and the kernel's, are dropped at once.

        True if there was a socket to reset.
        """
        transport = self._transport
        if transport is None or not _linger_zero(transport):
            return False
        transport.abort()
        return True

    def send_now(self, ws_frame: bytes) -> bool:
        transport = self._transport
        if (
            transport is None
            or self._ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        # One write of the whole frame: it cannot interleave with aiohttp's own frames
        # (pings, close), which it also writes whole from this thread.
        transport.write(ws_frame)
        return True

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        try:
            # A client that does not read leaves no room for the close frame; aiohttp
            # would wait for the socket to drain forever.
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._ws.close(code=code, message=reason.encode())
        except ConnectionError:
            pass
        except (TimeoutError, asyncio.CancelledError) as exc:
            # Either way aiohttp falls back to transport.close(), which waits to flush a
            # buffer that a stalled client will never take (and the kernel keeps its own):
            # abort instead. A CancelledError that nobody asked for comes from aiohttp's
            # drain waiter, which all writers of a connection share: cancelling the hub's
            # writer while it waited there left it cancelled, so close() raises at once.
            log.debug("close of a stalled connection failed (%r); aborting it", exc)
            self.abort()
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
        else:
            if self.buffered():
                self.abort()
