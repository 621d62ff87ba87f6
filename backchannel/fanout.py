"""Live items across processes: one Redis stream that every web process reads.

The store is the truth (DESIGN.md, "Delivery"): a client that reconnects, to this
process or another, resumes from the store by seq. Redis carries only the live news,
so every process's hub can push what any process committed.

Design
------
One stream, `{prefix}events`, for every event; an entry is one publish call: the
event's name and its items, `XADD … MAXLEN ~ maxlen`. The items travel as the store
values they are (stored messages and changes, JSON), not as wire items: a channel's
view needs the message itself (the wall's `WallRules.visible` reads its status,
author and text), so each process rebuilds the values and hands them to its own hub,
whose channels apply their views exactly as for a local publish. The wall rules an
event action brings travel with its entry, so every process's wall view changes at
the same item.

The publishing process delivers its own items at once, without the round trip: each
entry names the process that wrote it, and a reader skips its own entries unread.
Every other process decodes the entry and delivers it. Local and remote items pass
through the same in-order buffer (`InOrder`), so each local client gets each item
once, in seq order, wherever it was committed.

`publish` never waits (the server calls it under the event's write lock): it appends
to a queue that one sender task drains in order, so entries enter the stream in the
order publish was called, which is seq order per event within a process.

Each process reads with `XREAD BLOCK` from the last id it has seen. It starts from the
stream's last entry when the app starts (not from "$" at its first read, which would
lose what was added in between): older entries are history, which clients get from
the store. After a Redis outage the reader continues from its last id, so it loses
nothing that `MAXLEN` kept. Live push stays at most once: an entry the sender could
not write after a few tries is dropped (logged); clients get it on their next resume.

Two processes writing one event hold separate write locks, so their entries may reach
the stream out of seq order; `InOrder` puts them back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as redis

from backchannel.core.models import Change, Message, Moderation, Network, Status, StoredMessage
from backchannel.core.moderation import WallRules
from backchannel.core.record import format_time, parse_time
from backchannel.core.wire import Publishable

log = logging.getLogger(__name__)

# What a process does with what it reads: the server updates its stats and wall
# rules, then calls its hub's publish (`keys.deliver`).
Deliver = Callable[[str, list[Publishable], WallRules | None], None]

# How long one XREAD blocks; a shorter block only costs an idle round trip.
BLOCK_MS = 250  # short, so items held back for order are released on time
# The most entries one XREAD returns (one entry per publish call).
READ_COUNT = 500
# Entries queued for the sender beyond this are dropped (Redis down for long).
MAX_PENDING = 10_000
# Tries per entry before the sender drops it; and the pause between tries.
SEND_TRIES = 5
RETRY_DELAY = 0.5


# -- values as JSON ------------------------------------------------------------------------

# Dict lookups: calling an Enum by value costs several times as much, once per message read.
_NETWORKS = {n.value: n for n in Network}
_STATUSES = {s.value: s for s in Status}


# A message and a stored message travel as JSON arrays in their fields' order: a reader
# decodes each of a busy event's messages, and positional fields build the dataclasses
# in a fraction of the time of keyed ones. `raw` is left out: it is large, and no
# channel view reads it.


def _message(m: Message) -> list[Any]:
    return [
        m.network,  # orjson writes an enum as its value
        m.network_id,
        m.uri,
        m.author_handle,
        m.author_name,
        m.text,
        format_time(m.created_at),
        m.event,
        m.permalink,
        m.reply_to,
        m.repost_of,
        m.hashtags,
        m.mentions,
        m.links,
    ]


def _message_from(f: list[Any]) -> Message:
    (
        network,
        network_id,
        uri,
        handle,
        name,
        text,
        created,
        event,
        permalink,
        reply_to,
        repost_of,
        tags,
        mentions,
        links,
    ) = f
    return Message(
        _NETWORKS[network],
        network_id,
        uri,
        handle,
        name,
        text,
        parse_time(created),
        event,
        permalink,
        reply_to,
        repost_of,
        tuple(tags),
        tuple(mentions),
        tuple(links),
    )


def _stored(s: StoredMessage) -> list[Any]:
    mod = s.moderation
    return [
        s.id,
        s.seq,
        _message(s.message),
        [mod.status, mod.starred, mod.answered, mod.pinned],
        s.repost_count,
        s.is_question,
        s.copy_of,
        s.copy_count,
        s.deleted,
    ]


@functools.lru_cache(maxsize=64)
def _moderation(status: str, starred: bool, answered: bool, pinned: bool) -> Moderation:
    # 24 valid values, all immutable: shared rather than built per message.
    return Moderation(_STATUSES[status], starred, answered, pinned)


def _stored_from(f: list[Any]) -> StoredMessage:
    id_, seq, message, moderation, repost_count, is_question, copy_of, copy_count, deleted = f
    return StoredMessage(
        id_,
        seq,
        _message_from(message),
        _moderation(*moderation),
        repost_count,
        is_question,
        copy_of,
        copy_count,
        deleted,
    )


def encode_value(value: Publishable) -> dict[str, Any]:
    if isinstance(value, StoredMessage):
        return {"t": "m", "m": _stored(value)}
    if isinstance(value, Change):
        return {
            "t": "c",
            "seq": value.seq,
            "action": value.action,
            "actor": value.actor,
            "created_at": format_time(value.created_at),
            "message": None if value.message is None else _stored(value.message),
            "subject": value.subject,
            "action_id": value.action_id,
            "replayed": value.replayed,
        }
    return {"t": "i", "item": value}  # a prebuilt wire item (benchmarks, tools)


def decode_value(d: dict[str, Any]) -> Publishable:
    match d["t"]:
        case "m":
            return _stored_from(d["m"])
        case "c":
            return Change(
                seq=d["seq"],
                action=d["action"],
                actor=d["actor"],
                created_at=parse_time(d["created_at"]),
                message=None if d["message"] is None else _stored_from(d["message"]),
                subject=d["subject"],
                action_id=d["action_id"],
                replayed=d["replayed"],
            )
        case "i":
            item: dict[str, Any] = d["item"]
            return item
    raise ValueError(f"unknown value type {d['t']!r}")


def encode_rules(rules: WallRules) -> dict[str, Any]:
    return {
        "premoderation": rules.premoderation,
        "blocked": sorted(rules.blocked),
        "muted": rules.muted,
    }


def decode_rules(d: dict[str, Any]) -> WallRules:
    return WallRules(
        premoderation=d["premoderation"],
        blocked=frozenset((network, handle) for network, handle in d["blocked"]),
        muted=tuple(d["muted"]),
    )


def encode_entry(
    event: str, items: Sequence[Publishable], wall_rules: WallRules | None = None
) -> dict[bytes, bytes]:
    body: dict[str, Any] = {"items": [encode_value(v) for v in items]}
    if wall_rules is not None:
        body["wall_rules"] = encode_rules(wall_rules)
    return {b"event": event.encode(), b"body": orjson.dumps(body)}


def decode_entry(fields: dict[bytes, bytes]) -> tuple[str, list[Publishable], WallRules | None]:
    body = orjson.loads(fields[b"body"])
    rules = body.get("wall_rules")
    return (
        fields[b"event"].decode(),
        [decode_value(v) for v in body["items"]],
        None if rules is None else decode_rules(rules),
    )


# -- the feed ------------------------------------------------------------------------------


# How long a reader waits for a missing seq before it delivers what came after it.
# Instances write to the stream independently, so an event's items can arrive out of
# order by a few milliseconds; an item that never comes (its writer died between commit
# and XADD) must not hold the feed up: clients get it on their next resume.
HOLD = 0.5


def _seq(item: Publishable) -> int:
    return int(item["seq"]) if isinstance(item, dict) else item.seq


class InOrder:
    """Puts each event's items back into sequence order before delivery.

    Sequence numbers are gap-free per event (messages and changes share one counter),
    so a reader knows what it still waits for. Entries from two instances (an ingest
    on one, a moderator's action on the other) can reach the stream out of seq order;
    delivered as they come, a client holding seq 11 that reconnects would resume
    after 11 and never see 10.
    """

    def __init__(self, hold: float = HOLD, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold = hold
        self.clock = clock
        self._next: dict[str, int] = {}
        self._waiting: dict[str, dict[int, tuple[Publishable, WallRules | None]]] = {}
        self._since: dict[str, float] = {}

    def push(
        self, event: str, items: list[Publishable], rules: WallRules | None
    ) -> list[tuple[str, list[Publishable], WallRules | None]]:
        """Take an entry; return the deliveries that are due now, in order."""
        waiting = self._waiting.setdefault(event, {})
        late: list[Publishable] = []
        for i, item in enumerate(items):
            # The entry's rules belong after its last item (they are the state after it).
            item_rules = rules if i == len(items) - 1 else None
            seq = _seq(item)
            if event in self._next and seq < self._next[event]:
                late.append(item)  # already passed: deliver at once, nothing to wait for
            else:
                waiting[seq] = (item, item_rules)
        if event not in self._next and waiting:
            self._next[event] = min(waiting)
        out = [(event, late, rules)] if late else []
        out += self._release(event)
        if waiting and event not in self._since:
            self._since[event] = self.clock()
        return out

    def due(self) -> list[tuple[str, list[Publishable], WallRules | None]]:
        """Deliveries whose missing predecessor has been waited for long enough."""
        out: list[tuple[str, list[Publishable], WallRules | None]] = []
        now = self.clock()
        for event, since in list(self._since.items()):
            if now - since >= self.hold and self._waiting.get(event):
                self._next[event] = min(self._waiting[event])
                out += self._release(event)
        return out

    def _release(self, event: str) -> list[tuple[str, list[Publishable], WallRules | None]]:
        waiting = self._waiting[event]
        released: list[Publishable] = []
        rules: WallRules | None = None
        while self._next[event] in waiting:
            item, item_rules = waiting.pop(self._next[event])
            released.append(item)
            rules = item_rules or rules
            self._next[event] += 1
        if not waiting:
            self._since.pop(event, None)
        elif released:
            self._since[event] = self.clock()
        return [(event, released, rules)] if released else []


class RedisFanout:
    """Publish to one Redis stream; read it back in each process and deliver locally.

    `start(deliver)` connects, notes where the stream ends and starts the reader and
    the sender; `close()` stops them (after a short drain of what is queued).
    `start()` without `deliver` starts only the sender, for a process that writes
    messages but serves no clients.
    """

    def __init__(self, url: str, *, stream_prefix: str = "backchannel:", maxlen: int = 100_000) -> None:
        self.url = url
        self.stream = f"{stream_prefix}events"
        self.maxlen = maxlen
        self._redis = redis.Redis.from_url(url)
        self._pending: deque[dict[bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        self._last_id: Any = b"0-0"  # an entry id, as redis-py returns it
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.received = 0
        self.decoded = 0  # received entries of other processes (this one's are skipped)
        self.dropped = 0
        self._order = InOrder()
        self._deliver_to: Deliver | None = None
        # Names this process's entries, which its reader skips (delivered at publish).
        self.origin = uuid.uuid4().hex.encode()

    def publish(
        self, event: str, items: Sequence[Publishable], *, wall_rules: WallRules | None = None
    ) -> None:
        """Deliver to this process and queue one entry for the stream (never waits); the
        sender writes entries in the order they were published."""
        if not items and wall_rules is None:
            return
        if self._deliver_to is not None:
            for ready in self._order.push(event, list(items), wall_rules):
                self._deliver(self._deliver_to, *ready)
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            log.error("fan-out queue full (Redis unreachable?): dropping a publish for %s", event)
            return
        entry = encode_entry(event, items, wall_rules)
        entry[b"origin"] = self.origin
        self._pending.append(entry)
        self._wake.set()

    async def start(self, deliver: Deliver | None = None) -> None:
        """Start the sender, and with `deliver` the reader. A process that only writes
        (`backchannel replay`, `backchannel collect`) passes none: it serves no sockets."""
        self._deliver_to = deliver
        if deliver is None:
            self._tasks = [asyncio.create_task(self._send(), name="fanout-sender")]
            return
        # Entries before this point are history (clients get it from the store).
        last = await self._redis.xrevrange(self.stream, count=1)
        self._last_id = last[0][0] if last else b"0-0"
        self._tasks = [
            asyncio.create_task(self._send(), name="fanout-sender"),
            asyncio.create_task(self.run(deliver), name="fanout-reader"),
        ]

    async def close(self, drain_timeout: float = 2.0) -> None:
        if self._tasks:
            sender = self._tasks[0]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + drain_timeout
            while self._pending and not sender.done() and loop.time() < deadline:
                await asyncio.sleep(0.01)
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks)
            self._tasks = []
        await self._redis.aclose()

    async def _send(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            entry = pending[0]
            for attempt in range(1, SEND_TRIES + 1):
                try:
                    await self._redis.xadd(self.stream, entry, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                    self.sent += 1
                    break
                except redis.RedisError as exc:
                    log.warning("fan-out XADD failed (try %d of %d): %r", attempt, SEND_TRIES, exc)
                    if attempt < SEND_TRIES:
                        await asyncio.sleep(RETRY_DELAY * attempt)
            else:
                self.dropped += 1
                log.error("fan-out: dropping an entry for %s after %d tries", entry[b"event"], SEND_TRIES)
            pending.popleft()

    async def run(self, deliver: Deliver) -> None:
        """Read every entry after the last one seen and deliver it, until cancelled."""
        delay = RETRY_DELAY
        while True:
            try:
                reply = await self._redis.xread(
                    {self.stream: self._last_id}, count=READ_COUNT, block=BLOCK_MS
                )
            except redis.RedisError as exc:
                log.warning("fan-out XREAD failed, retrying in %.1f s: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = RETRY_DELAY
            for due in self._order.due():
                self._deliver(deliver, *due)
            # RESP2 answers [[stream, entries]], RESP3 {stream: entries}.
            for _stream, entries in reply.items() if isinstance(reply, dict) else reply or ():
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    if fields.get(b"origin") == self.origin:  # type: ignore[union-attr]
                        self.received += 1
                        continue  # delivered when it was published
                    try:
                        event, items, rules = decode_entry(fields)  # type: ignore[arg-type]
                    except (KeyError, TypeError, ValueError) as exc:
                        log.error("fan-out: skipping malformed entry %r: %r", entry_id, exc)
                        continue
                    self.received += 1
                    self.decoded += 1
                    for ready in self._order.push(event, items, rules):
                        self._deliver(deliver, *ready)

    @staticmethod
    def _deliver(deliver: Deliver, event: str, items: list[Publishable], rules: WallRules | None) -> None:
        try:
            deliver(event, items, rules)
        except Exception:
            log.exception("fan-out: delivering items of %s failed", event)
