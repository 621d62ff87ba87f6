"""Fan-out across processes: two real app instances on one PostgreSQL database and one
Redis, in one test process (each with its own Store, hub and Redis reader).

What one instance ingests reaches the other's clients exactly once, and a client that
leaves one instance resumes on the other from the store, with no gap. As in
test_server_ws, no sleep stands in for synchronisation: to show that something did
*not* arrive, a later item that must arrive is awaited and what came before it checked.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
import redis as syncredis
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.fernet import Fernet
from support import T0, Feed, Frame, aiohttp_receive, msg

from backchannel.core import wire
from backchannel.core.models import Change, Message, Moderation, Status, StoredMessage
from backchannel.core.moderation import EventAction, WallRules
from backchannel.fanout import Gap, InOrder, RedisFanout, decode_entry, encode_entry
from backchannel.server.app import create_app, pipeline_for
from backchannel.server.keys import publish, write_lock
from backchannel.server.security import SecuritySettings
from backchannel.store import Store

EVENT = "slz"
TIMEOUT = 5.0


@dataclass
class Instance:
    app: web.Application
    fanout: RedisFanout
    port: int

    def ws_url(self, path: str, **query: object) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?{params}" if params else "")

    async def add(self, *messages: Message) -> list[StoredMessage]:
        pipeline = pipeline_for(self.app, EVENT)
        await pipeline.put_many(list(messages))
        return await pipeline.flush()


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    a, b = Store(postgres_url), Store(postgres_url)
    a.event(EVENT)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
async def instances(redis_url: str, stores: tuple[Store, Store]) -> AsyncIterator[tuple[Instance, Instance]]:
    prefix = f"backchannel-test:{uuid.uuid4().hex}:"
    secret = Fernet.generate_key().decode()  # one deployment: one secret
    async with AsyncExitStack() as stack:
        started = []
        for store in stores:
            # The store's heads checked every second rather than 5: tests wait 5 s at most.
            fanout = RedisFanout(redis_url, stream_prefix=prefix, head_check=1.0)
            app = create_app(store, security=SecuritySettings(secret=secret), fanout=fanout)
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            started.append(Instance(app, fanout, runner.addresses[0][1]))
        yield started[0], started[1]
    r = aioredis.Redis.from_url(redis_url)
    await r.delete(f"{prefix}events")
    await r.aclose()


@asynccontextmanager
async def wall(instance: Instance, **query: object) -> AsyncIterator[Feed]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(instance.ws_url(f"/ws/wall/{EVENT}", **query)) as ws,
    ):
        yield Feed(lambda: aiohttp_receive(ws))


def seq_is(seq: int) -> Callable[[Frame], bool]:
    return lambda item: item["seq"] == seq


# -- across instances --------------------------------------------------------------------


@pytest.mark.postgres
async def test_message_ingested_on_a_reaches_walls_on_both_exactly_once(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    async with wall(b) as on_b, wall(a) as on_a:
        hello_b, hello_a = await on_b.frame(), await on_a.frame()
        assert hello_b["type"] == hello_a["type"] == "hello"
        assert hello_b["epoch"] == hello_a["epoch"]  # one store, one history
        first = await a.add(msg(1), msg(2))
        last = (await a.add(msg(3)))[-1]
        for feed in (on_b, on_a):
            items = await feed.items_until(seq_is(last.seq))
            assert [i["seq"] for i in items] == [s.seq for s in first] + [last.seq]
            assert [i["text"] for i in items] == ["message 1 #slz", "message 2 #slz", "message 3 #slz"]
    # One entry per flush, read by both; A delivered its own at publish and skipped them.
    assert a.fanout.sent == 2
    assert b.fanout.sent == 0
    assert a.fanout.received == b.fanout.received == 2
    assert (a.fanout.decoded, b.fanout.decoded) == (0, 2)


@pytest.mark.postgres
async def test_client_leaving_a_resumes_on_b_from_the_store(instances: tuple[Instance, Instance]) -> None:
    a, b = instances
    async with wall(a) as on_a:
        hello = await on_a.frame()
        seen = (await a.add(msg(1)))[0]
        assert [i["seq"] for i in await on_a.items_until(seq_is(seen.seq))] == [seen.seq]
    missed = await a.add(msg(2), msg(3))  # while the client is away
    async with wall(b, epoch=hello["epoch"], since=seen.seq) as on_b:
        assert (await on_b.frame())["type"] == "hello"
        replayed = await on_b.items_until(seq_is(missed[-1].seq))
        assert [i["seq"] for i in replayed] == [s.seq for s in missed]
        recovered = await on_b.frame()
        assert recovered == {"type": "recovered", "from_seq": seen.seq + 1, "to_seq": missed[-1].seq}
        live = (await a.add(msg(4)))[0]
        assert [i["seq"] for i in await on_b.items_until(seq_is(live.seq))] == [live.seq]


@pytest.mark.postgres
async def test_wall_rules_travel_with_the_event_action(
    instances: tuple[Instance, Instance], stores: tuple[Store, Store]
) -> None:
    """A term muted on A is off B's wall from the next item: B's wall view gets the rules."""
    a, b = instances
    store_a = stores[0]
    async with wall(b) as on_b:
        await on_b.frame()
        async with write_lock(a.app, EVENT):
            change = store_a.moderate_event(EVENT, EventAction.MUTE, "secret", actor="alice")
            publish(a.app, EVENT, [change], wall_rules=store_a.wall_rules(EVENT))
        muted, shown = await a.add(msg(1, "the secret plan"), msg(2, "a public question"))
        items = await on_b.items_until(seq_is(shown.seq))
        assert items == [
            {"seq": change.seq, "kind": "moderation", "action": "mute"},
            {**items[1], "seq": shown.seq, "text": "a public question"},
        ]
        assert muted.seq not in [i["seq"] for i in items]


@pytest.mark.postgres
async def test_a_seq_that_never_reached_redis_is_read_back_from_the_store(
    instances: tuple[Instance, Instance], stores: tuple[Store, Store]
) -> None:
    """Committed, never published (Redis lost the entry, or its writer died before
    XADD): each instance reads it back from the store and delivers it before what
    follows, rather than skip it."""
    a, b = instances
    async with wall(b) as on_b, wall(a) as on_a:
        await on_b.frame(), await on_a.frame()
        first = (await a.add(msg(1)))[0]
        lost = stores[0].ingest(EVENT, [msg(2), msg(3)]).added  # in the store only
        after = (await a.add(msg(4)))[0]
        for feed in (on_b, on_a):
            items = await feed.items_until(seq_is(after.seq))
            assert [i["seq"] for i in items] == [first.seq, *(m.seq for m in lost), after.seq]
    assert a.fanout.filled == b.fanout.filled == len(lost)


@pytest.mark.postgres
async def test_a_last_seq_that_never_reached_redis_is_read_back_from_the_store(
    instances: tuple[Instance, Instance], stores: tuple[Store, Store]
) -> None:
    """Its writer died between commit and XADD, and nothing came after it: the
    instances find it by comparing the store's head with what they delivered."""
    a, b = instances
    async with wall(b) as on_b, wall(a) as on_a:
        await on_b.frame(), await on_a.frame()
        first = (await a.add(msg(1)))[0]
        lost = stores[0].ingest(EVENT, [msg(2)]).added[0]  # in the store only
        for feed in (on_b, on_a):
            assert [i["seq"] for i in await feed.items_until(seq_is(lost.seq))] == [first.seq, lost.seq]


@pytest.mark.postgres
async def test_a_reader_behind_the_trim_point_reads_the_trimmed_seqs_back(
    instances: tuple[Instance, Instance], stores: tuple[Store, Store], redis_url: str
) -> None:
    """Entries trimmed by MAXLEN before B read them: B sees the seq jump and reads
    the trimmed seqs back from the store."""
    a, b = instances
    async with wall(b) as on_b:
        await on_b.frame()
        first = (await a.add(msg(1)))[0]
        assert [i["seq"] for i in await on_b.items_until(seq_is(first.seq))] == [first.seq]
        # A writer commits three messages and publishes each, and the stream is trimmed to
        # the last one, in one transaction: no reader sees the stream in between.
        added = stores[0].ingest(EVENT, [msg(2), msg(3), msg(4)]).added
        with syncredis.Redis.from_url(redis_url) as r, r.pipeline(transaction=True) as tx:
            for stored in added:
                tx.xadd(b.fanout.stream, encode_entry(EVENT, [stored]))  # type: ignore[arg-type]
            tx.xtrim(b.fanout.stream, maxlen=1, approximate=False)
            tx.execute()
        items = await on_b.items_until(seq_is(added[-1].seq))
        assert [i["seq"] for i in items] == [m.seq for m in added]
    assert b.fanout.filled == 2


async def test_close_ends_the_reader_while_entries_flow(redis_url: str) -> None:
    """redis-py can swallow a cancellation that lands inside XREAD; close() must end
    the reader anyway, promptly (a hang here hung `serve` on SIGTERM)."""
    prefix = f"backchannel-test:{uuid.uuid4().hex}:"
    writer = RedisFanout(redis_url, stream_prefix=prefix)
    await writer.start()
    flowing = True

    async def pump() -> None:
        n = 0
        while flowing:
            n += 1
            writer.publish(EVENT, [{"seq": n, "kind": "message", "text": "x" * 200}])
            await asyncio.sleep(0.001)

    pumping = asyncio.create_task(pump())
    loop = asyncio.get_running_loop()
    try:
        for attempt in range(20):  # the cancellation lands at a different point each time
            reader = RedisFanout(redis_url, stream_prefix=prefix)
            await reader.start(lambda event, items, rules: None)
            await asyncio.sleep(0.05 + 0.5 * random.random())
            started = loop.time()
            closing = asyncio.ensure_future(reader.close())
            done, _ = await asyncio.wait([closing], timeout=TIMEOUT)
            assert done, f"close() still waiting after {TIMEOUT} s (attempt {attempt})"
            assert loop.time() - started < 1.0, "close() should not need its fallbacks here"
    finally:
        flowing = False
        await pumping
        await writer.close()
        r = aioredis.Redis.from_url(redis_url)
        await r.delete(f"{prefix}events")
        await r.aclose()


# -- the entry format --------------------------------------------------------------------


def test_entries_round_trip_store_values_and_rules() -> None:
    stored = StoredMessage(
        id=7,
        seq=12,
        message=msg(7),
        moderation=Moderation(Status.APPROVED, starred=True, pinned=True),
        repost_count=3,
        is_question=True,
        copy_of="https://x.com/i/status/1",
        copy_count=2,
    )
    hidden = Change(13, "hide", "bob", T0, message=stored, action_id="x1")
    action = Change(14, "block", "bob", T0, subject="x:troll")
    rules = WallRules(premoderation=True, blocked=frozenset({("x", "troll")}), muted=("secret",))
    item = {"seq": 15, "kind": "message", "id": 9}
    event, values, got_rules = decode_entry(encode_entry(EVENT, [stored, hidden, action, item], rules))
    assert (event, values, got_rules) == (EVENT, [stored, hidden, action, item], rules)
    # The hub's views give the same items for what was read back.
    assert [wire.to_item(v) for v in values] == [wire.to_item(v) for v in (stored, hidden, action, item)]
    assert decode_entry(encode_entry(EVENT, [stored]))[2] is None


def test_items_from_two_writers_are_delivered_in_sequence_order() -> None:
    now = [0.0]
    order = InOrder(hold=0.5, clock=lambda: now[0])
    items = {n: {"seq": n, "kind": "message"} for n in range(1, 9)}
    assert order.push("slz", [items[1]], None) == [("slz", [items[1]], None)]
    # Seq 3 arrives before 2 (another instance wrote 2): held back, then both in order.
    assert order.push("slz", [items[3]], None) == []
    assert order.push("slz", [items[2]], None) == [("slz", [items[2], items[3]], None)]
    # Seq 4 never comes (Redis lost it): 5 waits `hold`, then 4 is read back from the store.
    assert order.push("slz", [items[5]], None) == []
    now[0] = 0.4
    assert order.due() == []
    now[0] = 0.6
    gap = Gap("slz", 3, 4)
    assert order.due() == [gap]
    assert order.due() == []  # one read per gap at a time
    assert order.push("slz", [items[6]], None) == []  # what follows waits for the gap
    assert order.filled(gap, [items[4]], None, 4) == [("slz", [items[4], items[5], items[6]], None)]
    order.finished(gap)
    # The entry that was lost arrives after all: delivered already, so dropped.
    assert order.push("slz", [items[4]], None) == []
    assert order.push("slz", [items[7]], None) == [("slz", [items[7]], None)]
    # Events are independent.
    assert order.push("other", [{"seq": 40}], None) == [("other", [{"seq": 40}], None)]
    assert order.skipped == 0


def test_the_store_head_after_an_outage_fills_a_gap_nothing_follows() -> None:
    now = [0.0]
    order = InOrder(hold=0.5, clock=lambda: now[0])
    order.start_at({"slz": 10})  # clients that came since were told seq 10 is the head
    item = {n: {"seq": n, "kind": "message"} for n in range(1, 20)}
    assert order.push("slz", [item[9]], None) == []  # history
    assert order.push("slz", [item[11]], None) == [("slz", [item[11]], None)]
    # Redis lost 12 and 13, and nothing came after them: only the store knows.
    order.behind({"slz": 13, "new": 2})
    # At once: the store's head says they are committed.
    assert sorted(order.due(), key=lambda g: g.event) == [Gap("new", 0, 2), Gap("slz", 11, 13)]
    # Read back in parts; an entry arriving meanwhile waits for the rest.
    gap = Gap("slz", 11, 13)
    assert order.filled(gap, [item[12]], None, 12) == [("slz", [item[12]], None)]
    assert order.push("slz", [item[14]], None) == []
    assert order.filled(gap, [item[13]], None, 13) == [("slz", [item[13], item[14]], None)]
    order.finished(gap)
    assert order.due() == []
    # A seq the store does not have either is skipped (and counted), not waited for.
    assert order.filled(Gap("new", 0, 2), [item[2]], None, 2) == [("new", [item[2]], None)]
    assert order.skipped == 1
