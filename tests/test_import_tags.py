"""TAGS (Twitter Archiving Google Sheet) rows to messages (core/tags.py)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from backchannel.core.models import Network
from backchannel.core.tags import message_from_row, parse_twitter_time, tweet_id
from backchannel.errors import PayloadError

DATA = Path(__file__).parent / "data"


def rows() -> list[dict[str, str]]:
    with open(DATA / "tags_slz.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def row(index: int) -> dict[str, str]:
    return rows()[index]


def test_row_fields() -> None:
    m = message_from_row(row(0), event="slz")
    assert m.network is Network.X
    assert m.network_id == "1264259001234567168"
    assert m.uri == "https://x.com/i/status/1264259001234567168"
    assert m.permalink == "https://x.com/slz_conf/status/1264259001234567168"
    assert m.author_handle == m.author_name == "slz_conf"
    assert m.text == "Welcome to #SLZ2020, online this year! Programme: https://t.co/Pr0gR4mme1"
    assert m.created_at == datetime(2020, 5, 23, 17, 57, 28, tzinfo=UTC)
    assert m.hashtags == ("SLZ2020",)
    assert m.links == ("https://slz.example.org/2020",)
    assert m.event == "slz"
    assert m.raw is not None and orjson.loads(m.raw) == row(0)


def test_id_mangled_by_sheets_is_recovered_from_status_url() -> None:
    r = row(1)
    assert r["id_str"] == "1.26426E+18"
    m = message_from_row(r)
    assert m.network_id == "1264260123456789504"
    assert m.uri == "https://x.com/i/status/1264260123456789504"
    # v1.1 text comes HTML-escaped.
    assert m.text == "Great opening by @slz_conf & the team #SLZ2020"
    assert m.mentions == ("slz_conf",)


def test_status_url_wins_over_a_full_length_rounded_id() -> None:
    r = row(3)
    assert r["id_str"] == "1264263300000000000"
    assert message_from_row(r).network_id == "1264263311122233344"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://twitter.com/ann_dev/statuses/1264260123456789504", "1264260123456789504"),
        ("https://twitter.com/ann_dev/status/1264260123456789504", "1264260123456789504"),
        ("https://x.com/ann_dev/status/1264260123456789504?s=20", "1264260123456789504"),
    ],
)
def test_id_from_either_url_form(url: str, expected: str) -> None:
    assert tweet_id({"id_str": "1.26426E+18", "status_url": url}) == expected


def test_id_str_is_used_when_there_is_no_url() -> None:
    assert tweet_id({"id_str": "1264260123456789504", "status_url": ""}) == "1264260123456789504"
    with pytest.raises(PayloadError, match="mangled by the spreadsheet"):
        tweet_id({"id_str": "1.26426E+18", "status_url": ""})
    with pytest.raises(PayloadError, match="missing id_str and status_url"):
        tweet_id({})


def test_reply() -> None:
    m = message_from_row(row(2))
    assert m.reply_to == "https://x.com/i/status/1264259001234567168"
    r = dict(row(2), in_reply_to_status_id_str="1.26426E+18")
    assert message_from_row(r).reply_to is None


def test_without_entities_the_text_is_scanned() -> None:
    m = message_from_row(row(3))
    assert m.text == (
        "Notes from talk 1:\n- ship small\n- measure > guess\n#SLZ2020 #devops cc @ann_dev https://t.co/N0t3s12345"
    )
    assert m.hashtags == ("SLZ2020", "devops")
    assert m.mentions == ("ann_dev",)
    assert m.links == ("https://t.co/N0t3s12345",)


def test_unreadable_entities_fall_back_to_the_text() -> None:
    m = message_from_row(dict(row(0), entities_str='{"hashtags": [{"text": "SLZ'))
    assert m.hashtags == ("SLZ2020",)
    assert m.links == ("https://t.co/Pr0gR4mme1",)


def test_a_user_name_column_gives_the_display_name() -> None:
    assert message_from_row(dict(row(0), user_name="SLZ Conference")).author_name == "SLZ Conference"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sat May 23 18:01:55 +0000 2020", datetime(2020, 5, 23, 18, 1, 55, tzinfo=UTC)),
        ("Sat May 23 20:01:55 +0200 2020", datetime(2020, 5, 23, 18, 1, 55, tzinfo=UTC)),
        ("Fri, 24 Aug 2012 02:46:24 +0000", datetime(2012, 8, 24, 2, 46, 24, tzinfo=UTC)),
        ("2020-05-23T18:01:55Z", datetime(2020, 5, 23, 18, 1, 55, tzinfo=UTC)),
    ],
)
def test_twitter_times(value: str, expected: datetime) -> None:
    assert parse_twitter_time(value) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"from_user": ""}, "missing from_user"),
        ({"created_at": "last Tuesday"}, "not a Twitter time"),
        ({"created_at": ""}, "missing created_at"),
        ({"id_str": "1.26426E+18", "status_url": ""}, "mangled by the spreadsheet"),
    ],
)
def test_malformed_rows_are_refused(change: dict[str, str], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        message_from_row(dict(row(0), **change))


def test_missing_text_column_is_refused() -> None:
    r = row(0)
    del r["text"]
    with pytest.raises(PayloadError, match="missing text"):
        message_from_row(r)
