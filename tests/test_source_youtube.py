"""YouTube live chat through the real runner, against a fake Data API on a free port.

Time is injected twice: the runner's monotonic clock (when the next poll may run) and
the source's wall clock (the quota day, the time a gap starts). Nothing sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
from fakes.youtube import CHAT_ENDED, CHAT_NOT_FOUND, T0, TOO_FAST, FakeYouTube

from backchannel.core import youtube as core
from backchannel.core.models import Network
from backchannel.errors import ConfigError
from backchannel.eventfile import build_sources, parse
from backchannel.jobs import SourceRunner
from backchannel.sources import base
from backchannel.sources.base import Page, SourceState, http_session
from backchannel.sources.youtube import ChatCursor, ChatEnded, YouTubeChat
from backchannel.store import Store

EVENT = "slz"
RUNNER_RECORDS_GAPS = "gap" in Page.__dataclass_fields__
RUNNER_KNOWS_FINISHED = hasattr(base, "SourceFinished")


class Time:
    """Both clocks a test drives: the runner's monotonic one and the source's wall clock."""

    def __init__(self, start: datetime = T0 + timedelta(minutes=5)) -> None:
        self.wall = start
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
async def fake() -> AsyncIterator[FakeYouTube]:
    async with FakeYouTube() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(timeout=10) as session:
        yield session


@pytest.fixture
def t() -> Time:
    return Time()


def chat(fake: FakeYouTube, t: Time, **settings: object) -> YouTubeChat:
    if "video_id" not in settings:
        settings.setdefault("live_chat_id", fake.live_chat_id)
    return YouTubeChat(api_key=fake.api_key, api=fake.url, now=t.now, **settings)  # type: ignore[arg-type]


def runner_for(store: Store, source: YouTubeChat, t: Time) -> SourceRunner:
    return SourceRunner(store, EVENT, source, clock=t.monotonic)


def texts(store: Store) -> list[str]:
    return [m.message.text for m in store.messages(EVENT, order="seq")]


def state(store: Store, source: YouTubeChat) -> base.SourceState:
    (st,) = [s for s in store.source_states(EVENT) if s.source == source.key]
    return SourceState(st.state)


# -- polling --------------------------------------------------------------------------------


async def test_first_poll_stores_the_history_oldest_first_as_plain_messages(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    for i in range(3):
        fake.say(f"line {i} #SLZ", name=f"Viewer {i}", channel=f"UC{i:022d}")
    source = chat(fake, t)
    await runner_for(store, source, t).poll_once(http)

    assert texts(store) == ["line 0 #SLZ", "line 1 #SLZ", "line 2 #SLZ"]
    first, *_ = [m.message for m in store.messages(EVENT, order="seq")]
    assert first.network is Network.YOUTUBE and first.uri == "youtube:LCC.msg-0001"
    assert (first.author_handle, first.author_name) == ("UC" + "0" * 22, "Viewer 0")
    assert first.created_at == T0 + timedelta(seconds=1) and first.hashtags == ("SLZ",)
    (request,) = fake.list_requests()
    assert request.query["liveChatId"] == fake.live_chat_id
    assert request.query["part"] == "id,snippet,authorDetails" and request.query["maxResults"] == "2000"
    assert "pageToken" not in request.query
    # The key is a header, never in a URL that could be logged.
    assert request.headers["X-Goog-Api-Key"] == fake.api_key and "key" not in request.query


async def test_next_polls_use_the_page_token_and_never_come_sooner_than_youtube_asks(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.polling_ms = 7500
    fake.say("before")
    source = chat(fake, t)
    runner = runner_for(store, source, t)
    await runner.poll_once(http)
    assert runner.not_before == pytest.approx(t.mono + 7.5)
    token = ChatCursor.loads(store.cursor(source.key)).page_token
    assert token

    fake.say("after")
    t.advance(7.4)
    await runner.poll_once(http)  # the scheduler fired early: no request at all
    assert len(fake.list_requests()) == 1 and texts(store) == ["before"]

    t.advance(0.1)
    await runner.poll_once(http)
    assert len(fake.list_requests()) == 2
    assert fake.list_requests()[1].query["pageToken"] == token
    assert texts(store) == ["before", "after"]  # and "before" was not asked for again


async def test_quota_is_counted_per_call_and_per_pacific_day_across_restarts(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.videos["dQw4w9WgXcQ"] = {
        "actualStartTime": T0.isoformat(),
        "activeLiveChatId": fake.live_chat_id,
    }
    fake.say("hello")
    source = chat(fake, t, video_id="dQw4w9WgXcQ")
    runner = runner_for(store, source, t)
    await runner.poll_once(http)
    assert source.quota_used == 1 + 5  # videos.list once, then a list call
    for _ in range(2):
        t.advance(10)
        await runner.poll_once(http)
    assert source.quota_used == 1 + 3 * 5 == fake.quota_used
    assert [r.path for r in fake.requests].count("/youtube/v3/videos") == 1  # resolved once
    assert source.detail == "quota 16 units today"
    # The chat's permalink is the watch URL at the message's offset into the stream.
    (message,) = store.messages(EVENT)
    assert message.message.permalink == "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=1s"

    # A restart the same (Pacific) day goes on counting from the stored cursor...
    again = chat(fake, t, video_id="dQw4w9WgXcQ")
    t.advance(10)
    await runner_for(store, again, t).poll_once(http)
    assert again.quota_used == 16 + 1 + 5
    # ...and the count starts again at Pacific midnight (07:00 UTC in summer), not UTC's.
    t.wall = datetime(2026, 6, 23, 6, 59, tzinfo=UTC)
    t.advance(10)
    await runner_for(store, again, t).poll_once(http)
    assert again.quota_used == 22 + 5
    t.wall = datetime(2026, 6, 23, 7, 1, tzinfo=UTC)
    t.advance(10)
    await runner_for(store, again, t).poll_once(http)
    assert again.quota_used == 5


async def test_quota_exceeded_sleeps_until_midnight_pacific(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.quota_limit = 10  # two list calls
    fake.say("one")
    source = chat(fake, t)
    runner = runner_for(store, source, t)
    for _ in range(3):
        await runner.poll_once(http)
        t.advance(10)
    assert runner.state is SourceState.SLEEPING and not runner.stopped
    # The refusal came at 17:05:20 UTC, 10:05:20 in Los Angeles (PDT): 13 h 54 min 40 s to midnight.
    until_midnight = 13 * 3600 + 54 * 60 + 40
    assert until_midnight < runner.not_before - (t.mono - 10) < until_midnight * 1.06
    (st,) = store.source_states(EVENT)
    assert "quota" in (st.last_error or "") and st.next_try is not None
    calls = len(fake.list_requests())
    t.advance(3600)
    await runner.poll_once(http)
    assert len(fake.list_requests()) == calls  # asleep: not even one more try


async def test_too_many_requests_is_a_short_rate_limit_sleep(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.say("one")
    source = chat(fake, t)
    runner = runner_for(store, source, t)
    await runner.poll_once(http)
    fake.errors.append((403, TOO_FAST))
    t.advance(5)
    await runner.poll_once(http)
    assert runner.state is SourceState.SLEEPING and not runner.stopped
    assert runner.not_before - t.mono < 10  # the last polling interval (5 s) and a little


# -- the end of the chat --------------------------------------------------------------------


async def test_offline_stream_keeps_its_last_page_then_stops_without_another_request(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.say("see you next year")
    fake.offline_at = (T0 + timedelta(minutes=3)).isoformat()
    source = chat(fake, t)
    runner = runner_for(store, source, t)
    await runner.poll_once(http)
    assert texts(store) == ["see you next year"]
    assert runner.stopped and source.ended and "offline" in source.ended
    t.advance(3600)
    await runner.poll_once(http)
    assert len(fake.list_requests()) == 1


@pytest.mark.parametrize(("status", "body"), [(403, CHAT_ENDED), (404, CHAT_NOT_FOUND)])
async def test_ended_or_missing_chat_stops_the_source(
    store: Store,
    fake: FakeYouTube,
    http: aiohttp.ClientSession,
    t: Time,
    status: int,
    body: dict[str, object],
) -> None:
    fake.say("last words")
    source = chat(fake, t)
    runner = runner_for(store, source, t)
    await runner.poll_once(http)
    fake.errors.append((status, body))
    t.advance(10)
    await runner.poll_once(http)
    assert runner.stopped and texts(store) == ["last words"]
    (st,) = store.source_states(EVENT)
    assert "live chat has ended" in (st.detail or st.last_error or "")
    with pytest.raises(ChatEnded):
        await source.poll(http, store.cursor(source.key))
    assert len(fake.list_requests()) == 2  # no request once it is over


@pytest.mark.xfail(
    not RUNNER_KNOWS_FINISHED, strict=True, reason="needs SourceFinished in sources/base.py and the runner"
)
async def test_ended_chat_is_shown_as_stopped_not_failing(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.ended = True
    source = chat(fake, t)
    await runner_for(store, source, t).poll_once(http)
    assert state(store, source) is SourceState.STOPPED


async def test_video_without_active_chat_is_retried_and_an_ended_video_stops(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.videos["upcoming"] = {"scheduledStartTime": "2026-06-22T18:00:00Z"}
    upcoming = chat(fake, t, video_id="upcoming")
    runner = runner_for(store, upcoming, t)
    await runner.poll_once(http)
    assert runner.state is SourceState.BACKING_OFF and not runner.stopped

    fake.videos["over"] = {"actualStartTime": "2026-06-21T18:00:00Z", "actualEndTime": "2026-06-21T20:00:00Z"}
    over = chat(fake, t, video_id="over")
    runner = runner_for(store, over, t)
    await runner.poll_once(http)
    assert runner.stopped and over.ended and "ended" in over.ended


# -- gaps -----------------------------------------------------------------------------------


async def test_refused_page_token_after_downtime_reads_afresh_and_reports_what_is_lost(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.history_limit = 2
    fake.say("early", at=T0 + timedelta(minutes=4))
    source = chat(fake, t)
    await runner_for(store, source, t).poll_once(http)
    last_poll = t.wall
    cursor = store.cursor(source.key)

    # Down for an hour; the chat went on, and the token is no longer accepted.
    for minute in (10, 30, 50, 64):
        fake.say(f"minute {minute}", at=T0 + timedelta(minutes=minute))
    fake.expire_tokens()
    t.advance(3600)
    restarted = chat(fake, t)
    page = await restarted.poll(http, cursor)

    tokens = [r.query.get("pageToken") for r in fake.list_requests()]
    assert tokens[1] is not None and tokens[2] is None  # refused, then read afresh
    assert [m.text for m in page.messages] == ["minute 50", "minute 64"]  # what history still holds
    assert page.gap is not None
    gap_from, gap_to, reason = page.gap
    assert (gap_from, gap_to) == (last_poll, T0 + timedelta(minutes=50)) and "lost" in reason


async def test_refused_token_with_history_covering_the_absence_is_no_gap(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.say("early", at=T0 + timedelta(minutes=4))
    source = chat(fake, t)
    page = await source.poll(http, None)
    fake.say("while away", at=T0 + timedelta(minutes=6))
    fake.expire_tokens()
    t.advance(120)
    again = await chat(fake, t).poll(http, page.cursor)
    assert [m.text for m in again.messages] == ["early", "while away"] and again.gap is None


@pytest.mark.xfail(not RUNNER_RECORDS_GAPS, strict=True, reason="needs Page.gap and the runner to record it")
async def test_runner_records_the_gap(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.history_limit = 1
    fake.say("early", at=T0 + timedelta(minutes=4))
    source = chat(fake, t)
    await runner_for(store, source, t).poll_once(http)
    fake.say("later", at=T0 + timedelta(minutes=50))
    fake.expire_tokens()
    t.advance(3600)
    await runner_for(store, chat(fake, t), t).poll_once(http)
    (gap,) = store.gaps(EVENT)
    assert gap.source == source.key and gap.gap_to == T0 + timedelta(minutes=50)


# -- content --------------------------------------------------------------------------------

HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> [x](javascript:alert(3)) "
    "javascript:alert(4) \u202eevil\u202c https://example.org/slides #slz"
)


async def test_hostile_text_is_kept_as_plain_text_with_only_web_links(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    fake.say(HOSTILE, name="<b>Mallory</b>")
    await runner_for(store, chat(fake, t), t).poll_once(http)
    (stored,) = store.messages(EVENT)
    m = stored.message
    assert m.text == HOSTILE  # stored as sent: it is text, escaped wherever it is shown
    assert m.author_name == "<b>Mallory</b>"
    assert m.links == ("https://example.org/slides",) and m.hashtags == ("slz",)


async def test_super_chat_keeps_its_display_message_and_deletes_are_applied(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    doomed = fake.say("buy cheap followers")
    fake.say(
        '$5.00 from Grace: "great talk"',
        kind="superChatEvent",
        superChatDetails={"amountDisplayString": "$5.00", "userComment": "great talk", "tier": 2},
    )
    fake.say("", kind="tombstone", hasDisplayContent=False)
    runner = runner_for(store, chat(fake, t), t)
    await runner.poll_once(http)
    assert texts(store) == ["buy cheap followers", '$5.00 from Grace: "great talk"']

    fake.delete(doomed)
    t.advance(10)
    await runner.poll_once(http)
    gone = store.message_by_uri(EVENT, f"youtube:{doomed}")
    assert gone is not None and gone.deleted
    assert texts(store) == ['$5.00 from Grace: "great talk"']


def test_malformed_items_are_rejected_one_by_one() -> None:
    good = {
        "id": "ok",
        "snippet": {
            "type": "textMessageEvent",
            "publishedAt": "2026-06-22T17:00:01.5Z",
            "displayMessage": "hi",
        },
        "authorDetails": {"channelId": "UC1", "displayName": "A"},
    }
    body = {
        "nextPageToken": "n",
        "pollingIntervalMillis": 1234,
        "items": [good, {"id": "x", "snippet": {"type": "textMessageEvent"}}, "junk"],
    }
    read = core.read_list_response(body)
    assert [m.network_id for m in read.messages] == ["ok"]
    assert read.messages[0].created_at == datetime(2026, 6, 22, 17, 0, 1, 500000, tzinfo=UTC)
    assert len(read.rejected) == 2 and read.rejected[0].startswith("item x:")
    assert read.polling_interval == pytest.approx(1.234) and read.next_page_token == "n"


def test_quota_day_follows_pacific_time_through_daylight_saving() -> None:
    # 8 March 2026: clocks in Los Angeles go forward at 02:00; that day has 23 hours.
    before = datetime(2026, 3, 8, 7, 59, tzinfo=UTC)  # 23:59 PST on the 7th
    assert core.quota_day(before).isoformat() == "2026-03-07"
    assert core.seconds_until_quota_reset(before) == 60
    just_after = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)
    assert core.seconds_until_quota_reset(just_after) == 23 * 3600


async def test_bad_api_key_stops_and_asks_for_a_person(
    store: Store, fake: FakeYouTube, http: aiohttp.ClientSession, t: Time
) -> None:
    source = YouTubeChat(api_key="wrong", live_chat_id=fake.live_chat_id, api=fake.url, now=t.now)
    runner = runner_for(store, source, t)
    await runner.poll_once(http)
    assert runner.stopped and runner.state is SourceState.FAILING
    (st,) = store.source_states(EVENT)
    assert "BACKCHANNEL_YOUTUBE_API_KEY" in (st.last_error or "") and "wrong" not in (st.last_error or "")


def test_event_file_builds_the_source_and_keeps_the_key_off_plain_http() -> None:
    text = '[event]\nname = "slz"\n[[sources]]\nnetwork = "youtube"\nvideo_id = "dQw4w9WgXcQ"\n'
    (source,) = build_sources(parse(text, environ={"BACKCHANNEL_YOUTUBE_API_KEY": "k"}))
    assert isinstance(source, YouTubeChat) and source.key == "youtube:video:dQw4w9WgXcQ"
    assert source.api == "https://www.googleapis.com" and source.interval == 10
    with pytest.raises(ConfigError, match="https"):
        build_sources(
            parse(text + 'api = "http://proxy.example"\n', environ={"BACKCHANNEL_YOUTUBE_API_KEY": "k"})
        )


def test_cursor_round_trips_and_accepts_a_bare_token() -> None:
    cursor = ChatCursor("tok", datetime(2026, 6, 22, tzinfo=UTC), "2026-06-21", 35)
    assert ChatCursor.loads(cursor.dumps()) == cursor
    assert ChatCursor.loads("GLgBCg000001").page_token == "GLgBCg000001"
    assert orjson.loads(cursor.dumps())["quota_used"] == 35
