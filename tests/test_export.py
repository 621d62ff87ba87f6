"""The numbered follow-up post (Markdown, HTML, text) and the archives (JSONL, CSV).

The golden files under tests/golden/ are compared byte for byte. After a deliberate
change of output, regenerate them with `python tests/test_export.py --regenerate` and
read the diff before committing it.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import re
import stat
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from markdown_it import MarkdownIt

from backchannel import export
from backchannel.core.models import Message, Moderation, Network, Status, StoredMessage
from backchannel.core.record import message_from_record
from backchannel.errors import BackchannelError
from backchannel.store import Store

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2010, 6, 22, 12, 0, tzinfo=UTC)
TITLE = "The Social Learning Zone (#slz)"
HOSTILE_TEXT = (
    "<script>alert(1)</script> [click](javascript:alert(1)) ![x](javascript:alert(1)) "
    "<img src=x onerror=alert(1)> JaVaScRiPt:alert(1)"
)


def _message(i: int, network: Network, handle: str, name: str, text: str, **kw: object) -> Message:
    uri = {
        Network.X: f"https://x.com/i/status/{1000 + i}",
        Network.MASTODON: f"https://mastodon.social/users/{handle}/statuses/{1000 + i}",
        Network.BLUESKY: f"at://did:plc:{handle.split('.')[0]}/app.bsky.feed.post/{1000 + i}",
    }.get(network, f"{network.value}:{1000 + i}")
    fields: dict[str, object] = {
        "network": network,
        "network_id": str(1000 + i),
        "uri": uri,
        "author_handle": handle,
        "author_name": name,
        "text": text,
        "created_at": T0 + timedelta(minutes=i, seconds=7),
    }
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


MESSAGES = [
    _message(
        1,
        Network.X,
        "abisignorelli",
        "Abi Signorelli",
        "RT @felmundo: The heart -and goal - of community is “collaborating people”, not collaboration "
        "tools http://bit.ly/cxUSkB #slz #ConnectingHR",
        permalink="https://x.com/abisignorelli/status/1001",
        hashtags=("slz", "ConnectingHR"),
        mentions=("felmundo",),
        links=("http://bit.ly/cxUSkB",),
    ),
    _message(
        2,
        Network.MASTODON,
        "jon",
        "Jon Ingham",
        "Following up with @bob@example.social and @verity:\n\n= not a heading\n# nor this\n"
        "1. nor a list *or emphasis* _here_ `code` ~~gone~~ | a | table |\n"
        "[ref]: https://evil.example/ #slz",
        permalink="https://mastodon.social/@jon/1002",
    ),
    _message(
        3,
        Network.BLUESKY,
        "zoe.bsky.social",
        "Zoë \u202eÜnïcödé 🎉",
        "مرحبا @alice.bsky.social! Tweet-up: connectinghr.eventbrite.com — café ☕ #slz",
        permalink="https://bsky.app/profile/zoe.bsky.social/post/1003",
    ),
    _message(
        4,
        Network.YOUTUBE,
        "UCsomeone",
        "Some One",
        "@someone says #slz rocks & <rolls> 100% ✓",
    ),
    _message(
        5,
        Network.X,
        "mallory",
        "<b>Mallory</b>",
        HOSTILE_TEXT,
        permalink="javascript:alert(1)",
        links=("javascript:alert(1)",),
    ),
    _message(
        6,
        Network.X,
        "charlie_elise",
        "Charlie Elise Duff",
        "@BillBoorman Good points! It's been a learning curve ever since! :-) #SLZ",
        permalink="https://x.com/charlie_elise/status/1006",
    ),
]
REPOSTS = {MESSAGES[0].uri: 3}


def stored(messages: list[Message] = MESSAGES) -> list[StoredMessage]:
    return [
        StoredMessage(id=i, seq=i, message=m, repost_count=REPOSTS.get(m.uri, 0))
        for i, m in enumerate(messages, 1)
    ]


def golden_outputs() -> dict[str, str]:
    """Every golden file's expected content, rendered from MESSAGES."""
    outputs = {
        "post.md": export.render_post(stored(), fmt="markdown", title=TITLE)[0],
        "post.html": export.render_post(stored(), fmt="html", title=TITLE)[0],
        "post.txt": export.render_post(stored(), fmt="text", title=TITLE)[0],
    }
    for number, part in enumerate(export.render_post(stored(), part_size=4, noun="tweets"), 1):
        outputs[f"post-part-{number}.md"] = part
    return outputs


# -- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["post.md", "post.html", "post.txt", "post-part-1.md", "post-part-2.md"])
def test_output_matches_the_golden_file(name: str) -> None:
    assert golden_outputs()[name].encode("utf-8") == (GOLDEN / name).read_bytes()


def test_no_golden_file_is_left_over() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(golden_outputs())


# -- the post's shape -------------------------------------------------------------------------


def test_one_part_says_how_many_and_numbers_every_message() -> None:
    (post,) = export.render_post(stored(), fmt="text")
    assert post.startswith(
        "Here are all 6 messages:\n\n1. Abi Signorelli @abisignorelli (retweeted 3×)\n   RT "
    )
    assert re.findall(r"(?m)^(\d+)\. ", post) == ["1", "2", "3", "4", "5", "6"]


def test_parts_number_on_and_say_which_messages_they_hold() -> None:
    parts = export.render_post(stored(), fmt="text", part_size=4, noun="tweets")
    assert [p.splitlines()[0] for p in parts] == [
        "Here is part 1 of all 6 tweets (1–4):",
        "Here is part 2 of all 6 tweets (5–6):",
    ]
    assert re.findall(r"(?m)^(\d+)\. ", parts[1]) == ["5", "6"]
    assert export.render_post(stored()[:3], fmt="text", part_size=2)[1].splitlines()[0] == (
        "Here is part 2 of all 3 messages (3):"
    )


def test_an_empty_event_and_a_single_message() -> None:
    assert export.render_post([], fmt="text") == ["There are no messages yet.\n\n"]
    (post,) = export.render_post(stored()[:1], fmt="markdown")
    assert post.startswith("Here is the only message:\n\n1. ")


def test_format_aliases_and_errors() -> None:
    assert export.render_post(stored(), fmt="md") == export.render_post(stored(), fmt="markdown")
    assert export.render_post(stored(), fmt="txt") == export.render_post(stored(), fmt="text")
    with pytest.raises(BackchannelError, match="unknown post format"):
        export.render_post(stored(), fmt="pdf")
    with pytest.raises(BackchannelError, match="at least 1"):
        export.render_post(stored(), part_size=0)


def test_text_output_has_no_control_characters() -> None:
    m = replace(MESSAGES[0], text="bell\x07 escape\x1b[31m red\r\nnext\x00 line\u202e", author_name="A\x1bB")
    (post,) = export.render_post(stored([m]), fmt="text")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", post)
    assert "1. AB @abisignorelli (retweeted 3×)\n   bell escape[31m red\n   next line\n" in post


def test_rendering_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    assert gc.isenabled()
    export.render_post(stored())
    assert gc.isenabled()
    typo = tmp_path / "typo.md.j2"
    typo.write_text("{{ itemz }}", encoding="utf-8")
    with pytest.raises(BackchannelError):
        export.render_post(stored(), template=typo)
    assert gc.isenabled()
    gc.disable()
    try:
        export.render_post(stored())
        assert not gc.isenabled()
    finally:
        gc.enable()


# -- hostile input, judged by real parsers ------------------------------------------------------


class Collect(HTMLParser):
    """Every start tag with its attributes, and all text, of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Collect:
    parser = Collect()
    parser.feed(html)
    parser.close()
    return parser


def assert_inert(html: str, allowed_tags: set[str]) -> Collect:
    """Only allowed tags, no event handler attributes, only http(s) link targets; and the
    hostile message, if this output holds it, survives as visible text."""
    doc = parse(html)
    for tag, attrs in doc.tags:
        assert tag in allowed_tags, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action", "formaction", "srcset"):
                assert value is not None and re.match(r"https?://", value), (tag, name, value)
                assert "javascript" not in value.lower()
    text = "".join(doc.text)
    if "Mallory" in text:
        assert "<script>alert(1)</script>" in text
        assert "<img src=x onerror=alert(1)>" in text
        assert "[click](javascript:alert(1))" in text
    return doc


MARKDOWN_TAGS = {"h1", "p", "ol", "li", "strong", "a", "br"}


@pytest.mark.parametrize(
    "renderer",
    [
        MarkdownIt("commonmark", {"html": False}),
        MarkdownIt("commonmark", {"html": True}),  # a renderer that passes raw HTML through
        MarkdownIt("gfm-like", {"html": True}),  # tables, strikethrough, autolinks
    ],
    ids=["commonmark", "commonmark-with-html", "gfm-like-with-html"],
)
def test_markdown_renders_to_nothing_but_text_and_http_links(renderer: MarkdownIt) -> None:
    posts = [post for name, post in golden_outputs().items() if name.endswith(".md")]
    assert len(posts) == 3
    for post in posts:
        html = renderer.render(post)
        doc = assert_inert(html, MARKDOWN_TAGS)
        assert "img" not in {tag for tag, _ in doc.tags}


def test_markdown_keeps_the_stranger_text_literal() -> None:
    (post,) = export.render_post(stored(), fmt="markdown")
    html = MarkdownIt("commonmark", {"html": False}).render(post)
    text = "".join(parse(html).text)
    for literal in ["= not a heading", "# nor this", "1. nor a list *or emphasis* _here_ `code` ~~gone~~"]:
        assert literal in text
    assert "[ref]: https://evil.example/" in text
    assert "<b>Mallory</b>" in text
    # Exactly one list, numbered 1 to 6, and the links we made.
    doc = parse(html)
    assert [tag for tag, _ in doc.tags].count("li") == 6
    hrefs = [attrs["href"] for tag, attrs in doc.tags if tag == "a"]
    assert "https://x.com/hashtag/slz" in hrefs and "https://example.social/@bob" in hrefs


def test_html_is_escaped_cleaned_and_links_are_marked_ugc() -> None:
    (post,) = export.render_post(stored(), fmt="html", title=TITLE)
    assert post.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
    assert "<script" not in post.lower()
    body = post[post.index("<body>") :]
    doc = assert_inert(body, {"body", *export.HTML_TAGS})
    links = [attrs for tag, attrs in doc.tags if tag == "a"]
    assert links and all(a["rel"] == export.LINK_REL for a in links)
    assert "onerror" not in {name for _, attrs in doc.tags for name in attrs}
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in post


def test_html_title_is_escaped() -> None:
    (post,) = export.render_post(stored(), fmt="html", title="</title><script>alert(1)</script>")
    assert "<title>&lt;/title&gt;&lt;script&gt;" in post
    assert "<script" not in post


# -- user templates -------------------------------------------------------------------------------


def test_a_user_template_overrides_the_output(tmp_path: Path) -> None:
    template = tmp_path / "mine.md.j2"
    template.write_text(
        "{{ heading }} ({{ part }}/{{ parts }}, {{ total }} in all)\n"
        "{% for item in items %}"
        "{{ item.number }}|{{ item.network }}|{{ item.handle|md_escape }}|{{ item.repost_count }}|"
        "{{ item.segments|md_segments }}\n"
        "{% endfor %}",
        encoding="utf-8",
    )
    parts = export.render_post(stored(), fmt="markdown", template=template, part_size=5)
    assert parts[0].splitlines()[:2] == [
        "Here is part 1 of all 6 messages (1–5): (1/2, 6 in all)",
        "1|x|abisignorelli|3|RT [@felmundo](https://x.com/felmundo): The heart \\-and goal \\- of community is "
        "“collaborating people”, not collaboration tools [http://bit\\.ly/cxUSkB](http://bit.ly/cxUSkB) "
        "[\\#slz](https://x.com/hashtag/slz) [\\#ConnectingHR](https://x.com/hashtag/ConnectingHR)",
    ]
    assert parts[1] == (
        "Here is part 2 of all 6 messages (6): (2/2, 6 in all)\n"
        "6|x|charlie\\_elise|0|[@BillBoorman](https://x.com/BillBoorman) Good points\\! It's been a learning "
        "curve ever since\\! :\\-\\) [\\#SLZ](https://x.com/hashtag/SLZ)\n"
    )


def test_a_user_template_for_html_is_autoescaped_and_cleaned_whatever_its_name(tmp_path: Path) -> None:
    template = tmp_path / "mine.txt"
    template.write_text(
        "<body>{% for item in items %}<p onclick=x>{{ item.name }} {{ item.text }}</p>"
        "<img src=x onerror=alert(1)>{% endfor %}</body>",
        encoding="utf-8",
    )
    (post,) = export.render_post(stored(), fmt="html", template=template)
    assert "&lt;b&gt;Mallory&lt;/b&gt; &lt;script&gt;" in post
    assert_inert(post, {"body", "p"})


def test_a_user_template_can_extend_the_built_in_one(tmp_path: Path) -> None:
    template = tmp_path / "extends.txt.j2"
    template.write_text('{% extends "post.txt.j2" %}', encoding="utf-8")
    assert export.render_post(stored(), fmt="text", template=template) == export.render_post(
        stored(), fmt="text"
    )


def test_a_broken_or_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.md.j2"
    broken.write_text("{% for item in items %}", encoding="utf-8")
    with pytest.raises(BackchannelError, match=r"broken\.md\.j2"):
        export.render_post(stored(), template=broken)
    typo = tmp_path / "typo.md.j2"
    typo.write_text("{{ itemz }}", encoding="utf-8")
    with pytest.raises(BackchannelError, match="itemz"):
        export.render_post(stored(), template=typo)
    with pytest.raises(BackchannelError, match="cannot read template"):
        export.render_post(stored(), template=tmp_path / "missing.j2")


@pytest.mark.parametrize(
    "escape",
    [
        "{{ cycler.__init__.__globals__.os.popen('echo pwned > %s').read() }}",
        "{{ items[0].__class__.__mro__[-1].__subclasses__() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    ],
)
def test_a_user_template_cannot_reach_python(tmp_path: Path, escape: str) -> None:
    proof = tmp_path / "pwned"
    template = tmp_path / "evil.md.j2"
    template.write_text(escape.replace("%s", str(proof)), encoding="utf-8")
    with pytest.raises(BackchannelError, match=r"unsafe|not safely callable"):
        export.render_post(stored(), template=template)
    assert not proof.exists()


def test_the_sandbox_keeps_autoescaping_as_it_was(tmp_path: Path) -> None:
    # HTML escapes the operator's template too; Markdown and text never HTML-escape.
    template = tmp_path / "mine.txt"
    template.write_text("{% for item in items %}{{ item.name }}|{% endfor %}", encoding="utf-8")
    (html,) = export.render_post(stored(), fmt="html", template=template)
    (text,) = export.render_post(stored(), fmt="text", template=template)
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in html
    assert "<b>Mallory</b>" in text


# -- from the store ----------------------------------------------------------------------------


def test_store_to_post(store: Store) -> None:
    reposts = [
        _message(10 + k, Network.X, f"fan{k}", f"Fan {k}", "", repost_of=MESSAGES[0].uri) for k in range(3)
    ]
    store.ingest("slz", [*MESSAGES, *reposts])
    from_store = list(store.messages("slz", order="oldest"))
    assert [m.repost_count for m in from_store] == [3, 0, 0, 0, 0, 0]
    (post,) = export.render_post(from_store, fmt="markdown", title=TITLE)
    assert post.encode("utf-8") == (GOLDEN / "post.md").read_bytes()


# -- writing parts ---------------------------------------------------------------------------------


def test_write_post_names_part_files_by_number_only(tmp_path: Path) -> None:
    parts = export.render_post(stored(), fmt="markdown", part_size=2, title="../../../etc/passwd")
    out = tmp_path / "post"
    written = export.write_post(parts, out, fmt="markdown")
    assert [p.name for p in written] == ["part-01.md", "part-02.md", "part-03.md"]
    assert sorted(out.iterdir()) == written
    assert [p.read_text(encoding="utf-8") for p in written] == parts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post"]


def test_write_post_one_part_to_a_file_or_to_stdout(tmp_path: Path) -> None:
    parts = export.render_post(stored(), fmt="html")
    target = tmp_path / "slz.html"
    assert export.write_post(parts, target, fmt="html") == [target]
    assert target.read_bytes() == parts[0].encode("utf-8")
    assert export.write_post(parts, None, fmt="html") == []
    assert export.write_post(parts, tmp_path, fmt="html") == [tmp_path / "part-01.html"]


def test_write_post_with_many_parts_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "slz.txt"
    target.write_text("keep me", encoding="utf-8")
    parts = export.render_post(stored(), fmt="text", part_size=3)
    with pytest.raises(BackchannelError, match="needs a directory"):
        export.write_post(parts, target, fmt="text")
    assert target.read_text(encoding="utf-8") == "keep me"


def test_part_file_names_grow_with_the_number_of_parts(tmp_path: Path) -> None:
    written = export.write_post(["x"] * 120, tmp_path / "many", fmt="text")
    assert written[0].name == "part-001.txt" and written[-1].name == "part-120.txt"


def test_write_post_refuses_a_missing_directory_and_a_symlink_unless_forced(tmp_path: Path) -> None:
    parts = export.render_post(stored(), fmt="text")
    with pytest.raises(BackchannelError, match="does not exist"):
        export.write_post(parts, tmp_path / "missing" / "slz.txt", fmt="text")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    link = tmp_path / "slz.txt"
    link.symlink_to(victim)
    with pytest.raises(BackchannelError, match="symbolic link"):
        export.write_post(parts, link, fmt="text")
    assert victim.read_text(encoding="utf-8") == "precious"
    assert export.write_post(parts, link, fmt="text", force=True) == [link]
    assert victim.read_text(encoding="utf-8") == parts[0] and link.is_symlink()
    folder = tmp_path / "linked-folder"
    folder.symlink_to(tmp_path / "missing-too")
    with pytest.raises(BackchannelError, match="symbolic link"):
        export.write_post(parts * 2, folder, fmt="text")


# -- archives -----------------------------------------------------------------------------------


def test_jsonl_archive_round_trips(tmp_path: Path) -> None:
    messages = [replace(m, event="slz", raw=orjson.dumps({"id": m.network_id}).decode()) for m in MESSAGES]
    items = stored(messages)
    buffer = io.StringIO()
    assert export.write_archive(items, buffer, fmt="jsonl") == len(items)
    lines = buffer.getvalue().splitlines()
    assert [message_from_record(orjson.loads(line)) for line in lines] == messages
    assert orjson.loads(lines[0])["moderation"] == {
        "status": "new",
        "starred": False,
        "answered": False,
        "pinned": False,
    }
    path = tmp_path / "slz.jsonl"
    assert export.write_archive(items, path, fmt="jsonl") == len(items)
    assert path.read_text(encoding="utf-8") == buffer.getvalue()


def test_jsonl_archive_from_the_store_imports_again(store: Store) -> None:
    store.ingest("slz", MESSAGES)
    buffer = io.StringIO()
    export.write_archive(store.messages("slz", order="oldest"), buffer, fmt="jsonl")
    again = [message_from_record(orjson.loads(line)) for line in buffer.getvalue().splitlines()]
    assert [replace(m, event="") for m in again] == MESSAGES


def test_an_archive_that_fails_halfway_leaves_no_file_and_the_old_one_unchanged(
    store: Store, tmp_path: Path
) -> None:
    # The third message's raw payload is not JSON (as in a database written before import
    # checked it), so the JSONL writer fails after two lines.
    store.ingest("slz", [replace(m, raw=None if i != 2 else "{not json") for i, m in enumerate(MESSAGES)])
    messages = list(store.messages("slz", order="oldest"))
    out = tmp_path / "slz.jsonl"
    with pytest.raises(ValueError):
        export.write_archive(messages, tmp_path / "fresh.jsonl")
    out.write_text("the previous export\n", encoding="utf-8")
    with pytest.raises(ValueError):
        export.write_archive(messages, out)
    assert out.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "jsonl" in p.name) == ["slz.jsonl"]


def test_an_archive_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    out = tmp_path / "slz.csv"
    out.write_text("old", encoding="utf-8")
    out.chmod(0o640)
    export.write_archive(stored(), out, fmt="csv")
    assert out.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "fresh.csv"
    export.write_archive(stored(), fresh, fmt="csv")
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_an_archive_into_a_pipe_leaves_the_pipe_in_place(tmp_path: Path) -> None:
    # Renaming a finished file over a pipe (or /dev/null) would replace it.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    export.write_archive(stored(), pipe, fmt="jsonl")
    reader.join(timeout=10)
    assert len(received[0].splitlines()) == len(MESSAGES)
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_csv_archive_has_a_fixed_header_and_defuses_formulas() -> None:
    risky = replace(
        MESSAGES[5],
        text='=HYPERLINK("http://evil.example","click")',
        author_name="+cmd|' /C calc'!A0",
        author_handle="-dash",
        hashtags=("@SUM(1+1)",),
        links=("\thttps://tab.example/",),
    )
    items = [
        StoredMessage(1, 1, MESSAGES[0], Moderation(Status.APPROVED, starred=True, pinned=True)),
        StoredMessage(2, 2, risky),
    ]
    buffer = io.StringIO()
    assert export.write_archive(items, buffer, fmt="csv") == 2
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert tuple(rows[0]) == export.CSV_HEADER
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["text"] == MESSAGES[0].text
    assert first["hashtags"] == "slz ConnectingHR"
    assert first["created_at"] == "2010-06-22T12:01:07Z"
    assert (first["status"], first["starred"], first["answered"], first["pinned"]) == (
        "approved",
        "true",
        "false",
        "true",
    )
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["text"] == '\'=HYPERLINK("http://evil.example","click")'
    assert second["author_name"] == "'+cmd|' /C calc'!A0"
    assert second["author_handle"] == "'-dash"
    assert second["hashtags"] == "'@SUM(1+1)"
    assert second["links"] == "'\thttps://tab.example/"
    assert all(not cell.startswith(export.FORMULA_START) for row in rows for cell in row)


def test_unknown_archive_format() -> None:
    with pytest.raises(BackchannelError, match="unknown archive format"):
        export.write_archive([], io.StringIO(), fmt="xml")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python tests/test_export.py --regenerate")
    GOLDEN.mkdir(exist_ok=True)
    for old in GOLDEN.iterdir():
        old.unlink()
    for name, content in golden_outputs().items():
        (GOLDEN / name).write_bytes(content.encode("utf-8"))
        print(f"wrote {GOLDEN / name}")
