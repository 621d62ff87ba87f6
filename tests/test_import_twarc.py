"""twarc2 JSONL lines (X API v2 pages, stream lines, flattened posts) to messages (core/twarc.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from backchannel.core.models import Message, Network
from backchannel.core.twarc import canonical_uri, messages_from_twarc_page
from backchannel.errors import PayloadError

T0 = "1856993420172308480"  # retweeted and quoted; only in includes.tweets
T1 = "1856995127843721216"  # slz_conf's post, replied to
RT = "1856996011274919937"
REPLY = "1856996488930668645"
QUOTE = "1856997004519702876"
LONG = "1856998120077357056"

DATA = Path(__file__).parent / "data"


def line(number: int, name: str = "twarc2_slz.jsonl") -> Any:
    return orjson.loads((DATA / name).read_bytes().splitlines()[number - 1])


def page() -> dict[str, Any]:
    return line(1)


def by_id(messages: list[Message]) -> dict[str, Message]:
    return {m.network_id: m for m in messages}


def test_page_messages_and_problems() -> None:
    messages, problems = messages_from_twarc_page(page(), event="slz")
    assert sorted(by_id(messages)) == sorted([LONG, QUOTE, REPLY, T0, RT, T1])
    assert problems == [
        "tweet 1856998500000000001: missing created_at",
        "tweet 1856998500000000002: text must be a string",
    ]
    assert all(m.network is Network.X and m.event == "slz" for m in messages)


def test_plain_post_fields() -> None:
    m = by_id(messages_from_twarc_page(page())[0])[T1]
    assert m.uri == f"https://x.com/i/status/{T1}" == canonical_uri(T1)
    assert m.permalink == f"https://x.com/slz_conf/status/{T1}"
    assert (m.author_handle, m.author_name) == ("slz_conf", "SLZ Conference")
    # X escapes &, < and > in text; the message has them back.
    assert m.text == "Doors open at 9 & coffee is ready <3 #SLZ2024 https://t.co/AbCdEf1234"
    assert m.created_at == datetime(2024, 11, 14, 9, 1, 49, tzinfo=UTC)
    assert m.hashtags == ("SLZ2024",)
    assert m.links == ("https://slz.example.org/programme",)
    assert m.reply_to is None and m.repost_of is None
    assert m.raw is not None
    raw = orjson.loads(m.raw)
    assert raw["id"] == T1 and raw["text"].startswith("Doors open at 9 &amp; coffee")


def test_retweet_counts_onto_its_included_original() -> None:
    messages, _ = messages_from_twarc_page(page())
    found = by_id(messages)
    retweet, original = found[RT], found[T0]
    assert retweet.repost_of == original.uri == canonical_uri(T0)
    assert retweet.author_handle == "ann_dev"
    assert retweet.mentions == ("speaker_sam",)
    # The original comes first, with its own author from includes.users.
    assert messages.index(original) < messages.index(retweet)
    assert original.author_handle == "speaker_sam"
    assert original.author_name == "Sam <Speaker> O'Neil"
    assert original.text == "My slides for #SLZ2024 are up: https://t.co/Sl1d3sAbCd"
    assert original.links == ("https://speaker.example.com/slz-2024.pdf",)


def test_reply_and_quote() -> None:
    found = by_id(messages_from_twarc_page(page())[0])
    assert found[REPLY].reply_to == canonical_uri(T1)
    assert found[REPLY].mentions == ("slz_conf",)
    quote = found[QUOTE]
    assert quote.reply_to is None and quote.repost_of is None
    assert quote.links == (f"https://twitter.com/speaker_sam/status/{T0}", canonical_uri(T0))


def test_long_post_prefers_note_tweet() -> None:
    m = by_id(messages_from_twarc_page(page())[0])[LONG]
    assert m.text.startswith("Thread-free notes from the #SLZ2024 keynote.")
    assert m.text.endswith("Q&A starts at 10:30 > room B.")
    assert "\u2026" not in m.text
    assert m.hashtags == ("SLZ2024",)
    # The t.co "show more" link belongs to the truncated text only.
    assert m.links == ()


def test_stream_line_has_one_post_as_data() -> None:
    messages, problems = messages_from_twarc_page(line(3))
    assert [m.network_id for m in messages] == ["1856999000123456789"]
    assert messages[0].author_handle == "slz_conf"
    assert problems == []


def test_errors_only_page_is_empty() -> None:
    assert messages_from_twarc_page(line(4)) == ([], [])


def test_duplicates_within_a_page_are_returned_once() -> None:
    p = page()
    p["data"].append(copy.deepcopy(p["data"][-1]))
    messages, _ = messages_from_twarc_page(p)
    assert len(messages) == len({m.uri for m in messages}) == 6


def test_missing_user_expansion_keeps_the_post() -> None:
    p = line(7)
    p["includes"]["users"] = []
    [m] = messages_from_twarc_page(p)[0]
    assert m.author_handle == m.author_name == "1187412340921856001"
    assert m.permalink == canonical_uri(T1)


def test_flattened_lines() -> None:
    retweet_line, plain_line, broken_line = (line(n, "twarc2_slz_flat.jsonl") for n in (1, 2, 3))
    messages, problems = messages_from_twarc_page(retweet_line, event="slz")
    original, retweet = messages
    assert (original.network_id, original.author_handle) == (T0, "speaker_sam")
    assert retweet.repost_of == original.uri
    assert retweet.author_name == "Ann"
    assert problems == []
    [plain] = messages_from_twarc_page(plain_line)[0]
    assert plain.permalink == f"https://x.com/slz_conf/status/{T1}"
    assert messages_from_twarc_page(broken_line) == ([], [f"tweet {REPLY}: missing author_id"])


def _page_with(change: str) -> dict[str, Any]:
    p = line(7)
    tweet = p["data"][0]
    if change == "no id":
        del tweet["id"]
    elif change == "int id":
        tweet["id"] = int(tweet["id"])
    elif change == "bad time":
        tweet["created_at"] = "Thu Nov 14 09:01:49 2024"
    elif change == "refs dict":
        tweet["referenced_tweets"] = {"type": "quoted", "id": T0}
    elif change == "hashtags str":
        tweet["entities"]["hashtags"] = "SLZ2024"
    elif change == "not an object":
        p["data"][0] = "1856995127843721216"
    return p


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("no id", "tweet #1: id must be a numeric string"),
        ("int id", "tweet #1: id must be a numeric string"),
        ("bad time", f"tweet {T1}: created_at is not an ISO 8601 time"),
        ("refs dict", f"tweet {T1}: referenced_tweets must be a list"),
        ("hashtags str", f"tweet {T1}: entities.hashtags must be a list"),
        ("not an object", "tweet #1: a tweet must be a JSON object"),
    ],
)
def test_a_malformed_post_is_reported_and_the_rest_kept(change: str, problem: str) -> None:
    p = _page_with(change)
    p["data"].append(page()["data"][0])  # a good post after the bad one
    messages, problems = messages_from_twarc_page(p)
    assert [m.network_id for m in messages] == [LONG]
    [reported] = problems
    assert reported.startswith(problem)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"data": "oops", "meta": {}}, "data must be a list"),
        ({"data": [], "includes": []}, "includes must be an object"),
        ({"data": [], "includes": {"users": {}}}, "includes.users must be a list"),
        ({"meta": {"result_count": 0}}, "not a twarc2 line"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_a_line_that_is_not_a_page_is_refused(payload: Any, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        messages_from_twarc_page(payload)
