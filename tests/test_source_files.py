"""A followed file (backchannel JSONL or a TAGS CSV) through the real runner."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from backchannel.core.models import Network
from backchannel.eventfile import build_sources, parse
from backchannel.jobs import SourceRunner
from backchannel.sources.base import SourceState, http_session
from backchannel.sources.files import FilePosition, FileSource
from backchannel.store import Store

EVENT = "slz"
TAGS_HEADER = [
    "id_str", "from_user", "text", "created_at", "time", "geo_coordinates", "user_lang",
    "in_reply_to_user_id_str", "in_reply_to_screen_name", "from_user_id_str", "in_reply_to_status_id_str",
    "source", "profile_image_url", "user_followers_count", "user_friends_count", "user_location",
    "status_url", "entities_str",
]  # fmt: skip


def line(i: int, text: str | None = None) -> bytes:
    return (
        orjson.dumps(
            {
                "network": "mastodon",
                "network_id": str(i),
                "uri": f"https://mastodon.example/users/a/statuses/{i}",
                "author_handle": "a@mastodon.example",
                "text": text or f"toot {i} #slz",
                "created_at": f"2026-06-22T12:00:{i % 60:02d}Z",
            }
        )
        + b"\n"
    )


def tags_row(i: int, text: str | None = None, delimiter: str = ",") -> str:
    status = str(1264259001234567168 + i)
    cells = dict.fromkeys(TAGS_HEADER, "")
    cells.update(
        id_str=status,
        from_user=f"user{i}",
        text=text or f"tweet {i} #SLZ2020",
        created_at="Sat May 23 18:01:55 +0000 2020",
        status_url=f"http://twitter.com/user{i}/statuses/{status}",
    )
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow([cells[c] for c in TAGS_HEADER])
    return out.getvalue()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(timeout=10) as session:
        yield session


def append(path: Path, data: bytes | str) -> None:
    with path.open("ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def ids(store: Store) -> list[str]:
    return [m.message.network_id for m in store.messages(EVENT, order="seq")]


def offset(store: Store, source: FileSource) -> int:
    return FilePosition.loads(store.cursor(source.key)).offset


async def test_appended_lines_are_picked_up(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(line(1) + line(2))
    source = FileSource(path)
    runner = SourceRunner(store, EVENT, source)
    await runner.poll_once(http)
    assert ids(store) == ["1", "2"]
    append(path, line(3))
    await runner.poll_once(http)
    await runner.poll_once(http)  # nothing new
    assert ids(store) == ["1", "2", "3"] and offset(store, source) == path.stat().st_size
    assert runner.state is SourceState.COLLECTING


async def test_a_partial_last_line_waits_for_its_newline(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "live.jsonl"
    second = line(2)
    path.write_bytes(line(1) + second[:20])  # the writer is halfway through line 2
    source = FileSource(path)
    runner = SourceRunner(store, EVENT, source)
    await runner.poll_once(http)
    assert ids(store) == ["1"] and offset(store, source) == len(line(1))
    append(path, second[20:-1])
    await runner.poll_once(http)
    assert ids(store) == ["1"]  # complete JSON, but no newline yet: still being written
    append(path, b"\n")
    await runner.poll_once(http)
    assert ids(store) == ["1", "2"]


async def test_malformed_lines_are_rejected_by_number_and_the_rest_kept(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "live.jsonl"
    unknown = orjson.loads(line(4))
    unknown["network"] = "myspace"
    path.write_bytes(
        line(1) + b'{"network": "mastodon", "netw\n' + line(3) + orjson.dumps(unknown) + b"\n\n" + line(6)
    )
    source = FileSource(path)
    page = source.read(None)
    assert [m.network_id for m in page.messages] == ["1", "3", "6"]
    assert [r.split(":")[0] for r in page.rejected] == ["line 2", "line 4"]
    assert "invalid JSON" in page.rejected[0] and "unknown network 'myspace'" in page.rejected[1]

    with caplog.at_level(logging.WARNING, logger="backchannel.jobs"):
        runner = SourceRunner(store, EVENT, source)
        await runner.poll_once(http)
        append(path, b"not json at all\n" + line(8))
        await runner.poll_once(http)
    assert ids(store) == ["1", "3", "6", "8"]
    warned = [r.getMessage() for r in caplog.records]
    assert any("line 2: invalid JSON" in w for w in warned) and any("line 7:" in w for w in warned)


async def test_a_restart_resumes_from_the_stored_offset_without_duplicates(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(line(1) + line(2))
    await SourceRunner(store, EVENT, FileSource(path)).poll_once(http)

    append(path, line(3))
    restarted = FileSource(path)  # a new process: only the stored cursor remains
    page = restarted.read(store.cursor(restarted.key))
    assert [m.network_id for m in page.messages] == ["3"]  # it did not read lines 1-2 again
    published: list[object] = []
    runner = SourceRunner(store, EVENT, restarted, publish=lambda event, items: published.extend(items))
    await runner.poll_once(http)
    assert ids(store) == ["1", "2", "3"] and len(published) == 1


async def test_a_truncated_file_is_read_again_from_the_start(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(line(1) + line(2) + line(3))
    source = FileSource(path)
    runner = SourceRunner(store, EVENT, source)
    await runner.poll_once(http)
    path.write_bytes(line(4))  # rotated: copy-truncate, then a new line
    await runner.poll_once(http)
    assert ids(store) == ["1", "2", "3", "4"] and offset(store, source) == len(line(4))

    # Replaced by a different file that is already longer than the offset: the first
    # bytes tell it apart; what it repeats of the old file is not stored twice.
    path.write_bytes(line(3) + line(5) + line(6) + line(7))
    await runner.poll_once(http)
    assert ids(store) == ["1", "2", "3", "4", "5", "6", "7"]


async def test_a_backlog_is_drained_page_by_page(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(line(i) for i in range(1, 41)))
    source = FileSource(path)
    source.chunk = 1000  # a few lines a page
    cursors: list[str | None] = []
    runner = SourceRunner(store, EVENT, source)
    store_page = runner.store_page

    async def spy(page):  # type: ignore[no-untyped-def]
        cursors.append(page.cursor)
        await store_page(page)

    runner.store_page = spy  # type: ignore[method-assign]
    await runner.poll_once(http)
    assert ids(store) == [str(i) for i in range(1, 41)]
    assert len(cursors) > 5 and offset(store, source) == path.stat().st_size


def test_a_byte_order_mark_is_skipped_and_an_overlong_line_rejected_whole(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(1) + line(2, "x" * 3000) + line(3))
    source = FileSource(path)
    source.chunk = 1000
    pages, cursor = [], None
    while True:
        page = source.read(cursor)
        pages.append(page)
        cursor = page.cursor or cursor
        if not page.more:
            break
    assert [m.network_id for p in pages for m in p.messages] == ["1", "3"]
    assert [r for p in pages for r in p.rejected] == ["line 2: longer than 1,000 bytes"]
    assert FilePosition.loads(cursor).offset == path.stat().st_size


async def test_tags_csv_rows_records_spanning_lines_and_bad_rows(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "archive.csv"
    path.write_text(",".join(TAGS_HEADER) + "\n" + tags_row(1) + tags_row(2))
    source = FileSource(path)
    runner = SourceRunner(store, EVENT, source)
    await runner.poll_once(http)
    assert [m.message.network for m in store.messages(EVENT)] == [Network.X, Network.X]

    multi = tags_row(3, text="first line\nsecond line #SLZ2020")
    append(path, multi[:30])  # the writer has not finished the quoted cell
    await runner.poll_once(http)
    assert store.count(EVENT) == 2
    append(path, multi[30:] + "just,three,cells\n" + tags_row(4))
    page = source.read(store.cursor(source.key))
    assert page.rejected == ["line 6: 3 cells where the header has 18"]
    await runner.poll_once(http)
    texts = [m.message.text for m in store.messages(EVENT, order="seq")]
    assert texts[2] == "first line\nsecond line #SLZ2020" and len(texts) == 4


async def test_tab_separated_tags_copy(store: Store, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    path = tmp_path / "copied.tsv"
    path.write_text("\t".join(TAGS_HEADER) + "\n" + tags_row(1, delimiter="\t"))
    await SourceRunner(store, EVENT, FileSource(path, format="tags")).poll_once(http)
    assert ids(store) == [str(1264259001234567169)]


async def test_missing_file_is_retried_and_an_unknown_format_needs_a_person(
    store: Store, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "later.jsonl"
    runner = SourceRunner(store, EVENT, FileSource(path))
    await runner.poll_once(http)
    assert runner.state is SourceState.BACKING_OFF and not runner.stopped

    odd = tmp_path / "odd.txt"
    odd.write_text("hello, this is no archive\n")
    runner = SourceRunner(store, EVENT, FileSource(odd))
    await runner.poll_once(http)
    assert runner.stopped and runner.state is SourceState.FAILING


def test_an_empty_or_headless_file_waits(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_bytes(b"")
    source = FileSource(path)
    assert source.read(None).cursor is None
    path.write_text(",".join(TAGS_HEADER))  # the header's newline is not written yet
    page = source.read(None)
    assert page.cursor is None and not page.messages and not page.rejected


def test_event_file_builds_a_file_source(tmp_path: Path) -> None:
    text = f'[event]\nname = "x"\n[[sources]]\nnetwork = "file"\npath = "{tmp_path / "a.jsonl"}"\nformat = "jsonl"\n'
    (source,) = build_sources(parse(text, environ={}))
    assert isinstance(source, FileSource) and source.interval == 2 and source.format == "jsonl"
    assert source.key == f"file:{(tmp_path / 'a.jsonl').resolve()}"
