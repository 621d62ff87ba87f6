"""Property tests: every importer and normaliser, given any input, yields a message or a
named rejection, never a crash nor a half-written record; the question detector is
linear and decides as the backtracking detector it replaced did.

Bounded (max_examples, no per-example deadline on a shared machine): the whole module
runs in well under a minute.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backchannel.core import bluesky, feeds, limits, mastodon, questions, tags, twarc, youtube
from backchannel.core.models import Message
from backchannel.core.record import message_from_record, message_to_record
from backchannel.errors import PayloadError
from backchannel.sources.archive import Rejected, read_archive
from backchannel.sources.files import FileSource
from backchannel.store import Store

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
FAST = settings(SETTINGS, max_examples=200)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
times = st.sampled_from(
    [
        "2010-06-22T12:00:00Z",
        "2010-06-22T12:00:00+01:00",
        "2010-06-22T12:00:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+01:00",
        "not a time",
        "",
    ]
) | st.text(max_size=30)
words = st.text(max_size=40) | st.text(alphabet="#@ .?'\"-:RTwhoisWeHow", max_size=40)
huge = st.integers(1, 3).map(lambda n: "y" * (limits.TEXT_MAX * n + 1))


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, any JSON value sometimes."""
    return st.one_of(strategy, strategy, json_values)


records = st.fixed_dictionaries(
    {
        "network": maybe(st.sampled_from(["x", "mastodon", "bluesky", "youtube", "feed", "file", "myspace"])),
        "network_id": maybe(st.text(min_size=1, max_size=20)),
        "author_handle": maybe(st.text(min_size=1, max_size=20)),
        "text": maybe(words | huge),
        "created_at": maybe(times),
    },
    optional={
        "uri": maybe(st.text(max_size=30)),
        "author_name": maybe(st.text(max_size=30)),
        "permalink": maybe(st.text(max_size=30)),
        "reply_to": maybe(st.text(max_size=30)),
        "repost_of": maybe(st.text(max_size=30)),
        "hashtags": maybe(st.lists(st.text(max_size=10), max_size=60)),
        "mentions": maybe(st.lists(st.text(max_size=10), max_size=5)),
        "links": maybe(st.lists(st.text(max_size=10), max_size=5)),
        "raw": maybe(st.text(max_size=20) | st.just('{"id": 1}')),
    },
)


def assert_whole(message: Message) -> None:
    """A message as the store and the export need it: within the caps, exportable as JSON."""
    assert len(message.text) <= limits.TEXT_MAX
    assert len(message.author_name) <= limits.NAME_MAX and len(message.author_handle) <= limits.HANDLE_MAX
    assert len(message.uri) <= limits.URL_MAX
    assert all(len(v) <= limits.ITEMS_MAX for v in (message.hashtags, message.mentions, message.links))
    assert message.created_at.tzinfo is UTC
    line = orjson.dumps(message_to_record(message))  # what the JSONL export writes
    again = message_from_record(orjson.loads(line))
    assert (again.uri, again.text, again.created_at, again.raw) == (
        message.uri,
        message.text,
        message.created_at,
        message.raw,
    )


# -- the question detector --------------------------------------------------------------

# The detector's opening pattern before it was made possessive: the reference it must agree
# with. Only fed short texts, where its backtracking costs milliseconds.
_BACKTRACKING = re.compile(
    r"(?:\s|RT\b:?|[@#][\w.@-]+:?|[-–—:;,.>|\"'“”‘’()]+)*([A-Za-z']+)(?:[^A-Za-z']+([A-Za-z']+))?",
    re.IGNORECASE,
)


def _backtracking_is_question(text: str) -> bool:
    if "?" in text and "?" in questions._URL.sub(" ", text):
        return True
    match = _BACKTRACKING.match(text)
    if not match:
        return False
    first, second = match.groups()
    if first.lower() in questions.WH_WORDS:
        return True
    return (
        first.lower() in questions.AUXILIARIES
        and second is not None
        and second.lower() not in questions.NOT_A_SUBJECT
    )


# The characters the opening pattern treats specially, and words it decides on.
opening_pieces = st.lists(
    st.sampled_from(
        [*" .,:;@#-'\"“()?1_RTrt", "is", "who", "we", "be", "How", "Will", "www.", "http://", "é"]
    ),
    max_size=10,
).map("".join)


@FAST
@given(opening_pieces | st.text(max_size=16))
def test_the_detector_decides_as_the_backtracking_one_did(text: str) -> None:
    assert questions.is_question(text) == _backtracking_is_question(text)


@SETTINGS
@given(st.text(alphabet=" .,:;@#-'\"“()RT1a?/w", min_size=1, max_size=8))
def test_the_detector_is_linear_on_any_repeated_pattern(unit: str) -> None:
    text = unit * (100_000 // len(unit)) + "1"
    start = time.perf_counter()
    questions.is_question(text)
    # 100 KB: milliseconds when linear; a backtracking detector takes seconds on 30 characters.
    assert time.perf_counter() - start < 0.5


# -- normalisers --------------------------------------------------------------------------


@SETTINGS
@given(records | json_values)
def test_an_archive_record_is_a_message_or_a_payload_error(record: Any) -> None:
    try:
        message = message_from_record(record)
    except PayloadError:
        return
    assert_whole(message)


statuses = st.fixed_dictionaries(
    {
        "id": maybe(st.text(min_size=1, max_size=8)),
        "uri": maybe(st.text(min_size=1, max_size=20)),
        "created_at": maybe(times),
        "content": maybe(words | huge | st.just("<p>a <a href='javascript:x'>b</a></p>")),
        "account": maybe(st.fixed_dictionaries({"acct": maybe(st.text(max_size=10))})),
    },
    optional={
        "reblog": json_values,
        "tags": json_values,
        "mentions": json_values,
        "spoiler_text": json_values,
    },
)


@SETTINGS
@given(statuses | json_values)
def test_a_mastodon_status_is_messages_or_a_payload_error(status: Any) -> None:
    try:
        found = mastodon.messages_from_status(status)
    except PayloadError:
        return
    for message in found:
        assert_whole(message)


tweets = st.fixed_dictionaries(
    {
        "id": maybe(st.from_regex(r"\A[0-9]{1,19}\Z")),
        "text": maybe(words),
        "created_at": maybe(times),
        "author_id": maybe(st.text(min_size=1, max_size=5)),
    },
    optional={"entities": json_values, "referenced_tweets": json_values, "note_tweet": json_values},
)


@SETTINGS
@given(st.fixed_dictionaries({"data": st.lists(tweets | json_values, max_size=4)}) | json_values)
def test_a_twarc_page_is_messages_and_problems_or_a_payload_error(page: Any) -> None:
    try:
        messages, problems = twarc.messages_from_twarc_page(page)
    except PayloadError:
        return
    assert all(isinstance(p, str) and ": " in p for p in problems)
    for message in messages:
        assert_whole(message)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            ["id_str", "from_user", "text", "created_at", "status_url", "entities_str", "user_name"]
        ),
        st.text(max_size=40)
        | st.sampled_from(["Sat May 23 18:01:55 +0000 2020", "Fri Dec 31 23:59:59 -1400 9999"]),
    )
)
def test_a_tags_row_is_a_message_or_a_payload_error(row: dict[str, str]) -> None:
    try:
        message = tags.message_from_row(row)
    except PayloadError:
        return
    assert_whole(message)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {
            "did": maybe(st.just("did:plc:a")),
            "time_us": maybe(st.integers(-1, 2**64)),
            "kind": maybe(st.just("commit")),
            "commit": maybe(
                st.fixed_dictionaries(
                    {
                        "operation": maybe(st.just("create")),
                        "collection": maybe(st.just(bluesky.POST)),
                        "rkey": maybe(st.just("3k1")),
                        "record": maybe(
                            st.fixed_dictionaries(
                                {"text": maybe(words | huge), "createdAt": maybe(times)},
                                optional={"facets": json_values, "embed": json_values, "reply": json_values},
                            )
                        ),
                    }
                )
            ),
        }
    )
    | json_values
)
def test_a_jetstream_frame_is_an_event_and_a_message_or_a_payload_error(frame: Any) -> None:
    try:
        event = bluesky.parse_event(orjson.dumps(frame))
        if isinstance(event, bluesky.Commit) and event.record is not None:
            assert_whole(bluesky.post_message(event))
    except PayloadError:
        return


@SETTINGS
@given(
    st.fixed_dictionaries(
        {
            "items": maybe(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "id": maybe(st.text(min_size=1, max_size=5)),
                            "snippet": maybe(
                                st.fixed_dictionaries(
                                    {"displayMessage": maybe(words), "publishedAt": maybe(times)}
                                )
                            ),
                            "authorDetails": maybe(
                                st.fixed_dictionaries({"channelId": maybe(st.just("UC1"))})
                            ),
                        }
                    )
                    | json_values,
                    max_size=4,
                )
            )
        }
    )
    | json_values
)
def test_a_youtube_response_is_messages_and_rejections_or_a_payload_error(body: Any) -> None:
    try:
        read = youtube.read_list_response(body, video_id="v", started_at=datetime(2026, 6, 22, tzinfo=UTC))
    except PayloadError:
        return
    for message in read.messages:
        assert_whole(message)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


# Character references XML forbids or that name no character: feedparser must not crash on them.
char_refs = st.sampled_from(["", "&#xD800;", "&#0;", "&#x10FFFF;", "&#99999999;", "&bogus;", "&amp;#xD800;"])
feed_items = st.tuples(
    st.text(max_size=20),
    st.text(max_size=40),
    char_refs,
    times | st.just("Fri, 31 Dec 9999 23:59:59 -1400"),
).map(
    lambda t: (
        f"<item><guid>{_xml(t[0])}</guid><description>{_xml(t[1])}{t[2]}</description>"
        f"<pubDate>{_xml(t[3])}</pubDate></item>"
    )
)


@SETTINGS
@given(
    st.lists(feed_items, max_size=3).map("".join) | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)
def test_a_feed_is_messages_and_rejections_or_a_payload_error(items: str) -> None:
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
    try:
        read = feeds.parse_feed(
            body.encode(), url="https://b.example/feed", fetched_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    except PayloadError:
        return
    for message in read.messages:
        assert_whole(message)


# -- importers: files on disk ------------------------------------------------------------

TAGS_HEADER = "id_str,from_user,text,created_at,status_url\n"
tags_lines = st.lists(
    st.one_of(
        st.tuples(st.integers(1, 99), st.sampled_from(["ann", "bob", ""]), st.text(max_size=15)).map(
            lambda t: (
                f"{t[0]},{t[1]},{t[2]},Sat May 23 18:01:55 +0000 2020,https://twitter.com/{t[1]}/status/{t[0]}"
            )
        ),
        st.text(alphabet='a,"\n\r\t ', max_size=12),
    ),
    max_size=8,
).map(lambda lines: TAGS_HEADER + "\n".join(lines) + "\n")
jsonl_lines = st.lists(
    records.map(lambda r: orjson.dumps(r).decode())
    | st.text(max_size=20).map(lambda t: t.replace("\n", " ")),
    max_size=6,
).map(lambda lines: "\n".join(lines) + "\n")
mastodon_files = st.lists(statuses, max_size=3).map(lambda s: orjson.dumps(s).decode())
twarc_files = st.lists(tweets, max_size=3).map(lambda t: orjson.dumps({"data": t}).decode() + "\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@pytest.mark.parametrize(
    ("format", "contents"),
    [("jsonl", jsonl_lines), ("tags", tags_lines), ("mastodon", mastodon_files), ("twarc", twarc_files)],
)
def test_an_archive_is_messages_and_named_rejections(
    files: Path, format: str, contents: st.SearchStrategy[str]
) -> None:
    path = files / f"archive.{format}"

    @SETTINGS
    @given(contents)
    def check(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        items = list(read_archive(path, format=format))
        for item in items:
            if isinstance(item, Rejected):
                assert item.where and item.reason
            else:
                assert_whole(item)
        if format == "jsonl":  # one item per non-blank line: nothing merged, nothing lost
            assert len(items) == sum(1 for line in text.split("\n") if line.encode().strip())

    check()


@pytest.mark.parametrize(("format", "contents"), [("jsonl", jsonl_lines), ("tags", tags_lines)])
def test_a_followed_file_is_messages_and_named_rejections(
    files: Path, format: str, contents: st.SearchStrategy[str]
) -> None:
    path = files / f"followed.{format}"

    @SETTINGS
    @given(contents)
    def check(text: str) -> None:
        assume(format != "jsonl" or text.strip())
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        page = FileSource(path, format=format).read(None)
        assert all(isinstance(r, str) and r.startswith("line ") for r in page.rejected)
        for message in page.messages:
            assert_whole(message)

    check()


def test_what_an_import_keeps_is_stored_and_exported_whole(files: Path) -> None:
    store = Store(f"sqlite:///{files / 'store.db'}")

    @SETTINGS
    @given(st.lists(records, max_size=5))
    def check(batch: list[Any]) -> None:
        messages = []
        for record in batch:
            try:
                messages.append(message_from_record(record, event="props"))
            except PayloadError:
                continue
        store.ingest("props", messages)

    try:
        check()
        for stored in store.messages("props"):
            assert_whole(stored.message)
    finally:
        store.close()
