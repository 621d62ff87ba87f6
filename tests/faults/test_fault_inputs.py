"""Hostile and broken input at ingest (issue 10): out-of-range times, huge messages,
a `raw` that is not JSON, a TAGS CSV whose quote never closes.

Each record that cannot be read is a named rejection of that record alone; the records
around it are kept. Huge values are cut to the caps of `core/limits.py`.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakes import eventually
from fakes.bluesky import T0_US, FakeBluesky, post

from backchannel.bulk import bulk_ingest
from backchannel.core import bluesky, feeds, limits, mastodon, tags, twarc, youtube
from backchannel.core.models import Message
from backchannel.core.record import message_from_record, message_to_record
from backchannel.errors import PayloadError
from backchannel.jobs import SourceRunner
from backchannel.sources.archive import Rejected, read_archive
from backchannel.sources.base import http_session
from backchannel.sources.bluesky import BlueskySource
from backchannel.sources.files import FileSource
from backchannel.store import Store

MS = 0.001 * float(os.environ.get("BACKCHANNEL_TEST_TIMEOUT_FACTOR", "1"))
# Year 9999 at UTC-14 is year 10000 in UTC: fromisoformat reads it, astimezone overflows.
OUT_OF_RANGE = "9999-12-31T23:59:59-14:00"
TAGS_HEADER = "id_str,from_user,text,created_at,status_url\n"


def record(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "network": "x",
        "network_id": str(i),
        "author_handle": f"user{i}",
        "text": f"message {i} #slz",
        "created_at": "2010-06-22T12:00:00Z",
        **fields,
    }


def jsonl(path: Path, *records: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def split(items: Any) -> tuple[list[Message], list[Rejected]]:
    items = list(items)
    return [i for i in items if isinstance(i, Message)], [i for i in items if isinstance(i, Rejected)]


# -- 7. a created_at out of range --------------------------------------------------------


def test_an_out_of_range_time_rejects_that_record_of_an_archive(tmp_path: Path, store: Store) -> None:
    path = jsonl(tmp_path / "a.jsonl", record(1), record(2, created_at=OUT_OF_RANGE), record(3))
    stats = bulk_ingest(store, "slz", read_archive(path))
    assert stats.added == 2
    assert [(r.where, r.reason) for r in stats.rejected] == [
        ("line 2", f"created_at is out of range in UTC: {OUT_OF_RANGE!r}")
    ]
    assert sorted(m.message.network_id for m in store.messages("slz")) == ["1", "3"]


def _status(i: int, created_at: str) -> dict[str, Any]:
    return {
        "id": str(i),
        "uri": f"https://m.example/users/a/statuses/{i}",
        "created_at": created_at,
        "content": "<p>hi #slz</p>",
        "account": {"acct": "a", "display_name": "A"},
    }


def _tweet(i: int, created_at: str) -> dict[str, Any]:
    return {"id": str(i), "text": "hi #slz", "created_at": created_at, "author_id": "9"}


def _chat_item(i: int, published: str) -> dict[str, Any]:
    return {
        "id": f"c{i}",
        "snippet": {"type": "textMessageEvent", "displayMessage": "hi", "publishedAt": published},
        "authorDetails": {"channelId": "UC1", "displayName": "Ann"},
    }


def test_every_normaliser_rejects_an_out_of_range_time_by_name() -> None:
    with pytest.raises(PayloadError, match="out of range"):
        mastodon.messages_from_status(_status(1, OUT_OF_RANGE))
    with pytest.raises(PayloadError, match="out of range"):
        message_from_record(record(1, created_at="0001-01-01T00:00:00+01:00"))
    # A twarc page and a YouTube response keep the other posts of the page.
    page = {
        "data": [
            _tweet(1, "2020-05-23T18:00:00Z"),
            _tweet(2, OUT_OF_RANGE),
            _tweet(3, "2020-05-23T18:01:00Z"),
        ]
    }
    messages, problems = twarc.messages_from_twarc_page(page)
    assert [m.network_id for m in messages] == ["1", "3"]
    assert problems == [f"tweet 2: created_at is out of range in UTC: {OUT_OF_RANGE!r}"]
    items = [
        _chat_item(1, "2026-06-22T12:00:00Z"),
        _chat_item(2, OUT_OF_RANGE),
        _chat_item(3, "2026-06-22T12:00:01Z"),
    ]
    read = youtube.read_list_response({"items": items})
    assert [m.network_id for m in read.messages] == ["c1", "c3"]
    assert read.rejected == [f"item c2: created_at is out of range in UTC: {OUT_OF_RANGE!r}"]
    row = {"id_str": "5", "from_user": "a", "text": "hi", "created_at": "Fri Dec 31 23:59:59 -1400 9999"}
    with pytest.raises(PayloadError, match="out of range"):
        tags.message_from_row(row)


def test_bluesky_and_feeds_fall_back_to_their_own_clock_for_an_out_of_range_time() -> None:
    # Both already date a post by Jetstream's clock (or the fetch) when its own time is unusable.
    frame = orjson.dumps(post("did:plc:a", "3k1", "hi #slz", time_us=T0_US, created_at=OUT_OF_RANGE))
    commit = bluesky.parse_event(frame)
    assert isinstance(commit, bluesky.Commit)
    assert bluesky.post_message(commit).created_at == datetime(2026, 6, 22, 12, tzinfo=UTC)
    with pytest.raises(PayloadError, match="time_us"):
        bluesky.parse_event(orjson.dumps({**orjson.loads(frame), "time_us": 10**18}))
    fetched = datetime(2026, 6, 22, 12, tzinfo=UTC)
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><guid>https://b.example/1</guid><description>hi</description>"
        b"<pubDate>Fri, 31 Dec 9999 23:59:59 -1400</pubDate></item></channel></rss>"
    )
    read = feeds.parse_feed(rss, url="https://b.example/feed", fetched_at=fetched)
    assert read.rejected == []
    assert [m.created_at for m in read.messages] == [fetched]


def test_a_feed_that_breaks_the_feed_parser_is_a_named_rejection() -> None:
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><item><guid>g</guid>'
        b"<description>&#xD800;</description></item></channel></rss>"
    )
    with pytest.raises(PayloadError, match="the feed cannot be read: UnicodeEncodeError"):
        feeds.parse_feed(rss, url="https://b.example/feed")


async def test_jetstream_keeps_the_posts_around_one_with_an_out_of_range_time(store: Store) -> None:
    profiles = {"did:plc:a": ("a.bsky.social", "A")}
    async with FakeBluesky(profiles) as fake, http_session() as http:
        source = BlueskySource(
            ["slz"], key="bluesky:slz", endpoint=fake.ws_url, appview=fake.url, flush_interval=50 * MS
        )
        runner = SourceRunner(store, "slz", source)
        task = asyncio.create_task(runner.run_stream(http))
        try:
            await eventually(lambda: fake.subscribers, what="the source to connect")
            fake.push(post("did:plc:a", "3k1", "first #slz"))
            fake.push(post("did:plc:a", "3k2", "far future #slz", created_at=OUT_OF_RANGE))
            last = fake.push(post("did:plc:a", "3k3", "third #slz"))
            await eventually(lambda: store.cursor("bluesky:slz") == str(last["time_us"]), what="the cursor")
            assert sorted(m.message.network_id for m in store.messages("slz")) == ["3k1", "3k2", "3k3"]
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# -- 8. length caps -------------------------------------------------------------------------


def test_a_huge_message_is_cut_visibly_and_its_original_kept_in_raw(store: Store) -> None:
    text = "word " * 40_000  # 200,000 characters
    status = {**_status(1, "2026-06-22T12:00:00Z"), "content": f"<p>{text}</p>"}
    [message] = mastodon.messages_from_status(status)
    assert len(message.text) == limits.TEXT_MAX
    assert message.text.endswith("… [truncated]")
    assert message.raw is not None and orjson.loads(message.raw)["content"] == f"<p>{text}</p>"
    store.ingest("slz", [message])
    [stored] = store.messages("slz")
    assert stored.message.text == message.text


def test_every_field_is_capped_whatever_builds_the_message() -> None:
    long_uri = "https://x.example/" + "u" * 5000
    m = message_from_record(
        record(
            1,
            uri=long_uri,
            reply_to=long_uri,
            author_handle="h" * 1000,
            author_name="n" * 1000,
            text="t" * 1_000_000,
            permalink=long_uri,
            hashtags=[f"tag{i}" for i in range(1000)] + ["x" * 300],
            links=["https://l.example/" + "l" * 3000, "https://ok.example/"],
            raw={"text": "t" * 300_000},
        )
    )
    assert len(m.text) == limits.TEXT_MAX and m.text.endswith(limits.TRUNCATED)
    assert len(m.author_name) == limits.NAME_MAX and m.author_name.endswith("…")
    assert len(m.author_handle) == limits.HANDLE_MAX
    assert len(m.uri) == limits.URL_MAX and m.reply_to == m.uri
    assert m.permalink is None
    assert m.hashtags == tuple(f"tag{i}" for i in range(50))
    assert m.links == ("https://ok.example/",)
    assert m.raw is not None and len(m.raw) < 2 * limits.RAW_MAX and "truncated" in orjson.loads(m.raw)
    # Two long identities with the same beginning stay two; a capped message round-trips.
    other = message_from_record(record(2, uri=long_uri + "v"))
    assert other.uri != m.uri and len(other.uri) == limits.URL_MAX
    again = message_from_record(orjson.loads(orjson.dumps(message_to_record(m))))
    assert (again.text, again.uri, again.author_handle, again.raw) == (m.text, m.uri, m.author_handle, m.raw)


def test_messages_within_the_caps_are_left_alone() -> None:
    m = message_from_record(record(1, text="x" * limits.TEXT_MAX, author_name="n" * limits.NAME_MAX))
    assert m.text == "x" * limits.TEXT_MAX and m.author_name == "n" * limits.NAME_MAX


def _link_facet(start: int, end: int, uri: str) -> dict[str, Any]:
    return {"index": {"byteStart": start, "byteEnd": end}, "features": [{"$type": bluesky.LINK, "uri": uri}]}


def _bluesky_post(text: str, facets: list[dict[str, Any]]) -> Message:
    commit = bluesky.parse_event(orjson.dumps(post("did:plc:a", "3k1", text, facets=facets, time_us=T0_US)))
    assert isinstance(commit, bluesky.Commit)
    return bluesky.post_message(commit)


def test_a_bluesky_post_with_thousands_of_link_facets_is_built_in_linear_time() -> None:
    shown, uri = "ex.co/x…", "https://ex.co/x-long-path"
    width = len(shown.encode())
    head = "a" * 1_000_000
    text = head + " ".join([shown] * 10_000)
    facets = [
        _link_facet(at, at + width, uri)
        for at in range(len(head), len(head) + 10_000 * (width + 1), width + 1)
    ]
    start = time.perf_counter()
    message = _bluesky_post(text, facets)
    # Copying the megabyte once per facet took seconds; one pass takes a tenth of one.
    assert time.perf_counter() - start < 1.5
    assert message.text.startswith("a" * 100) and message.links == (uri,)
    both = _bluesky_post(
        f"{shown} and {shown}", [_link_facet(0, width, uri), _link_facet(width + 5, 2 * width + 5, uri)]
    )
    assert both.text == f"{uri} and {uri}"


# -- 9. a raw that is not JSON ------------------------------------------------------------------


def test_a_raw_string_that_is_not_json_rejects_the_record_at_import(tmp_path: Path, store: Store) -> None:
    path = jsonl(
        tmp_path / "a.jsonl",
        record(1, raw='{"id": 1}'),
        record(2, raw="not json at all"),
        record(3, raw={"id": 3}),
    )
    stats = bulk_ingest(store, "slz", read_archive(path))
    assert stats.added == 2
    assert [r.where for r in stats.rejected] == ["line 2"]
    assert stats.rejected[0].reason.startswith("raw is a string but not JSON text (")
    # What was kept exports whole: every raw reads back as JSON.
    exported = [message_to_record(m) for m in store.messages("slz")]
    assert sorted(str(r["raw"]) for r in exported) == ["{'id': 1}", "{'id': 3}"]


# -- 10. a TAGS quote that never closes ---------------------------------------------------------


def tags_row(i: int, author: str, text: str) -> str:
    return f"{i},{author},{text},Sat May 23 18:0{i}:00 +0000 2020,https://twitter.com/{author}/status/{i}\n"


UNCLOSED = (
    TAGS_HEADER
    + tags_row(1, "ann", '"an unterminated quote')  # line 2
    + tags_row(2, "bob", '"a quoted, cell"')  # line 3: its first quote closes line 2's
    + tags_row(3, "cat", "plain")  # line 4
)


def test_an_unclosed_quote_in_a_tags_import_names_both_rows_and_keeps_the_second(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(UNCLOSED)
    messages, rejected = split(read_archive(path, format="tags"))
    assert [(m.network_id, m.author_handle, m.text) for m in messages] == [
        ("2", "bob", "a quoted, cell"),
        ("3", "cat", "plain"),
    ]
    assert [(r.where, r.reason) for r in rejected] == [
        (
            "line 2",
            "a quoted cell opened here never closes before line 3 reads as a row of its own: line 2 left out",
        )
    ]


def test_a_tags_quote_open_to_the_end_of_the_file_loses_no_row_silently(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(TAGS_HEADER + tags_row(1, "ann", '"never closed') + tags_row(2, "bob", "fine"))
    messages, rejected = split(read_archive(path, format="tags"))
    assert [(m.network_id, m.author_handle) for m in messages] == [("2", "bob")]
    assert [r.where for r in rejected] == ["line 2"]


def test_a_stray_quote_inside_an_unquoted_tags_cell_is_a_character(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(TAGS_HEADER + tags_row(1, "ann", 'he said "hi') + tags_row(2, "bob", "fine"))
    messages, rejected = split(read_archive(path, format="tags"))
    assert [(m.author_handle, m.text) for m in messages] == [("ann", 'he said "hi'), ("bob", "fine")]
    assert rejected == []


def test_a_multiline_quoted_cell_is_still_one_row(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(
        TAGS_HEADER + tags_row(1, "ann", '"two\nlines, and a comma"') + tags_row(2, "bob", "fine")
    )
    messages, rejected = split(read_archive(path, format="tags"))
    assert [m.text for m in messages] == ["two\nlines, and a comma", "fine"]
    assert rejected == []


def test_an_unclosed_quote_in_a_followed_tags_file_names_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(UNCLOSED)
    page = FileSource(path, format="tags").read(None)
    assert [(m.network_id, m.author_handle) for m in page.messages] == [("2", "bob"), ("3", "cat")]
    assert page.rejected == [
        "line 2: a quoted cell opened here never closes before line 3 reads as a row of its own: line 2 left out"
    ]


def test_a_followed_tags_file_keeps_its_place_around_an_unclosed_quote(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(
        TAGS_HEADER
        + tags_row(1, "ann", 'he said "hi')  # line 2: a stray quote, still a whole row
        + tags_row(2, "bob", '"never closed')  # line 3
        + tags_row(3, "cat", "plain")  # line 4
    )
    source = FileSource(path, format="tags")
    page = source.read(None)
    assert [(m.network_id, m.author_handle) for m in page.messages] == [("1", "ann"), ("3", "cat")]
    assert page.rejected == [
        "line 3: a quoted cell opened here never closes before line 4 reads as a row of its own: line 3 left out"
    ]
    with path.open("a") as fh:
        fh.write("5,dan,plain,not a time,https://twitter.com/dan/status/5\n")
    later = source.read(page.cursor)
    assert later.messages == [] and later.rejected == [
        "line 5: created_at is not a Twitter time: 'not a time'"
    ]


def test_a_stray_quote_before_an_unclosed_one_keeps_its_row_in_an_import(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(
        TAGS_HEADER
        + tags_row(1, "ann", 'he said "hi')
        + tags_row(2, "bob", '"never closed')
        + tags_row(3, "cat", "x")
    )
    messages, rejected = split(read_archive(path, format="tags"))
    assert [(m.network_id, m.author_handle) for m in messages] == [("1", "ann"), ("3", "cat")]
    assert [r.where for r in rejected] == ["line 3"]
