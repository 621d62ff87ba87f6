"""The pure splitter and URL allowlist behind every export and view."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from linkify_it import LinkifyIt

from backchannel.core import richtext
from backchannel.core.models import Message, Network
from backchannel.core.richtext import Segment, author_url, clean_text, safe_href, segments, split_text

T0 = datetime(2010, 6, 22, 12, 0, tzinfo=UTC)


def msg(text: str, network: Network = Network.X, **kw: object) -> Message:
    base = Message(
        network=network,
        network_id="1",
        uri="https://x.com/i/status/1",
        author_handle="joningham",
        author_name="Jon Ingham",
        text=text,
        created_at=T0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def kinds(segs: list[Segment]) -> list[tuple[str, str, str | None]]:
    return [(s.kind, s.text, s.href) for s in segs]


# -- safe_href ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "\x01javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "java\u200bscript:alert(1)",
        "javascript\u00ad:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "DATA:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox(1)",
        "VBScript:msgbox(1)",
        "jav&#x09;ascript:alert(1)",
        "file:///etc/passwd",
        "mailto:a@example.com",
        "ftp://example.com/",
        "//evil.example/",
        "/relative/path",
        "relative",
        "http:/one-slash.example",
        "https:",
        "https://",
        "https:///path-only",
        "http://[::1",
        "ht\ttp://example.com/",
        "https://exa mple.com/",
        "https\u017f://example.com/",  # a long s case-folds to "s"; no browser reads it as https
        "",
        None,
    ],
)
def test_safe_href_refuses_everything_but_http_and_https(url: str | None) -> None:
    assert safe_href(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a?b=c#d", "https://example.com/a?b=c#d"),
        ("http://bit.ly/cxUSkB", "http://bit.ly/cxUSkB"),
        ("  https://example.com/  ", "https://example.com/"),
        ("\x00https://example.com/", "https://example.com/"),
        ("HTTPS://Example.com/X", "https://Example.com/X"),
        ("https://example.com/a\"b'c<d>e`f", "https://example.com/a%22b%27c%3Cd%3Ee%60f"),
        ("https://例え.テスト/パス", "https://例え.テスト/パス"),
        ("http://[::1]:8080/", "http://[::1]:8080/"),
    ],
)
def test_safe_href_keeps_http_and_https(url: str, expected: str) -> None:
    assert safe_href(url) == expected


def test_safe_href_is_idempotent() -> None:
    once = safe_href('HTTPS://example.com/a"b')
    assert once is not None
    assert safe_href(once) == once
    assert safe_href(str(once)) == once


# -- cleaning -----------------------------------------------------------------------------------


def test_clean_text_strips_controls_and_bidi_overrides_but_keeps_lines() -> None:
    raw = "  hi\x00 there\r\n\r\n\r\n\tsecond\x1b line\u202e  \n\n"
    assert clean_text(raw) == "hi there\n\nsecond line"
    assert clean_text("plain text") == "plain text"
    assert clean_text("emoji 👨‍👩‍👧 stays") == "emoji 👨‍👩‍👧 stays"  # the zero-width joiners too
    assert clean_text("lone \ud800 surrogate") == "lone  surrogate"


def test_clean_line_makes_one_line() -> None:
    assert richtext.clean_line(" Abi\nSignorelli\u202e ") == "Abi Signorelli"


# -- splitting ----------------------------------------------------------------------------------


def test_x_hashtags_mentions_and_links() -> None:
    m = msg(
        "RT @felmundo: community is people, not tools http://bit.ly/cxUSkB #slz #ConnectingHR",
        links=("http://bit.ly/cxUSkB",),
    )
    assert kinds(segments(m)) == [
        ("text", "RT ", None),
        ("mention", "@felmundo", "https://x.com/felmundo"),
        ("text", ": community is people, not tools ", None),
        ("link", "http://bit.ly/cxUSkB", "http://bit.ly/cxUSkB"),
        ("text", " ", None),
        ("hashtag", "#slz", "https://x.com/hashtag/slz"),
        ("text", " ", None),
        ("hashtag", "#ConnectingHR", "https://x.com/hashtag/ConnectingHR"),
    ]


def test_mastodon_links_to_the_instance_and_to_remote_accounts() -> None:
    m = msg(
        "@bob hi @alice@example.social #slz #Café",
        Network.MASTODON,
        author_handle="jon",
        uri="https://mastodon.social/users/jon/statuses/2",
        permalink="https://mastodon.social/@jon/2",
    )
    assert kinds(segments(m)) == [
        ("mention", "@bob", "https://mastodon.social/@bob"),
        ("text", " hi ", None),
        ("mention", "@alice@example.social", "https://example.social/@alice"),
        ("text", " ", None),
        ("hashtag", "#slz", "https://mastodon.social/tags/slz"),
        ("text", " ", None),
        ("hashtag", "#Café", "https://mastodon.social/tags/Caf%C3%A9"),
    ]
    assert author_url(m) == "https://mastodon.social/@jon"
    assert author_url(replace(m, author_handle="bob@other.example")) == "https://other.example/@bob"


def test_mastodon_without_a_known_instance_links_only_remote_accounts() -> None:
    m = msg("@bob and @alice@example.social #slz", Network.MASTODON, uri="tag:x", permalink=None)
    assert kinds(segments(m)) == [
        ("mention", "@bob", None),
        ("text", " and ", None),
        ("mention", "@alice@example.social", "https://example.social/@alice"),
        ("text", " ", None),
        ("hashtag", "#slz", None),
    ]


def test_bluesky_handles_are_domains() -> None:
    m = msg("@alice.bsky.social. hi #slz", Network.BLUESKY, author_handle="zoe.bsky.social")
    assert kinds(segments(m)) == [
        ("mention", "@alice.bsky.social", "https://bsky.app/profile/alice.bsky.social"),
        ("text", ". hi ", None),
        ("hashtag", "#slz", "https://bsky.app/hashtag/slz"),
    ]
    assert author_url(m) == "https://bsky.app/profile/zoe.bsky.social"


@pytest.mark.parametrize("network", [Network.YOUTUBE, Network.FEED, Network.FILE])
def test_other_networks_keep_kinds_but_do_not_link_tags_or_mentions(network: Network) -> None:
    m = msg("@someone #slz https://example.com/x", network)
    assert kinds(segments(m)) == [
        ("mention", "@someone", None),
        ("text", " ", None),
        ("hashtag", "#slz", None),
        ("text", " ", None),
        ("link", "https://example.com/x", "https://example.com/x"),
    ]
    assert author_url(m) is None


def test_what_is_not_a_hashtag_or_mention() -> None:
    text = "mail a@b.example, #123, a#b, &#39; and @@x"
    assert [s.kind for s in segments(msg(text))] == ["text"]


def test_fuzzy_links_and_trailing_punctuation() -> None:
    m = msg("Link for all: connectinghr.eventbrite.com. (see http://x.example/a_(b)) and www.example.com!")
    assert [(s.text, s.href) for s in segments(m) if s.kind == "link"] == [
        ("connectinghr.eventbrite.com", "http://connectinghr.eventbrite.com"),
        ("http://x.example/a_(b)", "http://x.example/a_(b)"),
        ("www.example.com", "http://www.example.com"),
    ]


def test_a_hashtag_inside_a_url_stays_in_the_url() -> None:
    m = msg("see https://example.com/page#slz #slz")
    assert kinds(segments(m)) == [
        ("text", "see ", None),
        ("link", "https://example.com/page#slz", "https://example.com/page#slz"),
        ("text", " ", None),
        ("hashtag", "#slz", "https://x.com/hashtag/slz"),
    ]


def test_known_links_are_used_but_never_cut_a_longer_url_short() -> None:
    m = msg("short http://x.example/a and long http://x.example/abc", links=("http://x.example/a",))
    assert [s.text for s in segments(m) if s.kind == "link"] == ["http://x.example/a", "http://x.example/abc"]


def test_hostile_text_and_links_never_become_links() -> None:
    m = msg(
        "<script>alert(1)</script> [click](javascript:alert(1)) ![x](javascript:alert(1)) "
        "<img src=x onerror=alert(1)> JaVaScRiPt:alert(1) data:text/html,x #ok",
        links=("javascript:alert(1)", "data:text/html,x", "vbscript:x"),
        permalink="javascript:alert(1)",
    )
    segs = segments(m)
    assert [s.kind for s in segs] == ["text", "hashtag"]
    assert "".join(s.text for s in segs) == clean_text(m.text)


HOSTILE_TEXTS = [
    "[x](javascript:alert(1)) <a href=javascript:alert(1)>x</a>",
    "java\tscript:alert(1) http://ok.example/ JAVASCRIPT:alert(1)",
    "\u202ehttp://evil.example/\u202c moc.elpmaxe//:ptth",
    "x\u200b@y #\u200btag https://a.example/\u200bb",
    '"><svg/onload=alert(1)> https://example.com/"onmouseover="alert(1)',
    "ftp://files.example/ mailto:a@b.example //proto.example/relative",
]


@pytest.mark.parametrize("network", list(Network))
@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_every_href_is_http_or_https_and_the_text_is_kept_whole(network: Network, text: str) -> None:
    m = msg(text, network, links=("javascript:alert(1)", 'https://example.com/"onmouseover="alert(1)'))
    segs = segments(m)
    assert "".join(s.text for s in segs) == clean_text(text)
    for s in segs:
        if s.href is not None:
            assert s.href.startswith(("http://", "https://"))
            assert safe_href(s.href) == s.href
            assert not any(c in s.href for c in "\"'<> ")


def test_split_text_of_plain_text() -> None:
    assert split_text("", Network.X) == []
    assert kinds(split_text("no links here.", Network.X)) == [("text", "no links here.", None)]


def test_segment_is_a_frozen_slotted_value() -> None:
    seg = Segment("text", "hi")
    assert seg.href is None and not hasattr(seg, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        seg.text = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "token",
    [
        "http://bit.ly/x",
        "(http://bit.ly/x)",
        "London:http://connectinghr.eventbrite.com",
        "a=http://x.com",
        "_http://x.com",
        "x.com:http://y.com",
        "http://x.com,y.com",
        "HTTP://EXAMPLE.COM/x.",
        "http://",
        "http://localhost:8080/",
        "“http://x.com/a”",
        "end.The",
        "Node.js",
        "bob@x.com",
        "connectinghr.eventbrite.com",
        "https://x.com/a_(b)",
        "http://x.com/?q=a@b",
        "xhttp://y.com",
        "https://x.com/a#slz",
    ],
)
def test_token_linking_agrees_with_linkify_it(token: str) -> None:
    # The shortcuts in front of linkify-it must never change what it would find.
    expected = tuple((m.index, m.last_index, m.url) for m in LinkifyIt().match(token) or ())
    assert richtext._linkify_token(token) == expected
