"""Mastodon statuses to messages, and status HTML to plain text (core/html_text.py, core/mastodon.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from backchannel.core.html_text import html_to_text
from backchannel.core.mastodon import messages_from_status
from backchannel.core.models import Network
from backchannel.errors import PayloadError

HOSTILE = [
    "<script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
    "<img src=x onerror=alert(1)>",
]

DATA = Path(__file__).parent / "data"


def statuses() -> list[dict[str, Any]]:
    return orjson.loads((DATA / "mastodon_tag_slz.json").read_bytes())


def by_id(status_id: str) -> dict[str, Any]:
    return next(s for s in statuses() if s["id"] == status_id)


# -- html_to_text ------------------------------------------------------------------------


def test_paragraphs_line_breaks_and_entities() -> None:
    text, links = html_to_text("<p>one &amp; two<br>three</p><p>four &lt;b&gt;</p>")
    assert text == "one & two\nthree\n\nfour <b>"
    assert links == ()


def test_invisible_spans_give_the_whole_url() -> None:
    html = (
        '<p>Slides: <a href="https://slz.example.org/2024/keynote?utm=x&amp;lang=en" rel="nofollow noopener" '
        'target="_blank"><span class="invisible">https://</span><span class="ellipsis">slz.example.org/'
        '2024/keynote?u</span><span class="invisible">tm=x&amp;lang=en</span></a></p>'
    )
    text, links = html_to_text(html)
    assert text == "Slides: https://slz.example.org/2024/keynote?utm=x&lang=en"
    assert links == ("https://slz.example.org/2024/keynote?utm=x&lang=en",)


def test_mention_and_hashtag_anchors_are_not_links() -> None:
    html = (
        '<p><span class="h-card"><a href="https://mastodon.social/@alice" class="u-url mention">@<span>alice'
        '</span></a></span> <a href="https://mastodon.social/tags/slz" class="mention hashtag" rel="tag">#'
        '<span>slz</span></a> <a href="https://pleroma.example/tag/slz" rel="tag">#slz</a> '
        '<a href="https://example.com/">example.com</a></p>'
    )
    text, links = html_to_text(html)
    assert text == "@alice #slz #slz example.com"
    assert links == ("https://example.com/",)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_markup_leaves_only_text(hostile: str) -> None:
    text, links = html_to_text(f"<p>before {hostile} after</p>")
    assert "<" not in text and ">" not in text
    assert "alert" not in text
    assert links == ()


def test_script_and_style_content_never_appears() -> None:
    text, _ = html_to_text("<p>a<script>var x = 1;</script><style>p { color: red }</style>b</p>")
    assert text == "ab"


def test_only_http_links_are_kept() -> None:
    html = (
        '<a href="javascript:alert(1)">1</a><a href=" JaVaScRiPt:alert(2)">2</a><a href="data:text/html,x">3</a>'
        '<a href="/relative">4</a><a href="HTTPS://Example.org/ok">5</a><a href="https://example.org/ok2">6</a>'
        '<a href="https://example.org/ok2">again</a>'
    )
    assert html_to_text(html) == ("123456again", ("HTTPS://Example.org/ok", "https://example.org/ok2"))


def test_whitespace_is_stripped_and_empty_content_is_empty() -> None:
    assert html_to_text("  <p> hi </p>  ") == ("hi", ())
    assert html_to_text("") == ("", ())


# -- messages_from_status -----------------------------------------------------------------


def test_status_fields() -> None:
    [m] = messages_from_status(by_id("113486512387640321"), event="slz")
    assert m.network is Network.MASTODON
    assert m.network_id == "113486512387640321"
    assert m.uri == "https://mastodon.social/users/alice/statuses/113486512387640321"
    assert m.permalink == "https://mastodon.social/@alice/113486512387640321"
    assert (m.author_handle, m.author_name) == ("alice", "Alice Martin")
    assert (
        m.text
        == "Opening keynote of #slz starts now! Slides: https://slz.example.org/2024/keynote?utm=x&lang=en"
    )
    assert m.created_at == datetime(2024, 11, 14, 9, 2, 11, tzinfo=UTC)
    assert m.hashtags == ("slz",)
    assert m.links == ("https://slz.example.org/2024/keynote?utm=x&lang=en",)
    assert m.event == "slz"
    assert m.repost_of is None and m.reply_to is None


def test_raw_is_the_status_json() -> None:
    status = by_id("113486512387640321")
    [m] = messages_from_status(status)
    assert m.raw is not None and orjson.loads(m.raw) == status
    text = orjson.dumps(status).decode()
    [m] = messages_from_status(status, raw=text)
    assert m.raw is text


def test_remote_status_mentions_and_paragraphs() -> None:
    [m] = messages_from_status(by_id("113486530154718800"))
    assert m.author_handle == "bob@fosstodon.org"
    assert m.uri == "https://fosstodon.org/users/bob/statuses/113486529998811742"
    assert m.text == "@alice great start! #SLZ\n\nSecond paragraph\nwith a line break & an ampersand"
    assert m.mentions == ("alice",)
    assert m.links == ()
    # The parent is named only by an instance-local id: not resolvable, so not guessed.
    assert m.reply_to is None


def test_local_handles_are_qualified_with_the_instance() -> None:
    [m] = messages_from_status(by_id("113486512387640321"), instance="mastodon.social")
    assert m.author_handle == "alice@mastodon.social"
    [m] = messages_from_status(by_id("113486530154718800"), instance="mastodon.social")
    assert m.author_handle == "bob@fosstodon.org"


def test_missing_display_name_falls_back_to_username() -> None:
    boost = by_id("113486622470921473")
    assert boost["account"]["display_name"] == ""
    assert messages_from_status(boost)[1].author_name == "carol"


def test_content_warning_prefixes_the_text() -> None:
    [m] = messages_from_status(by_id("113486700012456789"))
    assert m.text == "CW: Spoilers for the closing talk\nThe closing demo reveals the new release name #slz"


def test_boost_is_the_original_then_a_repost_of_it() -> None:
    original, boost = messages_from_status(by_id("113486622470921473"), event="slz")
    assert original.uri == "https://hachyderm.io/users/dave/statuses/113486600873241876"
    assert original.author_handle == "dave@hachyderm.io"
    assert original.text == "Live notes from #slz: https://notes.example.net/slz-2024"
    assert original.repost_of is None
    assert boost.uri == "https://mastodon.social/users/carol/statuses/113486622470921473/activity"
    assert boost.network_id == "113486622470921473"
    assert boost.author_handle == "carol"
    assert boost.repost_of == original.uri
    assert boost.text == ""
    assert original.raw is not None and orjson.loads(original.raw)["id"] == "113486601133409117"
    assert boost.event == original.event == "slz"


def test_hostile_content_and_display_name() -> None:
    [m] = messages_from_status(by_id("113486710098765432"))
    assert "<" not in m.text and "alert" not in m.text and "script" not in m.text
    assert m.text == "pwn click  again fine #slz"
    assert m.links == ("https://ok.example/page",)
    # A display name is plain text: kept as the user typed it, escaped wherever it is shown.
    assert m.author_name == '<b>Mallory</b> <script>alert("name")</script> <3'


def test_hostile_payloads_in_any_status() -> None:
    status = by_id("113486512387640321")
    for hostile in HOSTILE:
        status["content"] = f"<p>x {hostile} y</p>"
        [m] = messages_from_status(status)
        assert "<" not in m.text and "alert" not in m.text
        assert not any(link.lower().startswith("javascript") for link in m.links)


def _broken(change: str) -> dict[str, Any]:
    status = copy.deepcopy(by_id("113486512387640321"))
    if change == "no id":
        del status["id"]
    elif change == "no uri":
        status["uri"] = None
    elif change == "no account":
        del status["account"]
    elif change == "no acct":
        del status["account"]["acct"]
    elif change == "no created_at":
        del status["created_at"]
    elif change == "bad created_at":
        status["created_at"] = "14/11/2024"
    elif change == "int id":
        status["id"] = 113486512387640321
    elif change == "content list":
        status["content"] = ["<p>x</p>"]
    elif change == "tags dict":
        status["tags"] = {"name": "slz"}
    elif change == "mention without acct":
        status["mentions"] = [{"username": "alice"}]
    elif change == "reblog string":
        status["reblog"] = "113486512387640321"
    elif change == "huge number":
        status["favourites_count"] = 2**70
    elif change == "reblog without uri":
        status["reblog"] = copy.deepcopy(status)
        del status["reblog"]["uri"]
    return status


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("no id", "status has no id"),
        ("no uri", "status has no uri"),
        ("no account", "status has no account"),
        ("no acct", "status.account has no acct"),
        ("no created_at", "status has no created_at"),
        ("bad created_at", "not an ISO 8601 time"),
        ("int id", "status.id must be a string"),
        ("content list", "status.content must be a string"),
        ("tags dict", "status.tags must be a list"),
        ("mention without acct", "status.mentions entries"),
        ("reblog string", "status.reblog must be"),
        ("huge number", "cannot be kept as JSON"),
        ("reblog without uri", "boosted status: status has no uri"),
    ],
)
def test_malformed_status_is_refused_with_a_reason(change: str, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        messages_from_status(_broken(change))


def test_a_status_must_be_an_object() -> None:
    with pytest.raises(PayloadError, match="JSON object"):
        messages_from_status(["not", "a", "status"])
