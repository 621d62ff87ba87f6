"""The hub over real websockets: an aiohttp server on a free port, a real SQLite store
behind the resume path, and real clients (websockets' and aiohttp's).

No sleep is used to synchronise: tests wait on conditions with timeouts counted in
`MS`, which BACKCHANNEL_TEST_TIMEOUT_FACTOR scales for slow machines.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from support import T0, established, how_it_ended, msg, stalled_websocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backchannel.core import wire
from backchannel.core.models import Change, Message, Moderation, Status, StoredMessage
from backchannel.core.moderation import Action, EventAction, WallRules
from backchannel.errors import PayloadError
from backchannel.hub import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_SLOW,
    DASHBOARD,
    MAX_CLIENT_MESSAGE,
    Backlog,
    BacklogReader,
    Hub,
    Outcome,
    WallChannel,
    websocket_response,
)
from backchannel.store import Store

# websockets' tests/utils.py habit: one time unit, scaled on slow machines.
MS = 0.001 * float(os.environ.get("BACKCHANNEL_TEST_TIMEOUT_FACTOR", "1"))
# How long any expected frame may take to arrive; generous, since passing tests never wait it out.
TIMEOUT = 5000 * MS

EVENT = "slz"


# -- the server under test ---------------------------------------------------------------

STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
HEARTBEAT = web.AppKey("heartbeat", float)
WALLS = web.AppKey("walls", dict[str, WallChannel])
# Each websocket handler puts its outcome here when it returns: tests wait on it.
DONE = web.AppKey("done", asyncio.Queue[Outcome | None])


def store_backlog(store: Store) -> BacklogReader:
    """The resume path on the store, as the server will do it: the head, then the items.

    It reads every item whatever the channel: the hub must apply the channel's view.
    """

    def read(event: str, after_seq: int | None, limit: int) -> Backlog:
        info = store.event(event, create=False)
        if after_seq is None or not 0 <= info.last_seq - after_seq <= limit:
            return Backlog(info.epoch, info.last_seq)
        return Backlog(info.epoch, info.last_seq, store.backlog(event, after_seq, limit=limit))

    async def backlog(event: str, *, after_seq: int | None, limit: int) -> Backlog:
        return await asyncio.to_thread(read, event, after_seq, limit)

    return backlog


async def websocket_route(request: web.Request) -> web.StreamResponse:
    app = request.app
    event = request.match_info["event"]
    channel = app[WALLS][event] if request.match_info["channel"] == "wall" else DASHBOARD
    try:
        resume = wire.parse_resume(request.query)
    except PayloadError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    ws = websocket_response(heartbeat=app[HEARTBEAT])
    await ws.prepare(request)
    outcome: Outcome | None = None
    try:
        outcome = await app[HUB].attach(
            request,
            ws,
            event=event,
            channel=channel,
            resume=resume,
            backlog=store_backlog(app[STORE]),
        )
    finally:
        app[DONE].put_nowait(outcome)  # None: the handler was cancelled
    return ws


def make_app(store: Store, hub: Hub, heartbeat: float) -> web.Application:
    app = web.Application()
    app[STORE] = store
    app[HUB] = hub
    app[HEARTBEAT] = heartbeat
    app[WALLS] = {EVENT: WallChannel(store.wall_rules(EVENT))}
    app[DONE] = asyncio.Queue()

    async def close_websockets(app: web.Application) -> None:
        await app[HUB].close()

    app.on_shutdown.append(close_websockets)
    app.router.add_get("/{channel}/{event}", websocket_route)
    return app


@dataclass
class Served:
    store: Store
    hub: Hub
    runner: web.AppRunner
    port: int

    @property
    def done(self) -> asyncio.Queue[Outcome | None]:
        return self.runner.app[DONE]

    async def stop(self) -> None:
        """What SIGTERM does: on_shutdown closes the websockets (1001), then the server stops."""
        await self.runner.cleanup()

    def url(self, channel: str = "dashboard", *, epoch: str | None = None, since: int | None = None) -> str:
        query = "&".join(f"{k}={v}" for k, v in wire.resume_query(epoch, since).items())
        base = f"ws://127.0.0.1:{self.port}/{channel}/{EVENT}"
        return f"{base}?{query}" if query else base

    async def add(self, messages: list[Message]) -> list[StoredMessage]:
        """Ingest as the pipeline does (commit in a thread, then publish what was new)."""
        added = (await asyncio.to_thread(self.store.ingest, EVENT, messages)).added
        self.hub.publish(EVENT, added)
        return added


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """A SQLite store only (this overrides conftest's, which also runs PostgreSQL)."""
    s = Store(sqlite_url)
    s.event(EVENT)
    yield s
    s.close()


@pytest.fixture
async def serve(store: Store) -> AsyncIterator[Serve]:
    """Start a hub server on a free port; calling it again is a restart on the same store."""
    async with AsyncExitStack() as stack:

        async def start(hub: Hub | None = None, heartbeat: float = 20.0) -> Served:
            # AppRunner as in production: aiohttp's TestServer would cancel handlers on disconnect.
            runner = web.AppRunner(make_app(store, hub := hub or Hub(), heartbeat))
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            return Served(store, hub, runner, port)

        yield start


# -- a test client -----------------------------------------------------------------------


@dataclass
class Watcher:
    """A dashboard stand-in: keeps every frame and item, and where it would resume from.

    `position` is what a client sends as `since`: None before its first hello, then
    hello's last_seq on a fresh start or a reset, raised by items and "recovered".
    """

    position: int | None = None
    epoch: str | None = None
    frames: list[wire.Frame] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    items: list[wire.Item] = field(default_factory=list)
    close_code: int | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def seqs(self) -> list[int]:
        return [item["seq"] for item in self.items]

    def of(self, kind: type[Any]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    def url(self, served: Served, channel: str = "dashboard") -> str:
        return served.url(channel, epoch=self.epoch, since=self.position)

    def _take(self, frame: wire.Frame) -> None:
        match frame:
            case wire.Hello(epoch=epoch, last_seq=last_seq):
                if self.position is None:
                    self.position = last_seq
                self.epoch = epoch
            case wire.Reset():
                self.position = self.of(wire.Hello)[-1].last_seq
            case wire.Recovered(to_seq=to_seq):
                self.position = max(self.position or 0, to_seq)
            case wire.Items(items=items):
                self.items.extend(items)
                self.position = max(self.position or 0, items[-1]["seq"])

    async def read(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                assert isinstance(data, str), "frames are text"
                frame = wire.parse_frame(data)
                async with self.changed:
                    self.raw.append(data)
                    self.frames.append(frame)
                    self._take(frame)
                    self.changed.notify_all()
        except ConnectionClosed:
            pass
        async with self.changed:
            self.close_code = ws.close_code
            self.changed.notify_all()

    async def until(self, predicate: Callable[[Watcher], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    async def until_seq(self, seq: int, timeout: float = TIMEOUT) -> None:
        await self.until(lambda w: (w.position or 0) >= seq, timeout)


@asynccontextmanager
async def watching(url: str, watcher: Watcher | None = None, **kwargs: Any) -> AsyncIterator[Watcher]:
    """Connect, read in the background, and wait for hello (the hub has registered us)."""
    watcher = watcher or Watcher()
    before = len(watcher.of(wire.Hello))
    watcher.close_code = None
    # close_timeout: a test's client leaves quickly even when the server has stopped reading.
    async with connect(url, close_timeout=1000 * MS, **kwargs) as ws:
        reader = asyncio.create_task(watcher.read(ws))
        try:
            await watcher.until(lambda w: len(w.of(wire.Hello)) > before or w.close_code is not None)
            yield watcher
        finally:
            await ws.close()
            await reader


def seqs_of(stored: list[StoredMessage]) -> list[int]:
    return [m.seq for m in stored]


# -- the wire format (pure) --------------------------------------------------------------


def stored(seq: int, status: Status = Status.NEW, text: str | None = None) -> StoredMessage:
    return StoredMessage(id=seq + 100, seq=seq, message=msg(seq, text), moderation=Moderation(status))


def change(seq: int, action: Action | EventAction, message: StoredMessage | None = None) -> Change:
    subject = None if message is not None else "x:spammer"
    return Change(seq, action.value, "alice", T0, message=message, subject=subject)


def test_message_item_has_what_a_dashboard_needs() -> None:
    item = wire.message_item(replace(stored(7), repost_count=3))
    assert item == {
        "seq": 7,
        "kind": "message",
        "id": 107,
        "network": "x",
        "uri": "https://x.com/i/status/7",
        "author_handle": "user7",
        "author_name": "User 7",
        "text": "message 7 #slz",
        "created_at": "2010-06-22T12:00:07Z",
        "permalink": None,
        "reply_to": None,
        "repost_of": None,
        "hashtags": ["slz"],
        "mentions": [],
        "links": [],
        "status": "new",
        "starred": False,
        "answered": False,
        "pinned": False,
        "repost_count": 3,
        "is_question": False,
        "copy_of": None,
        "copy_count": 0,
    }
    assert wire.change_item(change(8, Action.HIDE, stored(7, Status.HIDDEN))) == {
        "seq": 8,
        "kind": "moderation",
        "action": "hide",
        "actor": "alice",
        "created_at": "2010-06-22T12:00:00Z",
        "subject": None,
        "message": wire.message_item(stored(7, Status.HIDDEN)),
    }


def test_frames_round_trip() -> None:
    items = (wire.message_item(stored(1)), wire.change_item(change(2, Action.HIDE, stored(1, Status.HIDDEN))))
    frames: list[wire.Frame] = [
        wire.Hello(EVENT, "e1", 41),
        wire.Items(items),
        wire.Recovered(3, 41),
        wire.Reset(wire.ResetReason.GAP),
        wire.Ping(),
    ]
    for frame in frames:
        assert wire.parse_frame(frame.encode()) == frame
    assert orjson.loads(wire.Items(items).encode()) == {"type": "items", "items": list(items)}
    for bad in (b"[]", b"{", b'{"type":"nope"}', b'{"type":"hello"}', b'{"type":"items","items":[1]}'):
        with pytest.raises(PayloadError):
            wire.parse_frame(bad)


def test_parse_resume() -> None:
    assert wire.parse_resume({}) == wire.Resume()
    assert wire.parse_resume({"epoch": "e1", "since": "42"}) == wire.Resume("e1", 42)
    assert wire.parse_resume(wire.resume_query("e1", 0)) == wire.Resume("e1", 0)
    for bad in ("-1", "1e3", " 4", "4.0", "٣", "9" * 19):
        with pytest.raises(PayloadError):
            wire.parse_resume({"since": bad})


def test_wall_sees_what_the_wall_rules_allow_and_no_more() -> None:
    wall = WallChannel(WallRules(premoderation=True))
    new, approved = stored(1, text="SECRET"), stored(2, Status.APPROVED)
    hide = change(3, Action.HIDE, stored(2, Status.HIDDEN, text="SECRET"))
    approve = change(4, Action.APPROVE, approved)
    block = change(5, EventAction.BLOCK)
    assert wall.apply([new, approved, hide, approve, block, wire.message_item(new)]) == [
        wire.wall_message_item(approved),
        {"seq": 3, "kind": "moderation", "action": "hide", "retract": 102},
        {
            "seq": 4,
            "kind": "moderation",
            "action": "approve",
            "created_at": "2010-06-22T12:00:00Z",
            "message": wire.wall_message_item(approved),
        },
        {"seq": 5, "kind": "moderation", "action": "block"},
    ]
    assert "SECRET" not in str(wall.apply([new, hide]))
    # Without premoderation a new message is shown, unless its author is blocked.
    wall.rules = WallRules(blocked=frozenset({("x", "user1")}))
    assert wall.apply([new, stored(3)]) == [wire.wall_message_item(stored(3))]
    assert DASHBOARD.apply([new, hide, wire.message_item(new)]) == [
        wire.message_item(new),
        wire.change_item(hide),
        wire.message_item(new),
    ]


# -- live delivery -----------------------------------------------------------------------


async def test_live_delivery_to_several_clients(serve: Serve) -> None:
    served = await serve()
    async with AsyncExitStack() as stack:
        watchers = [await stack.enter_async_context(watching(served.url())) for _ in range(5)]
        assert served.hub.subscribers(EVENT) == 5
        added: list[StoredMessage] = []
        for start in range(1, 51, 5):
            added += await served.add([msg(i) for i in range(start, start + 5)])
        for w in watchers:
            await w.until_seq(50)
            assert w.of(wire.Hello) == [wire.Hello(EVENT, served.store.event(EVENT).epoch, 0)]
            assert w.seqs == seqs_of(added) == list(range(1, 51))
            assert w.items[0] == wire.message_item(added[0])
            assert not w.of(wire.Recovered) and not w.of(wire.Reset)
    for _ in watchers:
        assert await asyncio.wait_for(served.done.get(), TIMEOUT) is Outcome.LIVE
    assert served.hub.subscribers(EVENT) == 0


async def test_coalescing_sends_a_burst_in_fewer_frames(serve: Serve) -> None:
    # A long window makes the split deterministic: the first publish after a quiet
    # period goes out at once, everything after it waits for the window together.
    served = await serve(Hub(coalesce_window=200 * MS))
    async with watching(served.url()) as w:
        added = (await asyncio.to_thread(served.store.ingest, EVENT, [msg(i) for i in range(1, 101)])).added
        for one in added:
            served.hub.publish(EVENT, [one])
        await w.until_seq(100)
        assert [len(f.items) for f in w.of(wire.Items)] == [1, 99]
        assert w.seqs == list(range(1, 101))
        assert served.hub.stats.flushes == 2


async def test_frames_written_straight_to_sockets_keep_every_length_form(serve: Serve) -> None:
    # Live batches go out as prebuilt websocket frames: payload lengths under 126, under
    # 65,536 and beyond take the three header forms of RFC 6455; a real client must
    # read each one whole.
    served = await serve(Hub(coalesce_window=0))
    async with watching(served.url()) as w:
        texts = ["short", "m" * 2_000, "l" * 80_000]
        for i, text in enumerate(texts, 1):
            served.hub.publish(EVENT, [{"seq": i, "kind": "message", "text": text}])
            await w.until_seq(i)
        assert [item["text"] for item in w.items] == texts
        sizes = [len(raw.encode()) for raw in w.raw[1:]]
        assert sizes[0] < 126 < sizes[1] < 65_536 < sizes[2]


async def test_client_frames_are_limited_to_64_kib(serve: Serve) -> None:
    served = await serve()
    async with aiohttp.ClientSession() as session, session.ws_connect(served.url()) as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_str("x" * (MAX_CLIENT_MESSAGE + 1))
        message = await ws.receive(timeout=TIMEOUT)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_half_open_connection_is_found_by_heartbeat(serve: Serve) -> None:
    # Pings every 100 ms. With autoping off, aiohttp's client hands pings to us and we
    # never answer: to the server that is a half-open connection.
    served = await serve(heartbeat=100 * MS)
    async with aiohttp.ClientSession() as session, session.ws_connect(served.url(), autoping=False) as ws:
        assert (await ws.receive_json())["type"] == "hello"
        assert await asyncio.wait_for(served.done.get(), TIMEOUT) is Outcome.LIVE
        assert served.hub.subscribers(EVENT) == 0
        assert ws.closed or (await ws.receive(timeout=TIMEOUT)).type is aiohttp.WSMsgType.PING


# -- resume ------------------------------------------------------------------------------


async def test_same_epoch_replays_exactly_other_epoch_resets(serve: Serve) -> None:
    served = await serve()
    added = await served.add([msg(i) for i in range(1, 31)])
    epoch = served.store.event(EVENT).epoch

    async with watching(served.url(epoch=epoch, since=10)) as w:
        await w.until(lambda w: bool(w.of(wire.Recovered)))
        assert w.frames[0] == wire.Hello(EVENT, epoch, 30)
        assert w.items == [wire.message_item(m) for m in added[10:]]
        assert w.of(wire.Recovered) == [wire.Recovered(11, 30)]
        assert isinstance(w.frames[-1], wire.Recovered)
        await served.add([msg(31)])  # then live, on the same connection
        await w.until_seq(31)
        assert w.seqs == list(range(11, 32))

    async with watching(served.url(epoch=epoch, since=31)) as w:  # missed nothing
        await w.until(lambda w: bool(w.of(wire.Recovered)))
        assert w.of(wire.Recovered) == [wire.Recovered(32, 31)] and not w.items

    for n, other in enumerate(("another-epoch", None)):
        async with watching(served.url(epoch=other, since=10)) as w:
            await w.until(lambda w: bool(w.of(wire.Reset)))
            assert w.frames == [wire.Hello(EVENT, epoch, 31 + n), wire.Reset(wire.ResetReason.EPOCH)]
            # The client reloads a snapshot up to hello's last_seq; live items follow.
            await served.add([msg(100 + n)])
            await w.until_seq(32 + n)
            assert w.seqs == [32 + n]


async def test_client_ahead_and_gap_too_large_reset(serve: Serve) -> None:
    served = await serve(Hub(max_gap=10))
    await served.add([msg(i) for i in range(1, 31)])
    epoch = served.store.event(EVENT).epoch
    for since, reason in ((31, wire.ResetReason.AHEAD), (19, wire.ResetReason.GAP)):
        async with watching(served.url(epoch=epoch, since=since)) as w:
            await w.until(lambda w: bool(w.of(wire.Reset)))
            assert w.frames == [wire.Hello(EVENT, epoch, 30), wire.Reset(reason)] and not w.items
    async with watching(served.url(epoch=epoch, since=20)) as w:  # exactly max_gap: replayed
        await w.until(lambda w: bool(w.of(wire.Recovered)))
        assert w.seqs == list(range(21, 31))
    assert served.hub.stats.resets == 2 and served.hub.stats.recovered == 1


async def test_reconnecting_client_gets_exactly_what_it_missed_while_publishing_goes_on(serve: Serve) -> None:
    served = await serve(Hub(coalesce_window=2 * MS))
    total = 600

    async def publish() -> None:
        for start in range(1, total + 1, 3):
            await served.add([msg(i) for i in range(start, min(start + 3, total + 1))])

    seen: list[int] = []
    connections = 0
    position = 0
    epoch = served.store.event(EVENT).epoch
    publisher = asyncio.create_task(publish())
    try:
        while position < total:
            w = Watcher(position=position, epoch=epoch)
            async with watching(w.url(served), w):
                connections += 1
                # Leave after a few more items, mid-stream, while publishing goes on.
                await w.until_seq(min(total, position + 25))
            assert w.of(wire.Recovered) and not w.of(wire.Reset)
            assert w.position is not None
            seen += w.seqs
            position = w.position
        await publisher
    finally:
        publisher.cancel()
    assert connections >= 10
    assert seen == list(range(1, total + 1)), "in order, no duplicate, no gap"


async def test_restart_same_epoch_resumes_exactly(serve: Serve) -> None:
    first = await serve()
    await first.add([msg(i) for i in range(1, 11)])
    async with watching(first.url()) as w:
        await first.add([msg(i) for i in range(11, 21)])
        await w.until_seq(20)
        await first.stop()  # SIGTERM: the app closes its websockets with 1001
        await w.until(lambda w: w.close_code is not None)
    assert w.close_code == CLOSE_GOING_AWAY
    await asyncio.to_thread(first.store.ingest, EVENT, [msg(i) for i in range(21, 31)])  # while down

    second = await serve()  # a new process: an empty hub over the same store
    async with watching(w.url(second), w):
        await w.until(lambda w: bool(w.of(wire.Recovered)))
        await second.add([msg(31)])
        await w.until_seq(31)
    assert w.seqs == list(range(11, 32))
    assert w.of(wire.Recovered) == [wire.Recovered(21, 30)]


async def test_200_clients_reconnecting_at_once_all_recover(serve: Serve) -> None:
    first = await serve()
    count = 200
    watchers = [Watcher() for _ in range(count)]
    async with AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(watching(first.url(), w)) for w in watchers))
        assert first.hub.subscribers(EVENT) == count
        await first.add([msg(i) for i in range(1, 21)])
        await asyncio.gather(*(w.until_seq(20) for w in watchers))
        await first.stop()  # every client is cut at once
        await asyncio.gather(*(w.until(lambda w: w.close_code is not None) for w in watchers))
    await asyncio.to_thread(first.store.ingest, EVENT, [msg(i) for i in range(21, 61)])

    second = await serve()
    async with AsyncExitStack() as stack:
        reconnects = [stack.enter_async_context(watching(w.url(second), w)) for w in watchers]
        # Publishing goes on while they all come back.
        await asyncio.gather(*reconnects, second.add([msg(i) for i in range(61, 81)]))
        await asyncio.gather(*(w.until_seq(80) for w in watchers))
        for w in watchers:
            assert w.seqs == list(range(1, 81))
            assert w.of(wire.Recovered)[0].from_seq == 21
            assert not w.of(wire.Reset)
    assert second.hub.stats.recovered == count


# -- channels ----------------------------------------------------------------------------


def secret(i: int) -> str:
    return f"UNAPPROVED-{i}-END"


async def test_wall_never_gets_an_unapproved_item_live_or_by_resume(store: Store, serve: Serve) -> None:
    store.moderate_event(EVENT, EventAction.PREMODERATION_ON, actor="alice")  # seq 1
    served = await serve()
    async with watching(served.url("wall")) as wall, watching(served.url()) as dashboard:
        # Live: the pipeline publishes every new message, and none is approved yet.
        added = await served.add([msg(i, secret(i)) for i in range(2, 12)])  # seqs 2-11
        await dashboard.until_seq(11)
        # Moderators approve the even ones, then hide message 4 again: seqs 12-17.
        changes = [
            await asyncio.to_thread(store.moderate, EVENT, m.id, Action.APPROVE, actor="alice")
            for m in added
            if m.seq % 2 == 0
        ]
        changes.append(await asyncio.to_thread(store.moderate, EVENT, added[2].id, Action.HIDE, actor="bob"))
        served.hub.publish(EVENT, changes)
        await dashboard.until_seq(17)
        await wall.until_seq(17)
        assert dashboard.seqs == list(range(2, 18))
        assert dashboard.items[-1]["actor"] == "bob"
        assert wall.seqs == [12, 13, 14, 15, 16, 17]
        shown = [item["message"]["text"] for item in wall.items[:-1]]
        assert shown == [secret(i) for i in (2, 4, 6, 8, 10)]
        assert wall.items[-1] == {"seq": 17, "kind": "moderation", "action": "hide", "retract": added[2].id}

    async with watching(served.url("wall", epoch=wall.epoch, since=0)) as resumed:
        await resumed.until(lambda w: bool(w.of(wire.Recovered)))
        # The backlog reader returned all 17 items; the wall's view let these through,
        # each in its current state (message 4 is hidden again).
        assert resumed.seqs == [1, 2, 6, 8, 10, 12, 13, 14, 15, 16, 17]
        # The approved messages, 4 hidden again (wall items carry no status to check).
        assert [item["id"] for item in resumed.items if item["kind"] == "message"] == [
            m.id for m in (added[0], added[4], added[6], added[8])
        ]
        assert resumed.of(wire.Recovered) == [wire.Recovered(1, 17)]
    for odd in range(3, 12, 2):
        assert not any(secret(odd) in raw for raw in resumed.raw + wall.raw)
    assert not any(secret(4) in raw for raw in resumed.raw)
    assert not any('"actor"' in raw for raw in resumed.raw + wall.raw)


# -- slow clients ------------------------------------------------------------------------


async def test_a_client_that_never_reads_is_dropped_and_others_stay_on_time(serve: Serve) -> None:
    max_queue = 50
    served = await serve(Hub(max_queue=max_queue))
    # A tiny receive buffer, so the stall reaches the server after a few hundred KiB
    # rather than after the megabytes of loopback autotuning.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.port))
    # max_queue=1: websockets stops reading the socket once one frame waits unread.
    slow = await connect(served.url(), sock=sock, max_queue=1, close_timeout=100 * MS)
    try:
        async with AsyncExitStack() as stack:
            fast = [await stack.enter_async_context(watching(served.url())) for _ in range(3)]
            assert served.hub.subscribers(EVENT) == 4
            big = "x" * 8000
            n = 0
            most_queued = 0
            # Bounded: a drop that never comes fails the test rather than hanging it.
            for _round in range(300):
                added = await served.add([msg(n + i, f"{n + i} {big}") for i in range(1, 11)])
                n = added[-1].seq
                most_queued = max(most_queued, *(sub.queued for sub in served.hub.subscriptions(EVENT)))
                # On time: every fast client has each batch before the next is published.
                await asyncio.gather(*(w.until_seq(n, timeout=1000 * MS) for w in fast))
                if served.hub.stats.dropped:
                    break
            assert served.hub.stats.dropped == 1, "the stalled client was dropped"
            assert served.hub.subscribers(EVENT) == 3
            assert most_queued <= max_queue, "memory stays bounded by max_queue items"
            await served.add([msg(n + 1)])  # the others go on as before
            await asyncio.gather(*(w.until_seq(n + 1) for w in fast))
            for w in fast:
                assert w.seqs == list(range(1, n + 2))
        # Once it reads again, the stalled client finds itself closed as too slow (or cut,
        # when even the close frame could not be written within CLOSE_TIMEOUT).
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await slow.recv()
        assert closed.value.rcvd is None or closed.value.rcvd.code == CLOSE_TOO_SLOW
    finally:
        await slow.close()


def _held(hub: Hub) -> tuple[int, int]:
    """The most bytes and items any subscription of EVENT holds now."""
    subs = hub.subscriptions(EVENT)
    return max((s.held for s in subs), default=0), max((s.queued for s in subs), default=0)


async def test_a_stalled_client_is_dropped_past_its_byte_budget_long_before_its_item_bound(
    serve: Serve,
) -> None:
    budget = 256 * 1024
    served = await serve(Hub(max_bytes=budget))  # the default item bound: 4,096
    stalled = await stalled_websocket(served.port, f"/dashboard/{EVENT}")
    try:
        async with AsyncExitStack() as stack:
            fast = [await stack.enter_async_context(watching(served.url())) for _ in range(3)]
            await until(lambda: served.hub.subscribers(EVENT) == 4)
            big = "x" * 8000
            n = most_held = most_queued = batch_bytes = 0
            # Bounded: a drop that never comes fails the test rather than hanging it.
            for _round in range(300):
                added = await served.add([msg(n + i, f"{n + i} {big}") for i in range(1, 11)])
                n = added[-1].seq
                held, queued = _held(served.hub)
                most_held, most_queued = max(most_held, held), max(most_queued, queued)
                batch_bytes = max(batch_bytes, sum(len(m.message.text) for m in added))
                await asyncio.gather(*(w.until_seq(n, timeout=1000 * MS) for w in fast))
                if served.hub.stats.dropped:
                    break
            assert served.hub.stats.dropped == 1, "the stalled client was dropped"
            assert most_queued < served.hub.max_queue, "by its bytes, not its items"
            # Over budget is noticed at the next flush: one batch past it, no more.
            assert most_held <= budget + 2 * batch_bytes
            await served.add([msg(n + 1)])  # the others go on as before
            await asyncio.gather(*(w.until_seq(n + 1) for w in fast))
            for w in fast:
                assert w.seqs == list(range(1, n + 2))
        # The dropped client's socket is reset within the close timeout, though it never
        # reads: neither the server's buffer nor the kernel's waits for it.
        await until(lambda: not established(stalled))
        assert await how_it_ended(stalled, TIMEOUT) == "reset"
    finally:
        stalled.close()


async def test_a_heartbeat_timeout_resets_a_client_that_stopped_reading_and_frees_its_queue(
    serve: Serve,
) -> None:
    # No byte budget to speak of: here the heartbeat alone must find the stalled client.
    served = await serve(Hub(max_bytes=1 << 30), heartbeat=1000 * MS)
    stalled = await stalled_websocket(served.port, f"/dashboard/{EVENT}")
    gc.disable()  # `backchannel serve` runs the cyclic collector rarely; here never
    try:
        await until(lambda: served.hub.subscribers(EVENT) == 1)
        ref = weakref.ref(served.hub.subscriptions(EVENT)[0])
        big = "x" * 8000
        n = 0
        # Publish until the server holds bytes of its own for the client (the kernel's
        # buffers are full), as a stalled client at a steady rate soon does.
        for _round in range(300):
            added = await served.add([msg(n + i, f"{n + i} {big}") for i in range(1, 11)])
            n = added[-1].seq
            if _held(served.hub)[0] > 64 * 1024:
                break
        assert _held(served.hub)[0] > 64 * 1024
        # No pong within half the heartbeat: the handler ends...
        assert await asyncio.wait_for(served.done.get(), TIMEOUT) is Outcome.LIVE
        assert served.hub.subscribers(EVENT) == 0
        # ...its subscription, queue and all, is freed by reference counting alone...
        assert ref() is None, "the subscription is freed without the cyclic collector"
        # ...and the socket is reset, not left to flush to a peer that never reads.
        assert served.hub.stats.aborted == 1
        assert await how_it_ended(stalled, TIMEOUT) == "reset"
    finally:
        gc.enable()
        stalled.close()


async def test_a_heartbeat_timeout_resets_a_stalled_client_whose_data_sits_in_the_kernel(
    serve: Serve,
) -> None:
    # What the server wrote fits in the kernel's buffers: nothing waits in its own, so
    # only the heartbeat's close itself can make the end a reset rather than a FIN
    # queued behind data the client will never read.
    served = await serve(heartbeat=1000 * MS)
    stalled = await stalled_websocket(served.port, f"/dashboard/{EVENT}")
    try:
        await until(lambda: served.hub.subscribers(EVENT) == 1)
        await served.add([msg(i, f"{i} {'x' * 4000}") for i in range(1, 4)])
        await until(lambda: _held(served.hub)[0] == 0)
        assert await asyncio.wait_for(served.done.get(), TIMEOUT) is Outcome.LIVE
        assert await how_it_ended(stalled, TIMEOUT) == "reset"
    finally:
        stalled.close()


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a condition of the server's own state (no event to await from outside)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(10 * MS)
