"""The server's websockets end to end: the real app on a free port, the real store
(SQLite and PostgreSQL), logged-in moderators on aiohttp clients and an anonymous
wall on a `websockets` client.

`store` is conftest's, so every test runs on SQLite and on PostgreSQL (test_server's
SQLite-only override is not imported). No sleep stands in for synchronisation: to show
that something did *not* arrive, a test makes a later item that must arrive (frames
reach a connection in publish order) and checks what came before it.
"""

# The fixtures imported from test_server are requested by name, as parameters that
# shadow the imports: that is how pytest fixtures work, not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import orjson
import pytest
from support import Feed, Frame, aiohttp_receive
from test_server import (  # noqa: F401 - fixtures are used by name
    EVENT,
    EVIL,
    MS,
    TIMEOUT,
    Moderator,
    NewModerator,
    Serve,
    Served,
    http,
    moderator,
    msg,
    serve,
    served,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from yarl import URL

from backchannel.hub import Hub
from backchannel.server.keys import HUB

# -- clients -----------------------------------------------------------------------------


@asynccontextmanager
async def dashboard(
    m: Moderator, *, origin: str | None = None, **query: object
) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, Feed]]:
    url = m.served.ws_url(f"/ws/events/{EVENT}", **query)
    async with m.http.ws_connect(url, origin=origin or m.served.origin) as ws:
        yield ws, Feed(lambda: aiohttp_receive(ws))


@asynccontextmanager
async def wall(served: Served, *, origin: str | None = None, **query: object) -> AsyncIterator[Feed]:
    url = served.ws_url(f"/ws/wall/{EVENT}", **query)
    async with connect(url, origin=origin or served.origin, open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
        yield Feed(ws.recv)


def writes_stalled(served: Served) -> bool:
    """Whether some connection's transport holds more than its high-water mark: the
    server is waiting for a client that does not read."""
    server = served.runner.server
    assert server is not None
    for protocol in server.connections:
        transport = protocol.transport
        if (
            transport is not None
            and transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]
        ):
            return True
    return False


def seq_is(seq: int) -> Callable[[Frame], bool]:
    return lambda item: item["seq"] == seq


def mentions(frames: list[Frame], text: str) -> bool:
    return text in orjson.dumps(frames).decode()


# -- 1. and 2.: who may connect --------------------------------------------------------------


async def test_moderator_socket_needs_a_session(served: Served, moderator: NewModerator) -> None:
    anonymous = await moderator(None)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with dashboard(anonymous):
            pass
    assert refused.value.status == 401


async def test_wall_socket_needs_no_login(served: Served) -> None:
    async with wall(served) as feed:
        hello = await feed.frame()
    assert (hello["type"], hello["event"]) == ("hello", EVENT)


async def test_cross_origin_sockets_are_refused(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with dashboard(alice, origin=EVIL):
            pass
    assert refused.value.status == 403
    with pytest.raises(InvalidStatus) as wall_refused:
        async with wall(served, origin=EVIL):
            pass
    assert wall_refused.value.response.status_code == 403
    # Same origin: both accepted.
    async with dashboard(alice) as (_, feed):
        assert (await feed.frame())["type"] == "hello"
    async with wall(served) as wall_feed:
        assert (await wall_feed.frame())["type"] == "hello"


async def test_allowed_origin_sockets_are_accepted(
    serve: Serve, http: Callable[[], aiohttp.ClientSession]
) -> None:
    served = await serve(allowed_origins=("https://wall.example.org",))
    alice = Moderator(served, http())
    await alice.login("alice")
    async with dashboard(alice, origin="https://wall.example.org") as (_, feed):
        assert (await feed.frame())["type"] == "hello"
    async with wall(served, origin="https://wall.example.org") as wall_feed:
        assert (await wall_feed.frame())["type"] == "hello"
    with pytest.raises(InvalidStatus):
        async with wall(served, origin="https://other.example.org"):
            pass


async def test_unknown_event_and_bad_resume_are_refused(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with alice.http.ws_connect(served.ws_url("/ws/events/nosuch"), origin=served.origin):
            pass
    assert refused.value.status == 404
    with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
        async with dashboard(alice, epoch="e", since="-1"):
            pass
    assert bad.value.status == 400


# -- 3. logout closes the user's sockets -----------------------------------------------------


async def test_logout_closes_that_users_sockets(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    bob = await moderator("bob")
    async with (
        dashboard(alice) as (ws1, feed1),
        dashboard(alice) as (ws2, feed2),
        dashboard(bob) as (_, bob_feed),
    ):
        for feed in (feed1, feed2, bob_feed):
            assert (await feed.frame())["type"] == "hello"
        assert (await alice.logout("nope")).status == 403  # a bad token closes nothing
        assert (await alice.logout(alice.csrf)).status == 303
        for ws in (ws1, ws2):
            closing = await asyncio.wait_for(ws.receive(), TIMEOUT)
            # The close frame's code (aiohttp's close_code may say 1006 when the server
            # drops the TCP connection before the client's reply is written).
            assert (closing.type, closing.data, closing.extra) == (
                aiohttp.WSMsgType.CLOSE,
                4001,
                "logged out",
            )
        # Bob's feed is untouched: it still gets the next message.
        [mid] = await served.add([msg(1)])
        [item] = await bob_feed.items_until(lambda i: i["id"] == mid)
        assert item["text"] == "message 1 #slz"
    # And the logged-out browser cannot open a new one.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with dashboard(alice):
            pass
    assert refused.value.status == 401


async def test_logout_is_not_held_up_by_a_client_that_never_reads(
    serve: Serve, http: Callable[[], aiohttp.ClientSession]
) -> None:
    # A queue bound out of reach: the stalled client stays connected until logout.
    served = await serve(Hub(max_queue=1_000_000), sndbuf=4096)
    alice = Moderator(served, http())
    await alice.login("alice")
    cookie = alice.http.cookie_jar.filter_cookies(URL(served.origin))["backchannel_session"].value
    # A tiny receive buffer, so the stall reaches the server after a few hundred KiB.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.port))
    url = served.ws_url(f"/ws/events/{EVENT}")
    headers = {"Cookie": f"backchannel_session={cookie}"}
    # max_queue=1: websockets stops reading the socket once one frame waits unread.
    async with connect(
        url, sock=sock, origin=served.origin, additional_headers=headers, max_queue=1, close_timeout=100 * MS
    ):  # type: ignore[arg-type]
        hub = served.app[HUB]
        big = "x" * 8000
        for n in range(0, 5000, 10):
            await served.add([msg(n + i, f"{n + i} {big}") for i in range(1, 11)])
            if writes_stalled(served):
                break
        assert writes_stalled(served), "the server's writes to the client stalled"
        async with asyncio.timeout(TIMEOUT):
            assert (await alice.logout(alice.csrf)).status == 303
        # The connection was cut: its handler ends and leaves the hub.
        async with asyncio.timeout(TIMEOUT):
            while hub.subscribers(EVENT):
                await asyncio.sleep(10 * MS)


# -- 5. moderation between two dashboards ----------------------------------------------------


async def test_moderation_reaches_every_dashboard_once(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    bob = await moderator("bob")
    async with dashboard(alice) as (_, a), dashboard(bob) as (_, b):
        for feed in (a, b):
            assert (await feed.frame())["type"] == "hello"
        [mid] = await served.add([msg(1)])
        for feed in (a, b):
            [item] = await feed.items_until(lambda i: i["id"] == mid)
            assert (item["kind"], item["status"]) == ("message", "new")

        [change] = (await alice.moderate("hide", [mid], action_id="click-1"))["changes"]
        seq = change["seq"]
        for feed in (a, b):
            [item] = await feed.items_until(seq_is(seq))
            assert item["kind"] == "moderation"
            assert (item["action"], item["actor"]) == ("hide", "alice")
            assert (item["message"]["id"], item["message"]["status"]) == (mid, "hidden")

        # The click retried (a lost response): the same change, applied and sent once.
        [again] = (await alice.moderate("hide", [mid], action_id="click-1"))["changes"]
        assert again["seq"] == seq
        [next_change] = (await bob.moderate("star", [mid], action_id="click-2"))["changes"]
        assert next_change["seq"] == seq + 1
        for feed in (a, b):
            # The next item is bob's star: no second copy of the hide came before it.
            [item] = await feed.items_until(seq_is(seq + 1))
            assert (item["action"], item["actor"], item["message"]["starred"]) == ("star", "bob", True)
    head = served.store.event(EVENT, create=False).last_seq
    assert head == seq + 1


async def test_bulk_moderation_that_fails_midway_still_reports_what_it_applied(
    served: Served, moderator: NewModerator
) -> None:
    alice = await moderator("alice")
    async with dashboard(alice) as (_, feed):
        hello = await feed.frame()
        [a, b] = await served.add([msg(1), msg(2)])
        await feed.items_until(lambda i: i["id"] == b)
        status, _ = await alice.post(
            f"/api/events/{EVENT}/moderate", {"action": "approve", "ids": [a, 999, b]}
        )
        assert status == 404
        # The first id was committed before the unknown one failed: dashboards hear of it.
        [item] = await feed.items_until(seq_is(hello["last_seq"] + 3))
        assert (item["action"], item["message"]["id"], item["message"]["status"]) == (
            "approve",
            a,
            "approved",
        )
    assert served.store.event(EVENT, create=False).last_seq == hello["last_seq"] + 3


async def test_dashboards_get_items_in_seq_order_while_ingest_and_moderation_race(
    served: Served, moderator: NewModerator
) -> None:
    # A client keeps the highest seq it saw and resumes after it: an item published
    # after a higher one would be skipped by a resume in between.
    alice = await moderator("alice")
    [first] = await served.add([msg(0)])
    rounds = 30

    async def ingest() -> None:
        for r in range(rounds):
            await served.add([msg(1000 + 5 * r + i) for i in range(5)])

    async def moderate() -> None:
        for r in range(rounds):
            await alice.moderate("star" if r % 2 else "unstar", [first])

    async with dashboard(alice) as (_, feed):
        hello = await feed.frame()
        await asyncio.gather(ingest(), moderate())
        last = hello["last_seq"] + rounds * 6
        items = await feed.items_until(seq_is(last))
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs)
    assert seqs == list(range(hello["last_seq"] + 1, last + 1))


# -- 6. the wall ----------------------------------------------------------------------------


async def test_wall_gets_messages_and_loses_hidden_ones(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    async with wall(served) as feed:
        hello = await feed.frame()
        secret = "embarrassing typo #slz"
        [mid] = await served.add([msg(1, secret)])
        [item] = await feed.items_until(lambda i: i.get("id") == mid)
        assert item["text"] == secret

        [change] = (await alice.moderate("hide", [mid]))["changes"]
        [retraction] = await feed.items_until(seq_is(change["seq"]))
        assert retraction == {"seq": change["seq"], "kind": "moderation", "action": "hide", "retract": mid}

        [other] = await served.add([msg(2)])
        later = await feed.items_until(lambda i: i.get("id") == other)
        assert not mentions(later, secret)
        assert "actor" not in orjson.dumps(feed.frames).decode()
    # A wall that reconnects and replays everything never sees the hidden text again.
    async with wall(served, epoch=hello["epoch"], since=0) as feed:
        replay = await feed.until_type("recovered")
    assert not mentions(replay, secret)
    assert mentions(replay, "message 2 #slz")
    async with alice.http.get(served.url(f"/api/wall/{EVENT}")) as resp:
        assert not mentions([await resp.json()], secret)


async def test_premoderated_wall_shows_only_approved(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    async with wall(served) as feed:
        hello = await feed.frame()
        [change] = (await alice.event_action("premoderation-on"))["changes"]
        [switched] = await feed.items_until(seq_is(change["seq"]))
        assert switched == {"seq": change["seq"], "kind": "moderation", "action": "premoderation-on"}

        pending = "not yet approved #slz"
        [waiting, sentinel] = await served.add([msg(1, pending), msg(2)])
        [approval] = (await alice.moderate("approve", [sentinel]))["changes"]
        before = await feed.items_until(seq_is(approval["seq"]))
        assert not mentions(before, pending)
        assert before[-1]["message"]["id"] == sentinel
    async with wall(served, epoch=hello["epoch"], since=0) as feed:
        replay = await feed.until_type("recovered")
        assert not mentions(replay, pending)
        async with alice.http.get(served.url(f"/api/wall/{EVENT}")) as resp:
            listed = await resp.json()
        assert [i["id"] for i in listed["items"]] == [sentinel]

        # Approving it is what delivers it.
        [approval] = (await alice.moderate("approve", [waiting]))["changes"]
        [item] = await feed.items_until(seq_is(approval["seq"]))
        assert (item["message"]["id"], item["message"]["text"]) == (waiting, pending)
        assert "actor" not in item


async def test_blocked_author_never_reaches_the_wall(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    [early] = await served.add([msg(1, "before the block", author="Troll")])
    async with wall(served) as feed:
        hello = await feed.frame()
        [change] = (await alice.event_action("block", "x:@Troll"))["changes"]
        [blocked] = await feed.items_until(seq_is(change["seq"]))
        assert blocked == {"seq": change["seq"], "kind": "moderation", "action": "block"}  # no subject
        [_, fine] = await served.add([msg(2, "after the block", author="troll"), msg(3)])
        later = await feed.items_until(lambda i: i.get("id") == fine)
        assert not mentions(later, "the block")
    async with wall(served, epoch=hello["epoch"], since=0) as feed:
        assert not mentions(await feed.until_type("recovered"), "the block")
    async with alice.http.get(served.url(f"/api/wall/{EVENT}")) as resp:
        listed = await resp.json()
    assert [i["id"] for i in listed["items"]] == [fine]
    assert early not in [i["id"] for i in listed["items"]]
    async with alice.http.get(served.url(f"/api/events/{EVENT}/settings")) as resp:
        assert (await resp.json())["blocked"] == ["x:troll"]


async def test_wall_socket_is_read_only(served: Served) -> None:
    async with wall(served) as feed:
        await feed.frame()
        # Client frames are ignored; a frame over 64 KiB closes the connection.
        ws = feed._receive.__self__  # type: ignore[attr-defined]
        assert isinstance(ws, ClientConnection)
        await ws.send("hello?")
        await ws.send("x" * (65 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# -- 7. resume through the real server -------------------------------------------------------


async def test_dashboard_resumes_exactly(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    await served.add([msg(i) for i in range(1, 4)])
    async with dashboard(alice) as (_, feed):
        hello = await feed.frame()
    assert (hello["type"], hello["last_seq"]) == ("hello", 3)
    epoch, since = hello["epoch"], hello["last_seq"]

    missed = await served.add([msg(i) for i in range(4, 9)])
    async with dashboard(alice, epoch=epoch, since=since) as (_, feed):
        frames = await feed.until_type("recovered")
    assert frames[0] == {"type": "hello", "event": EVENT, "epoch": epoch, "last_seq": since + 5}
    items = [item for f in frames[1:-1] for item in f["items"]]
    assert [i["seq"] for i in items] == [4, 5, 6, 7, 8]
    assert [i["id"] for i in items] == missed
    assert frames[-1] == {"type": "recovered", "from_seq": 4, "to_seq": 8}

    async with dashboard(alice, epoch="another-epoch", since=since) as (_, feed):
        frames = [await feed.frame(), await feed.frame()]
    assert frames[1] == {"type": "reset", "reason": "epoch"}
    async with dashboard(alice, epoch=epoch, since=99) as (_, feed):
        frames = [await feed.frame(), await feed.frame()]
    assert frames[1] == {"type": "reset", "reason": "ahead"}


async def test_resume_replays_moderation_in_order(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    [a, b] = await served.add([msg(1), msg(2)])
    async with dashboard(alice) as (_, feed):
        hello = await feed.frame()
    await alice.moderate("approve", [a])
    [c] = await served.add([msg(3)])
    await alice.moderate("hide", [b])
    async with dashboard(alice, epoch=hello["epoch"], since=hello["last_seq"]) as (_, feed):
        frames = await feed.until_type("recovered")
    items = [item for f in frames[1:-1] for item in f["items"]]
    assert [(i["seq"], i["kind"]) for i in items] == [(3, "moderation"), (4, "message"), (5, "moderation")]
    assert (items[0]["message"]["id"], items[0]["actor"]) == (a, "alice")
    assert items[1]["id"] == c
    assert (items[2]["action"], items[2]["message"]["status"]) == ("hide", "hidden")


# -- 9. shutdown ----------------------------------------------------------------------------


async def test_shutdown_closes_sockets_going_away(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    async with dashboard(alice) as (ws, feed), wall(served) as wall_feed:
        await feed.frame()
        await wall_feed.frame()
        await served.stop()
        closing = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        with pytest.raises(ConnectionClosed) as closed:
            await wall_feed.frame()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
