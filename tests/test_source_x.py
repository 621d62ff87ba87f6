"""X recent search: the cursor's rules, then the source end to end against `fakes.x`.

End-to-end tests drive a `SourceRunner` over a real store (SQLite and PostgreSQL),
one `poll_once` at a time, as the scheduler would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import pytest
from fakes import eventually
from fakes.x import FakeX

from backchannel.core.models import StoredMessage
from backchannel.errors import ConfigError
from backchannel.eventfile import build_sources, parse
from backchannel.jobs import SourceRunner
from backchannel.sources.base import SourceState, http_session
from backchannel.sources.x import Cursor, XSource, build_query
from backchannel.store import Store

TOKEN = "test-bearer-token"


def source_for(fake: FakeX, **options: object) -> XSource:
    return XSource(["slz"], TOKEN, key="x:slz", api=fake.url, **options)  # type: ignore[arg-type]


class Published:
    def __init__(self) -> None:
        self.uris: list[str] = []

    def __call__(self, event: str, items: list[object]) -> None:
        self.uris.extend(i.message.uri for i in items if isinstance(i, StoredMessage))


def cursor(store: Store) -> Cursor:
    return Cursor.load(store.cursor("x:slz"))


# -- pure rules ------------------------------------------------------------------------------


def test_query() -> None:
    assert build_query(["slz"]) == "#slz"
    assert build_query(["#slz", "lrnchat"]) == "#slz OR #lrnchat"
    assert build_query(["slz"], exclude_retweets=True) == "#slz -is:retweet"
    assert build_query(["slz", "lrnchat"], exclude_retweets=True) == "(#slz OR #lrnchat) -is:retweet"
    with pytest.raises(ConfigError):
        build_query([])
    with pytest.raises(ConfigError, match="512"):
        build_query([f"tag{i}" for i in range(100)])


def test_cursor_round_trip() -> None:
    assert Cursor.load(None) == Cursor()
    assert Cursor.load("1805") == Cursor(since_id="1805")
    draining = Cursor("1", "tok", "9")
    assert Cursor.load(draining.dump()) == draining
    assert Cursor.load("{broken") == Cursor()


def test_params_keep_since_id_while_draining() -> None:
    source = XSource(["slz"], TOKEN, start_time="2026-06-22T09:00:00+02:00")
    first = source.params(Cursor())
    assert first["start_time"] == "2026-06-22T07:00:00Z" and "since_id" not in first
    assert first["max_results"] == "100"
    assert first["expansions"] == "author_id,referenced_tweets.id,referenced_tweets.id.author_id"
    draining = source.params(Cursor("100", "tok", "200"))
    assert (draining["since_id"], draining["next_token"]) == ("100", "tok")
    assert "start_time" not in draining


def test_the_token_never_travels_in_clear_text() -> None:
    XSource(["slz"], TOKEN, api="http://127.0.0.1:8080")
    with pytest.raises(ConfigError, match="loopback"):
        XSource(["slz"], TOKEN, api="http://api.x.com")


def test_the_token_is_never_shown() -> None:
    source = XSource(["slz"], "sekrit-token-value")
    assert "sekrit" not in repr(source)


def test_event_file_builds_the_source() -> None:
    text = (
        '[event]\nname = "slz"\nhashtags = ["slz", "LrnChat"]\n'
        '[[sources]]\nnetwork = "x"\ninterval = 30\nexclude_retweets = true\napi = "http://127.0.0.1:1"\n'
    )
    (source,) = build_sources(parse(text, {"BACKCHANNEL_X_BEARER_TOKEN": "t"}))
    assert isinstance(source, XSource)
    assert (source.key, source.interval, source.query) == ("x:slz", 30.0, "(#slz OR #lrnchat) -is:retweet")
    assert source.url == "http://127.0.0.1:1/2/tweets/search/recent"
    with pytest.raises(ConfigError, match="BACKCHANNEL_X_BEARER_TOKEN"):
        build_sources(parse(text, {}))


# -- end to end ---------------------------------------------------------------------------------


async def test_more_than_a_page_is_drained_before_since_id_moves(store: Store) -> None:
    async with FakeX() as fake, http_session() as http:
        for i in range(5):
            fake.add(f"warming up {i} #slz")
        runner = SourceRunner(store, "slz", source_for(fake))
        await runner.poll_once(http)
        first_newest = cursor(store).since_id
        assert first_newest == max(fake.tweets, key=int) and store.count("slz") == 5
        for i in range(250):
            newest = fake.add(f"busy session {i} #slz", author=f"user{i % 7}")["id"]
        fake.add("another conference #slzx")
        await runner.poll_once(http)
        # Three requests in one poll, all with the since_id of the round; then it moves.
        round_ = fake.requests[1:]
        assert [r.get("since_id") for r in round_] == [first_newest] * 3
        assert [("next_token" in r) for r in round_] == [False, True, True]
        assert cursor(store) == Cursor(since_id=newest)
        assert store.count("slz") == 255
        # Within a page, sequence numbers follow time (X sends newest first).
        ids = [int(m.message.network_id) for m in store.messages("slz", order="seq")]
        assert ids[:5] == sorted(ids[:5]) and ids[5:105] == sorted(ids[5:105])
        await runner.poll_once(http)
        assert fake.requests[-1]["since_id"] == cursor(store).since_id and store.count("slz") == 255


async def test_a_crash_mid_drain_resumes_without_gap_or_duplicate(store: Store) -> None:
    published = Published()
    async with FakeX() as fake, http_session() as http:
        fake.add("before the rush #slz")
        await SourceRunner(store, "slz", source_for(fake), publish=published).poll_once(http)
        since = cursor(store).since_id
        for i in range(250):
            fake.add(f"rush {i} #slz")
        round_newest = max(fake.tweets, key=int)
        gate = fake.hold(3)  # the round's second page
        crashing = asyncio.create_task(SourceRunner(store, "slz", source_for(fake)).poll_once(http))
        await eventually(lambda: 3 in fake.waiting, what="the second page to be requested")
        crashing.cancel()  # the process dies here: page 1 of 3 is stored, page 2 never arrives
        await asyncio.gather(crashing, return_exceptions=True)
        gate.set()
        stopped_at = cursor(store)
        assert stopped_at.since_id == since and stopped_at.next_token and stopped_at.newest_id == round_newest
        assert store.count("slz") == 101
        for i in range(3):
            fake.add(f"posted while we were down {i} #slz")
        # A new process: a new source and runner, from the stored cursor alone.
        runner = SourceRunner(store, "slz", source_for(fake), publish=published)
        await runner.poll_once(http)
        resumed = fake.requests[3:]
        assert (resumed[0].get("since_id"), resumed[0].get("next_token")) == (
            since,
            stopped_at.next_token,
        )
        assert len(resumed) == 2 and all(r["since_id"] == since for r in resumed)
        assert cursor(store) == Cursor(since_id=round_newest)
        assert store.count("slz") == 251
        await runner.poll_once(http)  # the next round picks up what came during the crash
        assert store.count("slz") == 254
        assert cursor(store) == Cursor(since_id=max(fake.tweets, key=int))
        stored = [m.message.network_id for m in store.messages("slz")]
        assert sorted(stored) == sorted(fake.tweets)  # no gap
        assert len(stored) == len(set(stored))  # no duplicate
        # Published once each: the first poll, the resumed round's pages 2 and 3, the late three.
        assert len(published.uris) == len(set(published.uris)) == 1 + 150 + 3


async def test_429_sleeps_until_the_reset(store: Store) -> None:
    async with FakeX() as fake, http_session() as http:
        reset = int(time.time()) + 120
        fake.fail_next(429, **{"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)})
        runner = SourceRunner(store, "slz", source_for(fake))
        await runner.poll_once(http)
        assert runner.state is SourceState.SLEEPING
        (state,) = store.source_states("slz")
        assert state.state == "sleeping" and "429" in (state.last_error or "")
        assert state.next_try is not None
        assert reset <= state.next_try.timestamp() <= reset + 10
        await runner.poll_once(http)  # not yet: no request sent
        assert len(fake.requests) == 1


async def test_a_spent_window_pauses_the_drain_without_a_429(store: Store) -> None:
    async with FakeX(limit=1) as fake, http_session() as http:
        for i in range(150):
            fake.add(f"post {i} #slz")
        runner = SourceRunner(store, "slz", source_for(fake))
        await runner.poll_once(http)
        assert len(fake.requests) == 1 and store.count("slz") == 100
        assert runner.state is SourceState.SLEEPING
        (state,) = store.source_states("slz")
        assert state.detail == "the network asked to wait" and state.next_try is not None
        assert state.next_try.timestamp() == pytest.approx(fake.reset, abs=5)
        assert cursor(store).next_token  # the drain resumes after the reset


async def test_500_backs_off(store: Store) -> None:
    async with FakeX() as fake, http_session() as http:
        fake.fail_next(500)
        runner = SourceRunner(store, "slz", source_for(fake))
        await runner.poll_once(http)
        assert runner.state is SourceState.BACKING_OFF and not runner.stopped
        (state,) = store.source_states("slz")
        assert "500" in (state.last_error or "") and state.next_try is not None
        # 5 s and up to 20 % jitter from when it failed, a moment before this line.
        assert 4.5 <= (state.next_try - datetime.now(UTC)).total_seconds() <= 7


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_stop_the_source(store: Store, status: int) -> None:
    async with FakeX() as fake, http_session() as http:
        fake.fail_next(status)
        runner = SourceRunner(store, "slz", source_for(fake))
        await runner.poll_once(http)
        assert runner.state is SourceState.FAILING and runner.stopped
        (state,) = store.source_states("slz")
        assert state.state == "failing" and str(status) in (state.last_error or "")
        assert TOKEN not in (state.last_error or "")
        await runner.poll_once(http)
        assert len(fake.requests) == 1


async def test_a_wrong_token_is_refused_by_the_fake_too(store: Store) -> None:
    async with FakeX() as fake, http_session() as http:
        runner = SourceRunner(store, "slz", XSource(["slz"], "wrong", key="x:slz", api=fake.url))
        await runner.poll_once(http)
        assert runner.state is SourceState.FAILING


async def test_a_retweet_counts_on_its_original(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "backchannel.jobs")
    async with FakeX() as fake, http_session() as http:
        original = fake.add("Great keynote on social learning #slz", author="alice")
        runner = SourceRunner(store, "slz", source_for(fake))
        await runner.poll_once(http)
        retweet = fake.add("", author="bob", retweet_of=original["id"])
        reply = fake.add("@alice agreed! #slz", author="carol", reply_to=original["id"])
        # A retweet of a post X can no longer find: the post is kept, the error logged.
        gone = fake.add("deleted later #slz", author="dave", exists=False)
        orphan = fake.add("", author="erin", retweet_of=original["id"])
        orphan["referenced_tweets"] = [{"type": "retweeted", "id": gone["id"]}]
        await runner.poll_once(http)
        (listed, replied) = sorted(store.messages("slz"), key=lambda m: m.seq)
        assert listed.message.uri == f"https://x.com/i/status/{original['id']}"
        assert listed.repost_count == 1
        assert listed.message.permalink == f"https://x.com/alice/status/{original['id']}"
        assert replied.message.reply_to == listed.message.uri
        assert replied.message.network_id == reply["id"]
        reposts = {m.message.network_id: m.message for m in store.stream("slz") if m.message.repost_of}
        assert reposts[retweet["id"]].repost_of == listed.message.uri
        assert reposts[retweet["id"]].author_handle == "bob"
        assert reposts[orphan["id"]].repost_of == f"https://x.com/i/status/{gone['id']}"
        assert "Not Found Error" in caplog.text and f"post {gone['id']}" in caplog.text


async def test_retweets_can_be_left_out(store: Store) -> None:
    async with FakeX() as fake, http_session() as http:
        original = fake.add("#slz opening", author="alice")
        fake.add("", author="bob", retweet_of=original["id"])
        runner = SourceRunner(store, "slz", source_for(fake, exclude_retweets=True))
        await runner.poll_once(http)
        assert fake.requests[0]["query"] == "#slz -is:retweet"
        assert store.count("slz") == 1
