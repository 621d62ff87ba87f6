"""Archive files to messages (sources/archive.py): sniffing, streaming, rejects, and a real store."""

from __future__ import annotations

import csv
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from backchannel.core.models import Message, Network
from backchannel.core.record import message_to_record
from backchannel.errors import PayloadError
from backchannel.sources.archive import FORMATS, Rejected, read_archive, sniff_format
from backchannel.store import Store

DATA = Path(__file__).parent / "data"
MASTODON_ARRAY = DATA / "mastodon_tag_slz.json"
MASTODON_LINES = DATA / "mastodon_tag_slz.jsonl"
TWARC = DATA / "twarc2_slz.jsonl"
TWARC_FLAT = DATA / "twarc2_slz_flat.jsonl"
TAGS = DATA / "tags_slz.csv"
OWN = DATA / "own_slz.jsonl"


def split(path: Path, **kwargs: str) -> tuple[list[Message], list[Rejected]]:
    items = list(read_archive(path, **kwargs))
    messages = [i for i in items if isinstance(i, Message)]
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert len(messages) + len(rejected) == len(items)
    return messages, rejected


def reasons(rejected: list[Rejected]) -> dict[str, str]:
    return {r.where: r.reason for r in rejected}


# -- sniffing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (MASTODON_ARRAY, "mastodon"),
        (MASTODON_LINES, "mastodon"),
        (TWARC, "twarc"),
        (TWARC_FLAT, "twarc"),
        (TAGS, "tags"),
        (OWN, "jsonl"),
    ],
)
def test_sniff_format(path: Path, expected: str) -> None:
    assert expected in FORMATS
    assert sniff_format(path) == expected


def test_sniff_looks_past_a_broken_first_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    good = OWN.read_text().splitlines()[0]
    path.write_text("\n{not json\n" + good + "\n")
    assert sniff_format(path) == "jsonl"


def test_sniff_tab_separated_tags_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "tags.tsv"
    path.write_bytes(b"\xef\xbb\xbfid_str\tfrom_user\ttext\n")
    assert sniff_format(path) == "tags"


@pytest.mark.parametrize("content", ['{"foo": 1}\n', "hello, world\n", "[1, 2, 3]"])
def test_unknown_format_is_refused_with_help(tmp_path: Path, content: str) -> None:
    path = tmp_path / "mystery.txt"
    path.write_text(content)
    with pytest.raises(PayloadError, match=r"cannot tell the format of .*--format"):
        sniff_format(path)
    # read_archive refuses at once, before any iteration.
    with pytest.raises(PayloadError, match="cannot tell the format"):
        read_archive(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(PayloadError, match="is empty"):
        sniff_format(path)


def test_unknown_format_name_is_refused() -> None:
    with pytest.raises(PayloadError, match="unknown archive format 'xml'"):
        read_archive(OWN, format="xml")


# -- each format, bad records among good ones -------------------------------------------


def test_own_jsonl() -> None:
    messages, rejected = split(OWN, event="webinar")
    assert [m.network for m in messages] == [
        Network.BLUESKY,
        Network.MASTODON,
        Network.X,
        Network.X,
        Network.YOUTUBE,
    ]
    assert all(m.event == "webinar" for m in messages)
    assert reasons(rejected) == {
        "line 5": "truncated JSON: the line ends inside the record",
        "line 7": "missing required field(s): author_handle",
        "line 8": "hashtags must be a list of strings",
        "line 9": "unknown network 'myspace' (known: x, mastodon, bluesky, youtube, feed, file)",
        "line 10": "a record must be a JSON object",
    }


def test_own_jsonl_keeps_the_records_event_when_none_is_given() -> None:
    messages, _ = split(OWN)
    assert {m.event for m in messages} == {"slz"}


def test_own_jsonl_round_trips(tmp_path: Path) -> None:
    messages, _ = split(OWN)
    path = tmp_path / "again.jsonl"
    path.write_bytes(b"".join(orjson.dumps(message_to_record(m)) + b"\n" for m in messages))
    assert split(path) == (messages, [])


def test_mastodon_array() -> None:
    messages, rejected = split(MASTODON_ARRAY, event="slz")
    assert [m.network_id for m in messages] == [
        "113486710098765432",
        "113486700012456789",
        "113486601133409117",  # the boosted original, then the boost
        "113486622470921473",
        "113486530154718800",
        "113486512387640321",
    ]
    assert all(m.network is Network.MASTODON and m.event == "slz" for m in messages)
    assert reasons(rejected) == {
        "item 3": "status has no uri",
        "item 5": "status has no account object",
        "item 7": "created_at is not an ISO 8601 time: 'yesterday'",
    }


def test_mastodon_lines() -> None:
    messages, rejected = split(MASTODON_LINES)
    assert len(messages) == 7
    assert reasons(rejected) == {
        "line 5": "truncated JSON: the line ends inside the record",
        "line 7": "status.id must be a string, got int",
        "line 8": "status has no created_at",
    }
    # The same post read through two instances: two ids, one uri.
    erin = [m for m in messages if m.author_handle == "erin@chaos.social"]
    assert len(erin) == 2 and len({m.uri for m in erin}) == 1


def test_mastodon_saved_pages_one_per_line(tmp_path: Path) -> None:
    statuses = orjson.loads(MASTODON_ARRAY.read_bytes())
    path = tmp_path / "pages.jsonl"
    path.write_bytes(orjson.dumps(statuses[:3]) + b"\n" + orjson.dumps(statuses[3:]) + b"\n")
    assert sniff_format(path) == "mastodon"
    messages, rejected = split(path)
    assert len(messages) == 6
    assert reasons(rejected) == {
        "line 1, item 3": "status has no uri",
        "line 2, item 2": "status has no account object",
        "line 2, item 4": "created_at is not an ISO 8601 time: 'yesterday'",
    }


def test_mastodon_array_that_does_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_bytes(MASTODON_ARRAY.read_bytes()[:5000])
    messages, rejected = split(path, format="mastodon")
    assert messages == []
    [r] = rejected
    assert r.where == "whole file" and "does not parse" in r.reason


def test_twarc() -> None:
    messages, rejected = split(TWARC, event="slz")
    assert len(messages) == 8  # six on page 1, one streamed, one repeated on the last page
    assert len({m.uri for m in messages}) == 7
    assert all(m.network is Network.X for m in messages)
    assert reasons(rejected) == {
        "line 1, tweet 1856998500000000001": "missing created_at",
        "line 1, tweet 1856998500000000002": "text must be a string",
        "line 5": "truncated JSON: the line ends inside the record",
        "line 6": "data must be a list of tweets or one tweet",
    }


def test_twarc_flattened() -> None:
    messages, rejected = split(TWARC_FLAT)
    assert [m.network_id for m in messages] == [
        "1856993420172308480",
        "1856996011274919937",
        "1856995127843721216",
    ]
    assert reasons(rejected) == {"line 3, tweet 1856996488930668645": "missing author_id"}


def test_tags() -> None:
    messages, rejected = split(TAGS, event="slz")
    assert [m.network_id for m in messages] == [
        "1264259001234567168",
        "1264260123456789504",
        "1264261877654321152",
        "1264263311122233344",
        "1264266000000000003",
    ]
    # A quoted cell spans lines 6-9: the next record starts on line 10.
    assert reasons(rejected) == {
        "line 10": "created_at is not a Twitter time: 'last Tuesday'",
        "line 11": "id_str '1.26427E+18' was mangled by the spreadsheet and status_url has no id",
        "line 12": "4 cells where the header has 18 columns",
    }


def test_tags_tab_separated_with_a_bom(tmp_path: Path) -> None:
    lines = TAGS.read_text(encoding="utf-8").splitlines()
    header, first = lines[0].split(","), next(csv.reader([lines[1]]))
    path = tmp_path / "tags.tsv"
    path.write_text("\ufeff" + "\t".join(header) + "\n" + "\t".join(first) + "\n", encoding="utf-8")
    messages, rejected = split(path)
    assert rejected == []
    assert [m.network_id for m in messages] == ["1264259001234567168"]


@pytest.mark.parametrize(("path", "count"), [(OWN, 5), (MASTODON_ARRAY, 6), (TWARC, 8)])
def test_a_byte_order_mark_is_ignored(tmp_path: Path, path: Path, count: int) -> None:
    copy = tmp_path / path.name
    copy.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert sniff_format(copy) == sniff_format(path)
    messages, rejected = split(copy)
    assert len(messages) == count
    assert rejected == split(path)[1]


def test_blank_lines_are_skipped_silently(tmp_path: Path) -> None:
    good = OWN.read_text().splitlines()[0]
    path = tmp_path / "blanks.jsonl"
    path.write_text(f"\n  \n{good}\n\t\n\n{good}\n\n")
    messages, rejected = split(path)
    assert len(messages) == 2 and rejected == []


# -- streaming and progress -------------------------------------------------------------


@pytest.mark.parametrize("path", [MASTODON_ARRAY, MASTODON_LINES, TWARC, TAGS, OWN])
def test_progress_reports_bytes_up_to_the_file_size(path: Path) -> None:
    seen: list[int] = []
    list(read_archive(path, on_progress=seen.append))
    assert seen and seen == sorted(seen)
    assert seen[-1] == path.stat().st_size


def _big_archive(path: Path, count: int) -> None:
    start = datetime(2024, 11, 14, 9, tzinfo=UTC)
    with open(path, "wb") as fh:
        for i in range(count):
            m = Message(
                Network.X,
                str(1856995127843721216 + i),
                f"https://x.com/i/status/{1856995127843721216 + i}",
                f"user{i % 100}",
                f"User {i % 100}",
                f"message {i} #slz",
                start + timedelta(seconds=i),
                hashtags=("slz",),
            )
            fh.write(orjson.dumps(message_to_record(m)) + b"\n")


def test_jsonl_is_streamed_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    _big_archive(path, 30_000)
    size = path.stat().st_size
    progress: list[int] = []
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_archive(path, event="big", on_progress=progress.append))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 30_000
    assert size > 8_000_000
    assert peak < 1_000_000, f"peak {peak} bytes for a {size}-byte file"
    # Progress came along the way, not only at the end.
    assert len(progress) > 5 and progress[0] < size // 2


# -- into a real store ------------------------------------------------------------------


def _ingest(store: Store, *paths: Path) -> tuple[int, int]:
    added = duplicates = 0
    for path in paths:
        messages = [i for i in read_archive(path, event="slz") if isinstance(i, Message)]
        result = store.ingest("slz", messages, want_rows=False)
        added += result.added_count
        duplicates += result.duplicates
    return added, duplicates


def test_importing_twice_stores_once(store: Store) -> None:
    paths = (MASTODON_ARRAY, MASTODON_LINES, TWARC, TWARC_FLAT, TAGS, OWN)
    added, _ = _ingest(store, *paths)
    # Mastodon: 6 (the lines repeat the array's posts, one of them through a second
    # instance); X: 7 from twarc (the flattened file repeats three); TAGS: 5; own: 2 of
    # 5 (its X post, X retweet and Mastodon keynote are already there).
    assert added == 6 + 7 + 5 + 2
    assert store.count("slz") == added
    again, duplicates = _ingest(store, *paths)
    assert again == 0 and duplicates > 0
    assert store.count("slz") == added


def test_boosts_and_retweets_count_onto_their_originals(store: Store) -> None:
    _ingest(store, MASTODON_ARRAY, TWARC)
    listed = {m.message.uri: m for m in store.messages("slz")}
    boosted = listed["https://hachyderm.io/users/dave/statuses/113486600873241876"]
    assert boosted.repost_count == 1
    retweeted = listed["https://x.com/i/status/1856993420172308480"]
    assert retweeted.repost_count == 1
    # The boost and the retweet are counts, not messages of their own.
    assert "https://mastodon.social/users/carol/statuses/113486622470921473/activity" not in listed
    assert "https://x.com/i/status/1856996011274919937" not in listed
    assert all(m.message.repost_of is None for m in listed.values())
