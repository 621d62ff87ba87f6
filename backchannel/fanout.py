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
lose what was added in between), and from each event's head in the store, read after
it: older entries are history, which clients get from the store.

No hole: Redis is a wake-up, the store fills in. Two processes writing one event hold
separate write locks, so their entries may reach the stream out of seq order;
`InOrder` puts them back, and a seq that has not come within `HOLD` is read back from
the store (which has every seq below one that was published: seqs are taken under the
event's row lock, in commit order) and delivered before what follows it. That covers
an entry Redis lost (killed, restarted empty), one trimmed by `MAXLEN` before this
reader got to it, and one whose writer died between commit and XADD. A gap at the
end, with nothing after it to show it, is found by comparing each event's head in the
store with what was delivered: at once when XREAD works again after an outage, and
every `HEAD_CHECK` seconds. Reads go `FILL_CHUNK` items at a time, so a long outage's
thousands of items reach clients paced, not in one frame. An item that arrives after
it was read back is dropped, so each client gets each seq once, in order, without
reconnecting. The sender keeps an entry until Redis takes it (at most `MAX_PENDING`,
oldest dropped first); `close()` ends within seconds whatever Redis does.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
# Entries queued for the sender beyond this are dropped, oldest first (Redis down for
# long): each is one publish call, so this is minutes of a busy event.
MAX_PENDING = 10_000
# The most entries one round trip to Redis writes: after an outage the sender's queue
# drains in batches, not at one round trip per entry (which lagged the live feed by
# seconds behind a minute's worth of entries).
SEND_BATCH = 100
# The first pause before retrying a failed XADD or XREAD (see MAX_RETRY_DELAY).
RETRY_DELAY = 0.25


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


# How long a reader waits for a missing seq before it reads it back from the store.
# Instances write to the stream independently, so an event's items can arrive out of
# order by a few milliseconds; an item that never comes (Redis lost it, or its writer
# died between commit and XADD) is in the store, which holds every committed seq.
HOLD = 0.5

Delivery = tuple[str, list[Publishable], WallRules | None]


def _seq(item: Publishable) -> int:
    return int(item["seq"]) if isinstance(item, dict) else item.seq


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs `after_seq + 1 .. through_seq` of `event`: committed, not delivered here."""

    event: str
    after_seq: int
    through_seq: int


class InOrder:
    """Puts each event's items back into sequence order, and names the seqs it lacks.

    Sequence numbers are gap-free per event (messages and changes share one counter,
    taken under the event's row lock), so a reader knows what it still waits for, and
    a seq below one it has seen is committed. Entries from two instances (an ingest on
    one, a moderator's action on the other) can reach the stream out of seq order;
    delivered as they come, a client holding seq 11 that reconnects would resume after
    11 and never see 10. Nothing is skipped: a seq missing for `hold` becomes a `Gap`
    (`due`), which the caller reads back from the store and hands to `filled`; what
    follows waits until then. An item below the next seq was delivered already (read
    back, or an entry sent twice) and is dropped.

    A pure state machine: no I/O, time from the injected clock.
    """

    def __init__(self, hold: float = HOLD, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold = hold
        self.clock = clock
        self._next: dict[str, int] = {}
        self._waiting: dict[str, dict[int, tuple[Publishable, WallRules | None]]] = {}
        self._since: dict[str, float] = {}
        # The store's head per event when last asked (`behind`), not delivered yet.
        self._wanted: dict[str, int] = {}
        self._filling: set[str] = set()
        # Set by `start_at`: an event it did not name was created later, from seq 1.
        self._complete = False
        self.skipped = 0  # seqs the store did not have either (should stay 0)

    def start_at(self, heads: dict[str, int]) -> None:
        """Each event's last seq when reading starts: what follows is delivered."""
        for event, head in heads.items():
            self._next.setdefault(event, head + 1)
        self._complete = True

    def push(self, event: str, items: list[Publishable], rules: WallRules | None) -> list[Delivery]:
        """Take an entry; return the deliveries that are due now, in order."""
        waiting = self._waiting.setdefault(event, {})
        if event not in self._next and self._complete:
            self._next[event] = 1
        first = self._next.get(event)
        for i, item in enumerate(items):
            seq = _seq(item)
            if first is not None and seq < first:
                continue  # delivered already
            # The entry's rules belong after its last item (they are the state after it).
            waiting[seq] = (item, rules if i == len(items) - 1 else None)
        if event not in self._next:
            if not waiting:
                return []
            self._next[event] = min(waiting)  # no start point: the first item seen is one
        out = self._release(event)
        if waiting and event not in self._since:
            self._since[event] = self.clock()
        return out

    def behind(self, heads: dict[str, int]) -> None:
        """The store's heads after the feed was interrupted: what Redis lost up to
        them becomes a gap at once (`due`), whether or not anything follows it."""
        for event, head in heads.items():
            if event not in self._next and self._complete:
                self._next[event] = 1
            if event in self._next and head >= self._next[event]:
                self._wanted[event] = max(head, self._wanted.get(event, 0))

    def due(self) -> list[Gap]:
        """Gaps to read back now: a seq missing for `hold` (or known to be committed),
        up to the next item held. Each event has at most one gap being filled."""
        now = self.clock()
        gaps: list[Gap] = []
        for event in {*self._since, *self._wanted}:
            if event in self._filling:
                continue
            first = self._next[event]
            wanted = self._wanted.get(event, 0)
            if wanted < first:
                self._wanted.pop(event, None)
                wanted = 0
            waiting = self._waiting.get(event)
            if waiting:
                if wanted or now - self._since[event] >= self.hold:
                    gaps.append(Gap(event, first - 1, min(waiting) - 1))
            elif wanted:
                gaps.append(Gap(event, first - 1, wanted))
        self._filling.update(gap.event for gap in gaps)
        return gaps

    def filled(
        self,
        gap: Gap,
        items: Sequence[Publishable],
        rules: WallRules | None,
        through: int,
    ) -> list[Delivery]:
        """What the store holds of `gap` up to `through` (all of it, or a first part),
        in seq order: delivered with what it held up. A seq the store lacks is skipped."""
        event = gap.event
        waiting = self._waiting.setdefault(event, {})
        first = self._next[event]
        fill = [item for item in items if first <= _seq(item) <= through and _seq(item) not in waiting]
        for i, item in enumerate(fill):
            waiting[_seq(item)] = (item, rules if i == len(fill) - 1 else None)
        out = self._release(event)
        while self._next[event] <= through:  # the store lacks it too: not committed
            self.skipped += 1
            self._next[event] += 1
            out += self._release(event)
        return out

    def finished(self, gap: Gap) -> None:
        """The gap is filled, or its reading failed: `due` may name the event again."""
        self._filling.discard(gap.event)

    def _release(self, event: str) -> list[Delivery]:
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


class StoreReader(Protocol):
    """The store, as the feed reads back what Redis did not bring (see `keys.store_reader`)."""

    async def heads(self) -> dict[str, int]:
        """Every event's last seq."""

    async def read(
        self, event: str, after_seq: int, through_seq: int
    ) -> tuple[list[Publishable], WallRules | None]:
        """The event's items numbered `after_seq + 1 .. through_seq`, in seq order, and
        its wall rules if one of them is an event action (else None)."""


# Redis connection timeouts: an XREAD blocks BLOCK_MS, an XADD answers in well under a
# millisecond, so a reply that takes 5 s is from a stalled server: fail and retry.
SOCKET_TIMEOUT = 5.0
# After a failed XADD or XREAD, retry in RETRY_DELAY doubling to MAX_RETRY_DELAY: a
# Redis that restarts is read again within 2 s of its return, and a refused connect
# costs nothing.
MAX_RETRY_DELAY = 2.0
# A gap is read back and delivered FILL_CHUNK items at a time, FILL_PAUSE apart: after
# a long outage thousands of items are due, and 5,000 items/s (a fresh frame per chunk,
# the pause being at least the hub's longest flush window) keeps every client's queue
# far below the hub's bound, where one delivery of everything would drop them as slow.
FILL_CHUNK = 500
FILL_PAUSE = 0.1
# How often the filler looks for gaps whose hold is over.
FILL_TICK = HOLD / 4
# How often the filler compares the store's heads with what was delivered, without an
# outage: a seq whose writer died between commit and XADD, with nothing committed after
# it, reaches clients within this time (a few small queries per check).
HEAD_CHECK = 5.0
# close() gives its tasks this long to end, and Redis this long to close its sockets.
CLOSE_TIMEOUT = 2.0


class RedisFanout:
    """Publish to one Redis stream; read it back in each process and deliver locally.

    `start(deliver, reader)` connects, notes where the stream and the store end and
    starts the reader, the sender and the filler; `close()` stops them (after a short
    drain of what is queued), within a bounded time whatever Redis does. `start()`
    without `deliver` starts only the sender, for a process that writes messages but
    serves no clients.
    """

    def __init__(
        self,
        url: str,
        *,
        stream_prefix: str = "backchannel:",
        maxlen: int = 100_000,
        head_check: float = HEAD_CHECK,
    ) -> None:
        self.url = url
        self.head_check = head_check
        self.stream = f"{stream_prefix}events"
        self.maxlen = maxlen
        self._redis = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
        )
        self._pending: deque[dict[bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        self._resync = asyncio.Event()
        self._closing = False
        self._last_id: Any = b"0-0"  # an entry id, as redis-py returns it
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.received = 0
        self.decoded = 0  # received entries of other processes (this one's are skipped)
        self.dropped = 0  # entries never sent (the queue overflowed while Redis was away)
        self.filled = 0  # items read back from the store
        self._order = InOrder()
        self._deliver_to: Deliver | None = None
        self._reader: StoreReader | None = None
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
            # The oldest goes: readers read it back from the store when they see the
            # gap, and the newest tells them where the store's head is.
            self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("fan-out queue full (Redis unreachable?): %d entries dropped", self.dropped)
        entry = encode_entry(event, items, wall_rules)
        entry[b"origin"] = self.origin
        self._pending.append(entry)
        self._wake.set()

    async def start(self, deliver: Deliver | None = None, reader: StoreReader | None = None) -> None:
        """Start the sender, and with `deliver` the reader. A process that only writes
        (`backchannel replay`, `backchannel collect`) passes none: it serves no sockets.
        Without `reader` a missing seq is skipped after `HOLD` (tests of the feed alone)."""
        self._deliver_to = deliver
        self._reader = reader
        self._tasks = [asyncio.create_task(self._send(), name="fanout-sender")]
        if deliver is None:
            return
        # Entries before this point are history (clients get it from the store), and so
        # is every seq up to each event's head, read after it.
        last = await self._redis.xrevrange(self.stream, count=1)
        self._last_id = last[0][0] if last else b"0-0"
        if reader is not None:
            self._order.start_at(await reader.heads())
        self._tasks += [
            asyncio.create_task(self.run(deliver), name="fanout-reader"),
            asyncio.create_task(self._fill(deliver), name="fanout-filler"),
        ]

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Stop, in at most about drain_timeout + 2 * CLOSE_TIMEOUT seconds."""
        if self._tasks:
            sender = self._tasks[0]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + drain_timeout
            while self._pending and not sender.done() and loop.time() < deadline:
                await asyncio.sleep(0.01)
            if self._pending:
                log.warning("fan-out: closing with %d entries unsent", len(self._pending))
            self._closing = True
            for task in self._tasks:
                task.cancel()
            # redis-py can swallow a cancellation inside a command; the loops then see
            # _closing. A command stuck on a stalled server ends when its socket closes.
            _done, stuck = await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
            if stuck:
                await self._disconnect()
                _done, stuck = await asyncio.wait(stuck, timeout=CLOSE_TIMEOUT)
                for task in stuck:
                    log.error("fan-out: %s did not stop; abandoning it", task.get_name())
            self._tasks = []
        await self._disconnect()

    async def _disconnect(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._redis.aclose()
        except (TimeoutError, OSError, redis.RedisError) as exc:
            log.warning("fan-out: closing the Redis connections: %r", exc)

    async def _send(self) -> None:
        """Write queued entries in order, up to SEND_BATCH per round trip. An entry stays
        queued until Redis takes it (the queue is bounded by `publish`): after an outage,
        readers get what was published during it, and read back from the store whatever
        they still lack. A batch that failed halfway is sent again: readers drop the
        entries they already had."""
        pending = self._pending
        delay = RETRY_DELAY
        while not self._closing:
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(itertools.islice(pending, SEND_BATCH))
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for entry in batch:
                        pipe.xadd(self.stream, entry, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                    await pipe.execute()
            except redis.RedisError as exc:
                if delay == RETRY_DELAY:
                    log.warning("fan-out XADD failed; keeping %d entries, retrying: %r", len(pending), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if delay != RETRY_DELAY:
                log.warning("fan-out XADD works again")
                delay = RETRY_DELAY
            self.sent += len(batch)
            for entry in batch:
                if pending and pending[0] is entry:  # publish may have dropped it meanwhile
                    pending.popleft()

    async def run(self, deliver: Deliver) -> None:
        """Read every entry after the last one seen and deliver it, until closed.

        After a failed XREAD (Redis away: what it held may be gone, entries may have
        been written to a fresh stream) the filler compares the store's heads with what
        was delivered and reads back the difference.
        """
        delay = RETRY_DELAY
        failed = False
        while not self._closing:
            try:
                reply = await self._redis.xread(
                    {self.stream: self._last_id}, count=READ_COUNT, block=BLOCK_MS
                )
            except redis.RedisError as exc:
                if not failed:
                    log.warning("fan-out XREAD failed, retrying: %r", exc)
                failed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if failed:
                log.warning("fan-out XREAD works again; reading back what Redis lost")
                failed = False
                self._resync.set()
            delay = RETRY_DELAY
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

    async def _fill(self, deliver: Deliver) -> None:
        """Every FILL_TICK: read back the gaps that are due; every HEAD_CHECK, and at once
        after an outage, compare the store's heads with what was delivered first."""
        loop = asyncio.get_running_loop()
        delay = RETRY_DELAY
        checked = loop.time()
        while not self._closing:
            try:
                async with asyncio.timeout(FILL_TICK):
                    await self._resync.wait()
            except TimeoutError:
                pass
            try:
                if self._reader is not None and (
                    self._resync.is_set() or loop.time() - checked >= self.head_check
                ):
                    self._resync.clear()
                    checked = loop.time()
                    self._order.behind(await self._reader.heads())
                gaps = self._order.due()
                try:
                    for gap in gaps:
                        await self._fill_gap(gap, deliver)
                finally:
                    for gap in gaps:
                        self._order.finished(gap)
            except Exception:
                # The store is away: try again; `due` names what is still missing.
                log.exception("fan-out: reading a gap back from the store failed; retrying")
                self._resync.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            delay = RETRY_DELAY

    async def _fill_gap(self, gap: Gap, deliver: Deliver) -> None:
        if self._reader is None:  # no store to ask: deliver what follows the gap
            for ready in self._order.filled(gap, [], None, gap.through_seq):
                self._deliver(deliver, *ready)
            return
        after = gap.after_seq
        while after < gap.through_seq:
            through = min(after + FILL_CHUNK, gap.through_seq)
            items, rules = await self._reader.read(gap.event, after, through)
            self.filled += len(items)
            skipped = self._order.skipped
            for ready in self._order.filled(gap, items, rules, through):
                self._deliver(deliver, *ready)
            if self._order.skipped != skipped:
                log.error(
                    "fan-out: %s seqs %d..%d are not in the store; skipped", gap.event, after + 1, through
                )
            after = through
            if after < gap.through_seq:
                await asyncio.sleep(FILL_PAUSE)
        log.info(
            "fan-out: read seqs %d..%d of %s back from the store",
            gap.after_seq + 1,
            gap.through_seq,
            gap.event,
        )

    @staticmethod
    def _deliver(deliver: Deliver, event: str, items: list[Publishable], rules: WallRules | None) -> None:
        try:
            deliver(event, items, rules)
        except Exception:
            log.exception("fan-out: delivering items of %s failed", event)
