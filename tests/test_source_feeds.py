"""RSS/Atom feeds through the real runner, against a fake Blogger comment feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from fakes.feeds import BLOG_ID, PACIFIC, POST_ID, POST_URL, Comment, FakeBlog, blogger_id

from backchannel.core.feeds import parse_feed
from backchannel.core.models import Network
from backchannel.errors import PayloadError
from backchannel.eventfile import build_sources, parse
from backchannel.jobs import SourceRunner
from backchannel.sources.base import SourceState, http_session
from backchannel.sources.feeds import FeedSource
from backchannel.store import Store

EVENT = "cipd11"


@pytest.fixture
async def blog() -> AsyncIterator[FakeBlog]:
    async with FakeBlog() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(timeout=10) as session:
        yield session


def comment(comment_id: str, html: str, author: str = "Samuel Driessen") -> Comment:
    return Comment(comment_id, author, datetime(2011, 11, 19, 10, 0, tzinfo=PACIFIC), html)


async def test_blogger_comments_become_plain_text_messages_keyed_by_their_atom_ids(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    source = FeedSource(blog.url)
    await SourceRunner(store, EVENT, source).poll_once(http)
    messages = [m.message for m in store.messages(EVENT, order="seq")]
    assert [m.uri for m in messages] == [c.id for c in blog.comments]
    first = messages[0]
    assert first.uri == f"tag:blogger.com,1999:blog-{BLOG_ID}.post-5760686557270386096"
    assert first.network is Network.FEED and first.network_id == first.uri
    assert first.author_name == "Jon Ingham"
    assert first.author_handle == "https://www.blogger.com/profile/00000000000000000001"
    assert first.text.startswith(
        "I've had a comment on this post on another post over at Strategic HCM: https://"
    )
    assert "\n\nIn response to this" in first.text  # <br /><br /> is a paragraph break
    assert first.created_at == datetime(2011, 11, 18, 14, 52, 19, tzinfo=UTC)  # -08:00, to the second
    assert first.permalink == f"{POST_URL}?showComment=1321627939710#c5760686557270386096"
    assert first.links == (
        "https://strategic-hcm.blogspot.com/2011/11/my-favourite-post-from-cipd11-was.html",
    )
    assert first.reply_to == f"tag:blogger.com,1999:blog-{BLOG_ID}.post-{POST_ID}"
    # The author without a profile URI is known by name; anchors and bare URLs are links.
    natalie, barry = messages[1], messages[2]
    assert natalie.author_handle == "Natalie Cooper"
    assert natalie.links == ("https://www.changeboard.com/content/3817/leadership-and-management/",)
    assert barry.hashtags == ("socialbusiness",)
    assert orjson.loads(first.raw or "{}")["id"] == first.uri


async def test_unchanged_feed_is_a_304_that_stores_nothing(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    source = FeedSource(blog.url)
    runner = SourceRunner(store, EVENT, source)
    await runner.poll_once(http)
    cursor = store.cursor(source.key)
    assert cursor is not None and orjson.loads(cursor)["etag"]
    before = store.count(EVENT)

    await runner.poll_once(http)
    first, second = blog.requests
    assert "If-None-Match" not in first
    assert second["If-None-Match"] == orjson.loads(cursor)["etag"]
    assert second["If-Modified-Since"] == orjson.loads(cursor)["modified"]
    assert store.count(EVENT) == before and store.cursor(source.key) == cursor
    assert runner.state is SourceState.COLLECTING


async def test_a_new_comment_is_stored_once(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    published: list[Any] = []
    source = FeedSource(blog.url)
    runner = SourceRunner(store, EVENT, source, publish=lambda event, items: published.extend(items))
    await runner.poll_once(http)
    blog.add(comment("1618033988749894848", "Great (and fast!) post Jon. I am reading #PowerofPull now"))
    await runner.poll_once(http)
    await runner.poll_once(http)  # unchanged again: a 304
    assert store.count(EVENT) == 4
    assert [p.message.uri for p in published][-1] == blogger_id("1618033988749894848")
    assert len(published) == 4  # the three old ones were not published again


async def test_entries_repeated_by_a_server_without_validators_are_stored_once(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    blog.conditional = False  # no ETag, no Last-Modified: every poll gets the whole feed
    runner = SourceRunner(store, EVENT, FeedSource(blog.url))
    for _ in range(3):
        await runner.poll_once(http)
    assert store.count(EVENT) == 3
    assert all("If-None-Match" not in r and "If-Modified-Since" not in r for r in blog.requests)


async def test_comment_html_is_sanitised_to_text_and_unsafe_links_dropped(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    blog.comments = [
        Comment(
            "9999999999999999991",
            "Mallory",
            datetime(2011, 11, 19, 9, 0, tzinfo=UTC),
            "Hi<script>alert('stolen')</script> <img src=x onerror=alert(1)>"
            '<a href="javascript:alert(2)">click me</a> <a href=" JaVaScRiPt:alert(3)">again</a> '
            '<a href="data:text/html,<script>alert(4)</script>">data</a> '
            '<a href="https://example.org/ok" onclick="alert(5)">fine</a><style>body{}</style>',
            link="javascript:alert(6)",
        )
    ]
    await SourceRunner(store, EVENT, FeedSource(blog.url)).poll_once(http)
    (stored,) = store.messages(EVENT)
    m = stored.message
    assert m.text == "Hi click me again data fine"
    assert "alert" not in m.text and "<" not in m.text
    assert m.links == ("https://example.org/ok",)
    assert m.permalink is None  # the entry's javascript: link is no permalink


async def test_a_feed_bigger_than_one_read_is_read_whole(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    blog.comments = [comment(f"{10**18 + i}", f"comment {i}: " + "words " * 100) for i in range(300)]
    await SourceRunner(store, EVENT, FeedSource(blog.url)).poll_once(http)
    assert len(blog.atom()) > 200_000 and store.count(EVENT) == 300


async def test_rss_variant_reads_the_same_comments(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    await SourceRunner(store, EVENT, FeedSource(blog.rss_url)).poll_once(http)
    messages = [m.message for m in store.messages(EVENT, order="seq")]
    assert [m.uri for m in messages] == [c.id for c in blog.comments]  # the guids
    assert [m.author_name for m in messages] == ["Jon Ingham", "Natalie Cooper", "Barry Sampson"]
    assert messages[0].created_at == datetime(2011, 11, 18, 14, 52, 19, tzinfo=UTC)
    assert messages[0].text.startswith("I've had a comment")


async def test_failures_back_off_and_429_sleeps_until_retry_after(
    store: Store, blog: FakeBlog, http: aiohttp.ClientSession
) -> None:
    blog.errors.append((503, {}, "busy"))
    runner = SourceRunner(store, EVENT, FeedSource(blog.url))
    await runner.poll_once(http)
    assert runner.state is SourceState.BACKING_OFF and store.count(EVENT) == 0

    blog.errors.append((429, {"Retry-After": "600"}, "slow down"))
    runner = SourceRunner(store, EVENT, FeedSource(blog.url))
    await runner.poll_once(http)
    assert runner.state is SourceState.SLEEPING
    assert 600 < runner.not_before - runner.clock() < 700

    runner = SourceRunner(store, EVENT, FeedSource(f"{blog.base}/not-a-feed"))
    await runner.poll_once(http)
    assert runner.state is SourceState.BACKING_OFF and "not an RSS or Atom feed" in (
        store.source_states(EVENT)[-1].last_error or ""
    )


def test_entries_without_a_usable_id_or_text_are_rejected_alone() -> None:
    body = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
        b"<item><description>no id and no link</description></item>"
        b"<item><guid isPermaLink='false'>42</guid><description>a &lt;b&gt;bare&lt;/b&gt; guid</description></item>"
        b"<item><guid isPermaLink='false'>tag:x,2011:1</guid><description></description></item>"
        b"</channel></rss>"
    )
    read = parse_feed(body, url="https://blog.example/feed", fetched_at=datetime(2026, 6, 22, tzinfo=UTC))
    assert [(m.uri, m.text) for m in read.messages] == [("https://blog.example/feed#42", "a bare guid")]
    assert read.messages[0].created_at == datetime(2026, 6, 22, tzinfo=UTC)  # no pubDate: when fetched
    assert len(read.rejected) == 2
    with pytest.raises(PayloadError):
        parse_feed(b"<html><body>hello</body></html>", url="https://blog.example/")


def test_plain_text_content_is_kept_literally() -> None:
    body = (
        b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>t</title>"
        b"<entry><id>urn:x:1</id><updated>2011-11-18T06:52:19-08:00</updated>"
        b"<content type='text'>if a &lt; b &amp;&amp; c &gt; d then &lt;br&gt; is text</content></entry></feed>"
    )
    (message,) = parse_feed(body, url="https://blog.example/feed").messages
    assert message.text == "if a < b && c > d then <br> is text"


def test_event_file_builds_a_feed_source_polled_every_five_minutes() -> None:
    text = '[event]\nname = "x"\n[[sources]]\nnetwork = "feed"\nurl = "https://blog.example/feeds/comments/default"\n'
    (source,) = build_sources(parse(text, environ={}))
    assert isinstance(source, FeedSource) and source.interval == 300
    assert source.key == "feed:https://blog.example/feeds/comments/default"
