"""The Mastodon source against a fake instance (`fakes.mastodon`, real sockets on
127.0.0.1) and a real store (conftest's `store`: SQLite and PostgreSQL), driven through
the runner as in production; the restart test runs `backchannel collect` itself.

Backoff is checked on the runner's injectable clock, so no test waits for a delay. No
sleep stands in for synchronisation: waits are bounded polls (`fakes.eventually`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import TIMEOUT, eventually
from fakes.mastodon import FakeMastodon

from backchannel import eventfile
from backchannel.core.models import Change, StoredMessage
from backchannel.errors import ConfigError
from backchannel.jobs import SourceRunner
from backchannel.sources import mastodon as mastodon_source
from backchannel.sources.base import SourceState, UpstreamError, http_session
from backchannel.sources.mastodon import TOKEN_ENV, MastodonSource, newest, rewound, sources_for
from backchannel.store import Store

EVENT = "slz"
TOKEN = "user-token"


class Clock:
    """The runner's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Collected:
    """What the runner published."""

    def __init__(self) -> None:
        self.items: list[StoredMessage | Change] = []

    def __call__(self, event: str, items: list[StoredMessage | Change]) -> None:
        self.items.extend(items)

    @property
    def messages(self) -> list[StoredMessage]:
        return [i for i in self.items if isinstance(i, StoredMessage)]

    @property
    def changes(self) -> list[Change]:
        return [i for i in self.items if isinstance(i, Change)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeMastodon]:
    async with FakeMastodon("mastodon.test") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session() as session:
        yield session


@pytest.fixture
def clock() -> Clock:
    return Clock()


def runner(store: Store, source: MastodonSource, clock: Clock | None = None, **kwargs: Any) -> SourceRunner:
    return SourceRunner(store, EVENT, source, clock=clock or Clock(), **kwargs)


def stored(store: Store) -> list[StoredMessage]:
    """Every stored message in sequence order (deleted ones too)."""
    return list(store.stream(EVENT))


def assert_each_once(store: Store, expected: list[dict[str, Any]]) -> None:
    """The store holds exactly the `expected` statuses, each once, numbered 1..N."""
    rows = stored(store)
    assert sorted(m.message.uri for m in rows) == sorted(s["uri"] for s in expected)
    assert [m.seq for m in rows] == list(range(1, len(expected) + 1))


def state(store: Store, key: str) -> Any:
    (status,) = [s for s in store.source_states(EVENT) if s.source == key]
    return status


# -- the fake speaks the documented API ---------------------------------------------------


async def test_fake_paginates_as_the_documentation_says(
    fake: FakeMastodon, http: aiohttp.ClientSession
) -> None:
    # Gargron's illustration (SOURCES.md §3.1), statuses 1..6.
    for i in range(1, 7):
        await fake.post(f"status {i}", id=i)

    async def ids(**params: str) -> tuple[list[str], aiohttp.ClientResponse]:
        async with http.get(f"{fake.base_url}/api/v1/timelines/tag/slz", params=params) as response:
            return [s["id"] for s in await response.json()], response

    assert (await ids(max_id="3", limit="2"))[0] == ["2", "1"]
    assert (await ids(since_id="3", limit="2"))[0] == ["6", "5"]
    page, response = await ids(min_id="3", limit="2")
    assert page == ["5", "4"]
    url = f"{fake.base_url}/api/v1/timelines/tag/slz"
    assert (
        response.headers["Link"]
        == f'<{url}?limit=2&max_id=4>; rel="next", <{url}?limit=2&min_id=5>; rel="prev"'
    )
    assert int(response.headers["X-RateLimit-Remaining"]) < int(response.headers["X-RateLimit-Limit"])
    assert datetime.fromisoformat(response.headers["X-RateLimit-Reset"]) > datetime.now(UTC)
    await fake.post_many(45)
    assert len((await ids())[0]) == 20  # the default limit
    assert len((await ids(limit="100"))[0]) == 40  # the maximum


# -- polling --------------------------------------------------------------------------------


def test_ids_are_ordered_as_numbers() -> None:
    assert newest("99", "100", None) == "100"
    assert newest(None) is None
    snowflake = str(1_700_000_000_000 << 16)
    assert rewound(snowflake, 10) == str((1_700_000_000_000 - 10_000) << 16)
    assert rewound("12345", 10) == "12345"  # not a snowflake: left alone


async def test_first_poll_takes_the_newest_page_only(fake: FakeMastodon, http: aiohttp.ClientSession) -> None:
    statuses = await fake.post_many(50)
    source = MastodonSource(fake.base_url, "#SLZ")
    assert source.key == f"mastodon:{fake.base_url.removeprefix('http://')}:slz"
    page = await source.poll(http, None)
    assert [m.network_id for m in page.messages] == [s["id"] for s in statuses[-40:]]  # oldest first
    assert page.cursor == statuses[-1]["id"] and not page.more
    assert fake.requests[-1] == {"limit": "40"}
    assert fake.authorizations[-1] is None  # no token, no header
    # Handles are qualified with the instance's own domain (from /api/v2/instance).
    assert page.messages[0].author_handle == "ann@mastodon.test"
    empty = await source.poll(http, page.cursor)
    assert empty.messages == [] and empty.cursor == page.cursor and not empty.more
    assert fake.requests[-1] == {"limit": "40", "min_id": page.cursor}


async def test_more_than_a_page_between_polls_arrives_without_gap(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession
) -> None:
    first = await fake.post_many(3)
    collected = Collected()
    run = runner(store, MastodonSource(fake.base_url, "slz"), publish=collected)
    await run.poll_once(http)
    cursor = first[-1]["id"]
    assert store.cursor(run.key) == cursor

    burst = await fake.post_many(95)
    before = len(fake.requests)
    await run.poll_once(http)
    assert_each_once(store, first + burst)
    assert len(collected.messages) == 98
    # min_id pages of 40, 40 and 15 just above the cursor, then an empty page ends the drain.
    min_ids = [r["min_id"] for r in fake.requests[before:]]
    assert min_ids == [cursor, burst[39]["id"], burst[79]["id"], burst[94]["id"]]
    assert store.cursor(run.key) == burst[-1]["id"]
    assert run.state is SourceState.COLLECTING

    # The control: since_id answers the newest 40 and silently skips the 55 before them.
    url = f"{fake.base_url}/api/v1/timelines/tag/slz"
    async with http.get(url, params={"since_id": cursor, "limit": "40"}) as response:
        skipped = {s["id"] for s in burst} - {s["id"] for s in await response.json()}
    assert len(skipped) == 55


async def test_overlapping_pages_store_each_status_once(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession
) -> None:
    statuses = await fake.post_many(10)
    collected = Collected()
    run = runner(store, MastodonSource(fake.base_url, "slz"), publish=collected)
    await run.poll_once(http)
    # The cursor goes back (a stream's rewound cursor, another copy of the collector):
    # the next pages repeat six stored statuses before the five new ones.
    store.ingest(EVENT, [], cursor=(run.key, statuses[3]["id"]))
    statuses += await fake.post_many(5, text="new")
    await run.poll_once(http)
    assert_each_once(store, statuses)
    assert [m.message.text.split(" #")[0] for m in collected.messages[10:]] == [f"new {i}" for i in range(5)]


async def test_a_malformed_status_is_rejected_and_the_rest_kept(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    first = await fake.post_many(2)
    run = runner(store, MastodonSource(fake.base_url, "slz"))
    await run.poll_once(http)
    later = await fake.post_many(3)
    fake.corrupt(later[1]["id"], account=None)
    page = await run.source.poll(http, first[-1]["id"])  # type: ignore[union-attr]
    assert [m.network_id for m in page.messages] == [later[0]["id"], later[2]["id"]]
    (reason,) = page.rejected
    assert later[1]["id"] in reason and "account" in reason
    assert page.cursor == later[-1]["id"]  # past the bad one: asking again would bring it back
    with caplog.at_level(logging.WARNING, logger="backchannel.jobs"):
        await run.poll_once(http)
    assert_each_once(store, [*first, later[0], later[2]])
    assert "skipped a malformed record" in caplog.text and later[1]["id"] in caplog.text


async def test_a_status_the_normaliser_fails_on_is_rejected_alone(
    store: Store,
    fake: FakeMastodon,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 10: an exception other than PayloadError (it was datetime's OverflowError on
    a date past 9999 in UTC, now a named rejection; here a bug in the normaliser) failed
    every poll of the page, so the statuses after it were never collected."""
    statuses = await fake.post_many(3)
    normalise = mastodon_source.messages_from_status

    def buggy(status: Any, *args: Any, **kwargs: Any) -> Any:
        if status.get("id") == statuses[1]["id"]:
            raise OverflowError("date value out of range")
        return normalise(status, *args, **kwargs)

    monkeypatch.setattr(mastodon_source, "messages_from_status", buggy)
    run = runner(store, MastodonSource(fake.base_url, "slz"))
    with caplog.at_level(logging.WARNING):
        await run.poll_once(http)
    assert run.state is SourceState.COLLECTING and run.failures == 0
    assert_each_once(store, [statuses[0], statuses[2]])
    assert store.cursor(run.key) == statuses[2]["id"]
    (skipped,) = [r.getMessage() for r in caplog.records if "skipped a malformed record" in r.getMessage()]
    assert statuses[1]["id"] in skipped and "OverflowError" in skipped
    assert len([r for r in caplog.records if r.exc_info]) == 1  # the traceback, for the bug report


async def test_an_absurd_id_never_becomes_the_cursor(fake: FakeMastodon, http: aiohttp.ClientSession) -> None:
    statuses = await fake.post_many(3)
    fake.corrupt(statuses[0]["id"], id="9" * 40)
    page = await MastodonSource(fake.base_url, "slz").poll(http, None)
    assert [m.network_id for m in page.messages] == [s["id"] for s in statuses[1:]]
    assert page.cursor == statuses[-1]["id"]
    (reason,) = page.rejected
    assert "not a status id" in reason


async def test_an_unknown_hashtag_is_an_empty_page(
    fake: FakeMastodon, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    source = MastodonSource(fake.base_url, "nobodyusesthis")
    with caplog.at_level(logging.INFO, logger="backchannel.sources.mastodon"):
        page = await source.poll(http, None)
        again = await source.poll(http, None)
    assert page.messages == again.messages == [] and page.cursor is None and not page.more
    assert caplog.text.count("unknown on") == 1  # said once, not every 20 s


async def test_local_only(fake: FakeMastodon, http: aiohttp.ClientSession) -> None:
    mine = await fake.post("ours")
    await fake.post("theirs", user="bob", origin="elsewhere.example")
    page = await MastodonSource(fake.base_url, "slz", local=True).poll(http, None)
    assert [m.uri for m in page.messages] == [mine["uri"]]
    assert fake.requests[-1]["local"] == "true"


# -- failures -------------------------------------------------------------------------------


async def test_429_sleeps_until_retry_after_and_asks_nothing_before(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession, clock: Clock
) -> None:
    await fake.post_many(2)
    run = runner(store, MastodonSource(fake.base_url, "slz"), clock)
    await run.poll_once(http)
    fake.fail_next(1, 429, retry_after=120)
    late = await fake.post("after the limit")
    before = datetime.now(UTC)
    await run.poll_once(http)
    assert run.state is SourceState.SLEEPING
    status = state(store, run.key)
    assert status.state == "sleeping" and "429" in (status.last_error or "")
    assert status.next_try is not None and 120 <= (status.next_try - before).total_seconds() <= 130
    asked = len(fake.requests)
    clock.advance(119)
    await run.poll_once(http)
    assert len(fake.requests) == asked  # not one request before Retry-After
    clock.advance(15)
    await run.poll_once(http)
    assert len(fake.requests) > asked and run.state is SourceState.COLLECTING
    assert store.message_by_uri(EVENT, late["uri"]) is not None


async def test_a_spent_window_waits_for_the_reset(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession, clock: Clock
) -> None:
    """Remaining 0: the source sleeps until X-RateLimit-Reset instead of collecting a 429;
    and Mastodon's own 429, which has no Retry-After, is read the same way."""
    fake.limit_rate(2, period=600)
    await fake.post_many(2)
    run = runner(store, MastodonSource(fake.base_url, "slz"), clock)
    await run.poll_once(http)  # remaining 1
    await fake.post("one more")
    await run.poll_once(http)  # its drain's first page leaves 0: stop asking
    assert run.state is SourceState.SLEEPING
    status = state(store, run.key)
    assert status.detail == "the network asked to wait"
    assert status.next_try is not None and 590 <= (status.next_try - datetime.now(UTC)).total_seconds() <= 600
    asked = len(fake.requests)
    clock.advance(590)
    await run.poll_once(http)
    assert len(fake.requests) == asked
    assert store.count(EVENT) == 3

    with pytest.raises(UpstreamError) as limited:
        await MastodonSource(fake.base_url, "slz").poll(http, None)
    assert limited.value.status == 429
    assert limited.value.upstream_wait is not None and 590 <= limited.value.upstream_wait <= 600


async def test_server_errors_back_off_then_recover(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession, clock: Clock
) -> None:
    first = await fake.post_many(2)
    run = runner(store, MastodonSource(fake.base_url, "slz"), clock)
    await run.poll_once(http)
    fake.fail_next(2, 503)
    later = await fake.post_many(3)
    delays = []
    for _ in range(2):
        await run.poll_once(http)
        assert run.state is SourceState.BACKING_OFF
        assert "503" in (state(store, run.key).last_error or "")
        delays.append(run.not_before - clock.now)
        clock.advance(delays[-1])
    assert 5 <= delays[0] <= 6 and 10 <= delays[1] <= 12  # exponential from 5 s
    await run.poll_once(http)
    assert run.state is SourceState.COLLECTING and run.failures == 0
    assert_each_once(store, first + later)


@pytest.mark.parametrize("cut", [False, True], ids=["short-body", "connection-cut"])
async def test_truncated_json_loses_nothing(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession, clock: Clock, cut: bool
) -> None:
    first = await fake.post_many(2)
    run = runner(store, MastodonSource(fake.base_url, "slz"), clock)
    await run.poll_once(http)
    cursor = store.cursor(run.key)
    later = await fake.post_many(50)
    fake.truncate_next(1, cut_connection=cut)
    await run.poll_once(http)
    assert run.state is SourceState.BACKING_OFF
    error = state(store, run.key).last_error or ""
    assert ("ClientPayloadError" in error) if cut else ("not valid JSON" in error)
    assert store.count(EVENT) == 2 and store.cursor(run.key) == cursor
    clock.advance(run.not_before - clock.now)
    await run.poll_once(http)
    assert_each_once(store, first + later)


async def test_a_disabled_public_timeline_stops_with_a_clear_message(
    store: Store, http: aiohttp.ClientSession
) -> None:
    async with FakeMastodon("private.test", public=False) as fake:
        await fake.post_many(2)
        run = runner(store, MastodonSource(fake.base_url, "slz"))
        await run.poll_once(http)
        assert run.stopped and run.state is SourceState.FAILING
        error = state(store, run.key).last_error or ""
        assert "disabled public timelines" in error and TOKEN_ENV in error
        asked = len(fake.requests)
        await run.poll_once(http)
        assert len(fake.requests) == asked

        with_token = runner(store, MastodonSource(fake.base_url, "slz", token=TOKEN))
        await with_token.poll_once(http)
        assert store.count(EVENT) == 2
        assert fake.authorizations[-1] == f"Bearer {TOKEN}"


# -- restart --------------------------------------------------------------------------------


async def test_a_killed_collector_restarts_without_gap_or_duplicate(
    fake: FakeMastodon, sqlite_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "event.toml"
    config.write_text(
        f'[event]\nname = "{EVENT}"\nhashtags = ["slz"]\n\n'
        f'[[sources]]\nnetwork = "mastodon"\ninstance = "{fake.base_url}"\ninterval = 1\n'
    )
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    command = [sys.executable, "-m", "backchannel", "collect", "--config", str(config), "--db", sqlite_url]

    async def start(name: str) -> asyncio.subprocess.Process:
        with open(tmp_path / f"{name}.log", "wb") as log:
            return await asyncio.create_subprocess_exec(*command, env=env, stdout=log, stderr=log)

    statuses = await fake.post_many(5)
    first = await start("first")
    try:
        # Generous: a loaded machine takes seconds to start the process.
        await eventually(lambda: fake.served_pages >= 1, timeout=3 * TIMEOUT, what="the first poll")
        statuses += await fake.post_many(200, text="burst")
        fake.hold_after(2)  # two pages of the drain, then the third request waits
        await eventually(lambda: fake.held, what="the drain's third request")
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), TIMEOUT) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    fake.release()
    with Store(sqlite_url) as store:
        # The two pages stored before the kill, each with its cursor.
        assert store.count(EVENT) == 85
        assert store.cursor(f"mastodon:{fake.base_url.removeprefix('http://')}:slz") == statuses[84]["id"]

    second = await start("second")
    try:
        with Store(sqlite_url) as store:
            await eventually(lambda: store.count(EVENT) == 205, timeout=3 * TIMEOUT, what="all 205")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), TIMEOUT) == 0
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
    with Store(sqlite_url) as store:
        assert_each_once(store, statuses)


# -- streaming ------------------------------------------------------------------------------


def streaming(fake: FakeMastodon, **kwargs: Any) -> MastodonSource:
    return MastodonSource(fake.base_url, "slz", token=TOKEN, stream=True, **kwargs)


class Streaming:
    """A runner's stream loop as a task, cancelled on exit."""

    def __init__(self, run: SourceRunner, http: aiohttp.ClientSession) -> None:
        self.run, self.http = run, http

    async def __aenter__(self) -> Streaming:
        self.task = asyncio.create_task(self.run.run_stream(self.http))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_streaming_needs_a_token_and_only_a_streaming_source_streams(fake: FakeMastodon) -> None:
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        MastodonSource(fake.base_url, "slz", stream=True)
    # The runner streams a source that has `stream` and polls one that has not.
    assert not hasattr(MastodonSource(fake.base_url, "slz", token=TOKEN), "stream")
    assert hasattr(streaming(fake), "stream")


async def test_stream_delivers_posts_edits_and_deletes(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession
) -> None:
    before = await fake.post("before the stream")
    collected = Collected()
    run = runner(store, streaming(fake), publish=collected)
    async with Streaming(run, http):
        await eventually(lambda: fake.subscribed("slz"), what="the subscription")
        assert store.message_by_uri(EVENT, before["uri"]) is not None  # backfilled over REST
        live = await fake.post("live: what time is it?", mentions=("bob@elsewhere.example",))
        await eventually(lambda: store.message_by_uri(EVENT, live["uri"]), what="the pushed status")
        await fake.edit(live["id"], "edited: the slides are online")
        await eventually(
            lambda: "edited: the slides" in store.message_by_uri(EVENT, live["uri"]).message.text,  # type: ignore[union-attr]
            what="the edit",
        )
        await fake.delete(live["id"])
        await fake.delete(before["id"])  # seen through REST only: its URI is known too
        # Published after the store has applied them: wait for the publication.
        await eventually(lambda: len(collected.changes) == 3, what="the deletes")
    assert all(store.message_by_uri(EVENT, s["uri"]).deleted for s in (live, before))  # type: ignore[union-attr]
    assert [m.message.uri for m in store.messages(EVENT)] == []
    edited = store.message_by_uri(EVENT, live["uri"])
    assert edited is not None and not edited.is_question
    assert edited.message.mentions == ("bob@elsewhere.example",)
    assert [c.action for c in collected.changes] == ["edit", "delete", "delete"]


async def test_a_stream_reconnect_backfills_what_was_posted_meanwhile(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession
) -> None:
    run = runner(store, streaming(fake))
    async with Streaming(run, http):
        await eventually(lambda: fake.subscribed("slz"), what="the subscription")
        a = await fake.post("a")
        await eventually(lambda: store.count(EVENT) == 1, what="a")
        fake.hold_streams()
        await fake.drop_streams()
        await eventually(lambda: fake.handshakes == 2, what="the reconnect")
        assert fake.subscribed("slz") == 0
        missed = [await fake.post("b"), await fake.post("c")]  # nobody is listening
        fake.release_streams()
        await eventually(lambda: fake.subscribed("slz"), what="the new subscription")
        await eventually(lambda: store.count(EVENT) == 3, what="b and c, over REST")
        d = await fake.post("d")
        await eventually(lambda: store.count(EVENT) == 4, what="d, streamed")
    assert_each_once(store, [a, *missed, d])


async def test_a_silent_stream_is_dropped_and_reopened(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    run = runner(store, streaming(fake, keepalive=0.3))
    async with Streaming(run, http):
        await eventually(lambda: fake.subscribed("slz"), what="the subscription")
        fake.silence_streams()  # half-open: no events, no pongs
        await eventually(lambda: fake.handshakes >= 2 and fake.subscribed("slz"), what="a new connection")
        status = await fake.post("after the silence")
        await eventually(lambda: store.message_by_uri(EVENT, status["uri"]), what="the status")
    assert "the stream was silent for 0.3 s" in caplog.text


async def test_a_refused_stream_token_stops_the_source(
    store: Store, fake: FakeMastodon, http: aiohttp.ClientSession
) -> None:
    run = runner(store, MastodonSource(fake.base_url, "slz", token="expired", stream=True))
    await asyncio.wait_for(run.run_stream(http), TIMEOUT)  # returns: the source stopped
    assert run.stopped and run.state is SourceState.FAILING
    assert "refused the streaming token" in (state(store, run.key).last_error or "")


# -- several instances ----------------------------------------------------------------------


async def test_the_same_post_from_two_instances_is_stored_once(
    store: Store, http: aiohttp.ClientSession
) -> None:
    async with FakeMastodon("a.test") as a, FakeMastodon("b.test") as b:
        original = await a.post("hello from a")
        copy = await b.receive(a, original["id"])
        assert copy["uri"] == original["uri"] and copy["id"] != original["id"]
        assert (original["account"]["acct"], copy["account"]["acct"]) == ("ann", "ann@a.test")
        runs = [runner(store, MastodonSource(s.base_url, "slz")) for s in (b, a)]
        for run in runs:
            await run.poll_once(http)
        (message,) = stored(store)
        assert message.message.uri == original["uri"]
        assert message.message.author_handle == "ann@a.test"  # one handle, whichever served it
        # Each instance keeps its own cursor: ids are local to the instance.
        assert [store.cursor(r.key) for r in runs] == [copy["id"], original["id"]]


# -- the event file -------------------------------------------------------------------------


def event_file(sources: str, hashtags: str = '["slz"]', **environ: str) -> eventfile.EventFile:
    return eventfile.parse(f'[event]\nname = "slz"\nhashtags = {hashtags}\n\n{sources}', environ)


def test_the_event_file_builds_one_source_per_hashtag() -> None:
    source = '[[sources]]\nnetwork = "mastodon"\ninstance = "https://Mastodon.Social/"\ninterval = 30\n'
    (built,) = eventfile.build_sources(event_file(source))
    assert isinstance(built, MastodonSource)
    assert built.key == "mastodon:mastodon.social:slz" and built.interval == 30
    assert not hasattr(built, "stream")

    two = event_file(source, '["slz", "#SLZ2010"]')
    assert [s.key for s in sources_for(two, two.sources[0])] == [
        "mastodon:mastodon.social:slz",
        "mastodon:mastodon.social:slz2010",
    ]


def test_the_event_file_guards_the_token() -> None:
    streamed = '[[sources]]\nnetwork = "mastodon"\ninstance = "mastodon.social"\nstream = true\n'
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        eventfile.build_sources(event_file(streamed))
    (built,) = eventfile.build_sources(event_file(streamed, **{TOKEN_ENV: "t"}))
    assert hasattr(built, "stream")

    # One token, two instances: the token would reach an instance it does not belong to.
    second = '[[sources]]\nnetwork = "mastodon"\ninstance = "fosstodon.org"\n'
    with pytest.raises(ConfigError, match="token_env"):
        eventfile.build_sources(event_file(streamed + "\n" + second, **{TOKEN_ENV: "t"}))
    separate = second + 'token_env = "FOSSTODON_TOKEN"\n'
    built_both = eventfile.build_sources(event_file(streamed + "\n" + separate, **{TOKEN_ENV: "t"}))
    assert [s.key for s in built_both] == ["mastodon:mastodon.social:slz", "mastodon:fosstodon.org:slz"]

    with pytest.raises(ConfigError, match="instance"):
        eventfile.build_sources(event_file('[[sources]]\nnetwork = "mastodon"\ninstance = "ftp://x"\n'))
