"""Exports: the numbered follow-up post (Markdown, HTML, plain text) and archives (JSONL, CSV).

The post is what an event's author publishes afterwards, in the manner of the founding
example: "Here is part 1 of all the tweets:", then every message numbered, with its
author's name, @handle and text. It is rendered with Jinja2 templates
(`backchannel/templates/export/post.{md,html,txt}.j2`); `render_post(template=FILE)`
renders the operator's own file instead, with the same filters, context and
autoescaping, in Jinja2's sandbox. This module does the I/O of writing files; what a
message's text links to is decided in `core/richtext` and never here.

Template context, for each part:

    heading     the sentence that opens the part ("Here is part 1 of all 58 messages (1–50):")
    title       the title passed to render_post, or None
    noun        what the messages are called ("messages", "tweets")
    format      "markdown", "html" or "text"
    part        this part's number, from 1
    parts       how many parts there are
    total       how many messages there are in all parts
    first, last the numbers of this part's first and last message (0 when there are none)
    items       this part's messages, each an `Item`:
        number        its number, running on across parts
        name, handle  the author's display name and handle (without "@"), cleaned to one line
        author_url    the author's profile (http/https) or None
        segments      the cleaned text as `richtext.Segment`s (kind "text", "hashtag",
                      "mention" or "link"; text; href, None unless it passed the allowlist)
        text          the cleaned text (controls removed, newlines kept)
        permalink     the message's own page (http/https) or None
        created_at    an aware UTC datetime
        repost_count  native reposts folded onto it; repost_label says so ("retweeted 3×")
        network       "x", "mastodon", "bluesky", …
        indent        the width of its list marker "N. ", to indent continuation lines

Filters: `md_escape` (stranger text made inert in Markdown), `md_href` (a URL as a
Markdown link destination, empty unless http/https), `md_segments(indent)` and
`html_segments` (segments as linked Markdown or HTML), `md_author` (`**Name**
[@handle](profile)`), `md_when` (the time linked to the permalink), `utc_time`
("2010-06-22 12:03"), `iso_time`. The environment has trim_blocks and lstrip_blocks
on and undefined variables are errors.

The built-in Markdown template does its per-message work in a few cached filters
rather than many small expressions: 100,000 messages must render in about a second.

Safety: HTML is autoescaped (for the operator's template too), every href has passed
`richtext.safe_href`, and the rendered `<body>` is cleaned once more with nh3 against
a small allowlist, which also sets rel="noopener noreferrer nofollow ugc" on links.
Markdown escapes every character of stranger text that could start a link, image,
emphasis, heading, list, table or raw HTML. Plain text is not escaped. File names of a
split post are `part-01.md`, …: never derived from message text, titles or hashtags.
The operator's template runs in `jinja2.sandbox.SandboxedEnvironment`: it cannot reach
Python's internals. A file is written under a temporary name and renamed into place,
so an export that fails halfway leaves no partial file; a symbolic link at the output
path is refused unless forced.
"""

from __future__ import annotations

import csv
import gc
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import jinja2
import jinja2.sandbox
import nh3
import orjson
from markupsafe import Markup, escape

from backchannel.core import richtext
from backchannel.core.models import Message, Moderation, Network, StoredMessage
from backchannel.core.record import format_time, message_to_record
from backchannel.core.richtext import Segment
from backchannel.errors import BackchannelError

TEMPLATES = Path(__file__).parent / "templates" / "export"
FORMATS = {"markdown": "md", "html": "html", "text": "txt"}
_ALIASES = {"md": "markdown", "txt": "text"}
ARCHIVE_FORMATS = ("jsonl", "csv")

REPOST_VERBS: dict[str, str] = {
    Network.X: "retweeted",
    Network.MASTODON: "boosted",
    Network.BLUESKY: "reposted",
}


class Item(NamedTuple):
    """One numbered message of the post, as templates see it.

    Immutable; a NamedTuple rather than a frozen dataclass because a post builds one per
    message and a frozen dataclass takes three times as long to build.
    """

    number: int
    name: str
    handle: str
    author_url: str | None
    segments: tuple[Segment, ...]
    permalink: str | None
    created_at: datetime
    repost_count: int
    network: str

    @property
    def text(self) -> str:
        return "".join([s.text for s in self.segments])

    @property
    def repost_label(self) -> str:
        if self.repost_count <= 0:
            return ""
        return f"{REPOST_VERBS.get(self.network, 'shared')} {self.repost_count}×"

    @property
    def indent(self) -> int:
        return len(str(self.number)) + 2


def make_item(number: int, stored: StoredMessage) -> Item:
    """The template's view of a stored message: cleaned, split into segments, hrefs checked."""
    m = stored.message
    host = richtext.instance_host(m) if m.network is Network.MASTODON else None
    name, handle, author_url = _author(m.network, m.author_name, m.author_handle, host)
    text = richtext.clean_text(m.text)
    return Item(
        number,
        name,
        handle,
        author_url,
        tuple(richtext.split_text(text, m.network, links=m.links, host=host)),
        richtext.safe_href(m.permalink),
        m.created_at,
        stored.repost_count,
        m.network,  # a StrEnum, so it is the string "x", "mastodon", … (without `.value`'s cost)
    )


@lru_cache(maxsize=16384)
def _author(network: Network, name: str, handle: str, host: str | None) -> tuple[str, str, str | None]:
    # Cached: most authors post more than once.
    handle = richtext.clean_line(handle).lstrip("@")
    return richtext.clean_line(name) or handle, handle, richtext.profile_url(network, handle, host)


# -- Markdown and HTML building blocks (the templates' filters) ------------------------------

_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!|~]")
_MD_LINE_START = re.compile(r"(?m)^([ \t]*)=")
_MD_DESTINATION = re.compile(r"[()<> \\]")


def _backslash(match: re.Match[str]) -> str:
    return "\\" + match.group()


def _md_escape(text: str) -> str:
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(_backslash, text)
    if "=" in text:
        text = _MD_LINE_START.sub(r"\1\\=", text)
    return text


# Names, handles and hashtags recur throughout a post; long texts rarely do.
_md_escape_short = lru_cache(maxsize=16384)(_md_escape)


def md_escape(value: Any) -> str:
    """Stranger text made inert in Markdown: it renders as itself and cannot form a link,
    image, emphasis, code, heading, list, quote, table or raw HTML.

    Markdown's own punctuation is backslash-escaped (CommonMark allows a backslash before
    any ASCII punctuation); `& < >` become entities, so even a renderer that lets HTML
    through sees text; `=` at a line start cannot underline a heading.
    """
    text = value if type(value) is str else str(value)
    return _md_escape_short(text) if len(text) <= 40 else _md_escape(text)


def _md_destination(href: str) -> str:
    # Parentheses would end the destination early; the rest never reach here from
    # safe_href, but a destination must not hold them either.
    return _MD_DESTINATION.sub(richtext.percent_encode, href) if _MD_DESTINATION.search(href) else href


def md_href(url: str | None) -> str:
    """A URL as a Markdown link destination; empty unless it passes `safe_href`."""
    href = richtext.safe_href(url)
    return "" if href is None else _md_destination(href)


@lru_cache(maxsize=16384)
def _md_link(text: str, href: str) -> str:
    # Cached: an event's hashtags and mentions recur in most messages.
    return f"[{md_escape(text)}]({_md_destination(href)})"


_MD_NEWLINE = re.compile(r"\n(\n?)")


def md_segments(segments: Iterable[Segment], indent: int = 0) -> str:
    """Segments as Markdown: links where they have an href, every text escaped.

    A line break in the message is kept as a hard break (a backslash before the newline),
    a blank line as a paragraph break; `indent` spaces start every line (a list item's
    continuation lines need the width of its marker).
    """
    out = []
    for s in segments:
        href = s.href and richtext.safe_href(s.href)
        out.append(_md_link(s.text, href) if href else _md_escape(s.text))
    text = "".join(out)
    pad = " " * indent
    if "\n" in text:
        text = _MD_NEWLINE.sub(lambda m: "\n\n" + pad if m.group(1) else "\\\n" + pad, text)
    return pad + text


def md_author(item: Item) -> str:
    """`**Name** [@handle](profile)`, the handle unlinked when there is no profile URL."""
    return _md_author(item.name, item.handle, item.author_url)


@lru_cache(maxsize=16384)
def _md_author(name: str, handle: str, url: str | None) -> str:
    # Cached: most authors post more than once.
    href = md_href(url)
    at = "@" + md_escape(handle)
    return f"**{md_escape(name)}** " + (f"[{at}]({href})" if href else at)


def md_when(item: Item) -> str:
    """The message's time (UTC), linked to the message when it has a permalink."""
    when = utc_time(item.created_at)
    href = md_href(item.permalink)
    return f"[{when}]({href})" if href else when


def html_segments(segments: Iterable[Segment]) -> Markup:
    """Segments as HTML: escaped text, line breaks as `<br>`, links where they have an href."""
    out = []
    for s in segments:
        text = escape(s.text)
        href = richtext.safe_href(s.href)
        if href:
            out.append(f'<a href="{escape(href)}">{text}</a>')
        else:
            out.append(str(text).replace("\n", "<br>\n"))
    return Markup("".join(out))


def utc_time(dt: datetime) -> str:
    """The time as `2010-06-22 12:03`, in UTC."""
    return _minute_label(int(dt.timestamp()) // 60)


@lru_cache(maxsize=4096)
def _minute_label(minute: int) -> str:
    # Cached by the minute: a busy event posts hundreds of messages in each.
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M")


def iso_time(dt: datetime) -> str:
    return format_time(dt)


_HTML_EXTENSIONS = ("html", "htm", "xml", "html.j2", "htm.j2", "xml.j2")


@lru_cache(maxsize=4)
def environment(html: bool, *, sandboxed: bool = False) -> jinja2.Environment:
    """The templates' environment; HTML's autoescapes every template, the operator's too.

    The operator's own template runs in a sandboxed one (`sandboxed=True`), with the same
    autoescaping, filters and options: a template file is code, and one from a stranger
    must not reach Python's internals (`cycler.__init__.__globals__.os`). The built-in
    templates run unsandboxed, as the sandbox checks every attribute access and call.
    Built once per process: templates compile once and are never looked up again
    (auto_reload off), which matters when a post has 100,000 messages.
    """
    kind = jinja2.sandbox.SandboxedEnvironment if sandboxed else jinja2.Environment
    env = kind(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=_HTML_EXTENSIONS, default_for_string=html, default=html
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters.update(
        md_escape=md_escape,
        md_href=md_href,
        md_segments=md_segments,
        md_author=md_author,
        md_when=md_when,
        html_segments=html_segments,
        utc_time=utc_time,
        iso_time=iso_time,
    )
    return env


def _template(fmt: str, path: Path | None) -> jinja2.Template:
    env = environment(fmt == "html", sandboxed=path is not None)
    try:
        if path is None:
            return env.get_template(f"post.{FORMATS[fmt]}.j2")
        source = path.read_text(encoding="utf-8")
        code = env.compile(source, name=path.name, filename=str(path))
        return env.template_class.from_code(env, code, env.make_globals(None))
    except OSError as exc:
        raise BackchannelError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    except jinja2.TemplateError as exc:
        raise BackchannelError(f"template {path or fmt}: {exc}") from exc


# ammonia's fragment parser drops <html>, <head> and <body>, so only the body is cleaned.
_BODY = re.compile(r"(<body\b[^>]*>)(.*)(</body\s*>)", re.IGNORECASE | re.DOTALL)


# What the post's HTML may contain after cleaning: the built-in template's own tags and
# a few a custom template might want; no images, no scripts, no styles, no forms.
HTML_TAGS = frozenset(
    "a article bdi br div em footer h1 h2 h3 header li ol p section small span strong time ul".split()
)
HTML_ATTRIBUTES = {
    "*": {"class", "lang", "dir"},
    "a": {"href"},
    "ol": {"start"},
    "li": {"value"},
    "time": {"datetime"},
}
LINK_REL = "noopener noreferrer nofollow ugc"


@lru_cache(maxsize=1)
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(HTML_TAGS),
        attributes=HTML_ATTRIBUTES,
        url_schemes=set(richtext.ALLOWED_SCHEMES),
        url_relative="deny",
        link_rel=LINK_REL,
        strip_comments=True,
    )


def clean_html(document: str) -> str:
    """The document with its body (or, lacking one, all of it) passed through nh3."""
    match = _BODY.search(document)
    if match is None:
        return _cleaner().clean(document)
    return document[: match.start(2)] + _cleaner().clean(match.group(2)) + document[match.end(2) :]


# -- the post ------------------------------------------------------------------------------------


def _singular(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") and len(noun) > 1 else noun


def heading(*, part: int, parts: int, total: int, first: int, last: int, noun: str = "messages") -> str:
    if total == 0:
        return f"There are no {noun} yet."
    if parts == 1:
        return f"Here is the only {_singular(noun)}:" if total == 1 else f"Here are all {total} {noun}:"
    numbers = f"{first}–{last}" if last > first else f"{first}"
    return f"Here is part {part} of all {total} {noun} ({numbers}):"


def _normalise_format(fmt: str) -> str:
    fmt = _ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise BackchannelError(f"unknown post format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def render_post(
    messages: Iterable[StoredMessage],
    *,
    fmt: str = "markdown",
    part_size: int | None = None,
    title: str | None = None,
    template: Path | None = None,
    noun: str = "messages",
) -> list[str]:
    """The numbered follow-up post, one rendered string per part of `part_size` messages
    (all in one part by default), in the order `messages` come.

    The messages are read once, as they stream from the store; each part's heading
    names the total, so the items (small tuples) are all built before the first part
    is rendered.
    """
    fmt = _normalise_format(fmt)
    if part_size is not None and part_size < 1:
        raise BackchannelError("part size must be at least 1")
    compiled = _template(fmt, template)
    with _no_cyclic_gc():
        return _render_parts(compiled, messages, fmt=fmt, part_size=part_size, title=title, noun=noun)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    # A big post allocates millions of small objects, none of them in a cycle; left on,
    # the cyclic collector rescans them all over and over (a quarter of the time).
    # Reference counting still frees everything as usual.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _render_parts(
    compiled: jinja2.Template,
    messages: Iterable[StoredMessage],
    *,
    fmt: str,
    part_size: int | None,
    title: str | None,
    noun: str,
) -> list[str]:
    items = [make_item(number, stored) for number, stored in enumerate(messages, 1)]
    total = len(items)
    size = part_size or max(total, 1)
    chunks = [items[i : i + size] for i in range(0, total, size)] or [[]]
    title = richtext.clean_line(title) if title else None
    rendered = []
    for part, chunk in enumerate(chunks, 1):
        first, last = (chunk[0].number, chunk[-1].number) if chunk else (0, 0)
        context = {
            "heading": heading(part=part, parts=len(chunks), total=total, first=first, last=last, noun=noun),
            "title": title,
            "noun": noun,
            "format": fmt,
            "part": part,
            "parts": len(chunks),
            "total": total,
            "first": first,
            "last": last,
            "items": chunk,
        }
        try:
            text = compiled.render(context)
        except jinja2.TemplateError as exc:
            raise BackchannelError(f"template {compiled.name or fmt}: {exc}") from exc
        rendered.append(clean_html(text) if fmt == "html" else text)
    return rendered


def write_post(
    parts: Sequence[str], out: Path | None, fmt: str = "markdown", *, force: bool = False
) -> list[Path]:
    """Write the rendered parts; return the files written (none: the caller prints them).

    One part goes to the file `out`; several go into the directory `out`, one file a
    part, named `part-01.md`, `part-02.md`, … (an existing directory gets that layout
    even for one part). Names come from the part number alone. Each file is written
    whole or not at all (`replacing`); a symbolic link is refused unless `force`.
    """
    if out is None:
        return []
    ext = FORMATS[_normalise_format(fmt)]
    if len(parts) == 1 and not out.is_dir():
        with replacing(out, force=force) as fh:
            fh.write(parts[0])
        return [out]
    if out.is_symlink() and not force:
        raise _symlink_refused(out)
    if out.exists() and not out.is_dir():
        raise BackchannelError(f"{out} is a file; a post in {len(parts)} parts needs a directory")
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(parts))))
    written = []
    for number, text in enumerate(parts, 1):
        path = out / f"part-{number:0{width}d}.{ext}"
        with replacing(path, force=force) as fh:
            fh.write(text)
        written.append(path)
    return written


def _symlink_refused(path: Path) -> BackchannelError:
    return BackchannelError(
        f"{path} is a symbolic link (to {os.readlink(path)}); not writing through it (--force does)"
    )


def _output_target(out: Path, force: bool) -> Path:
    """The file that writing `out` will replace, after the checks that make a clear error
    of what would otherwise be a traceback or a surprise."""
    if out.is_symlink():
        if not force:
            raise _symlink_refused(out)
        out = out.resolve()
    if not out.parent.is_dir():
        raise BackchannelError(f"cannot write {out}: the directory {out.parent} does not exist")
    if out.is_dir():
        raise BackchannelError(f"cannot write {out}: it is a directory")
    return out


def _new_file_mode(target: Path) -> int:
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def replacing(out: Path, *, force: bool = False) -> Iterator[TextIO]:
    """A text file to write that appears at `out` only when the block ends without an
    error: it is written under a temporary name beside `out` and renamed over it, so a
    failure halfway leaves no partial file, and whatever was at `out` unchanged.

    A symbolic link at `out` is refused unless `force`, which writes to its target; a
    missing directory is a clear error, not a traceback. Something at `out` that is not
    a regular file (a pipe, `/dev/null`) is written to as it is: renaming over it would
    replace it.
    """
    target = _output_target(out, force)
    if target.exists() and not target.is_file():
        with target.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackchannelError(f"cannot write {out}: {exc.strerror or exc}") from exc
    try:
        with open(fd, "w", encoding="utf-8", newline="") as fh:
            os.fchmod(fh.fileno(), _new_file_mode(target))
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# -- archives --------------------------------------------------------------------------------

CSV_HEADER = (
    "network",
    "network_id",
    "uri",
    "created_at",
    "author_handle",
    "author_name",
    "text",
    "permalink",
    "reply_to",
    "repost_of",
    "hashtags",
    "mentions",
    "links",
    "status",
    "starred",
    "answered",
    "pinned",
)
# A spreadsheet reads a cell that starts with one of these as a formula (OWASP "CSV
# injection"): such cells get a leading single quote, which spreadsheets show as text.
# The CSV is for reading; the JSONL archive is the one that imports back unchanged.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _csv_row(item: Message | StoredMessage) -> list[str]:
    if isinstance(item, StoredMessage):
        m, mod = item.message, item.moderation
    else:
        m, mod = item, Moderation()
    row = [
        m.network.value,
        m.network_id,
        m.uri,
        format_time(m.created_at),
        m.author_handle,
        m.author_name,
        m.text,
        m.permalink or "",
        m.reply_to or "",
        m.repost_of or "",
        " ".join(m.hashtags),
        " ".join(m.mentions),
        " ".join(m.links),
        mod.status.value,
        "true" if mod.starred else "false",
        "true" if mod.answered else "false",
        "true" if mod.pinned else "false",
    ]
    return [csv_cell(value) for value in row]


def _jsonl_lines(messages: Iterable[Message | StoredMessage]) -> Iterator[str]:
    for m in messages:
        yield orjson.dumps(message_to_record(m)).decode() + "\n"


def write_archive(
    messages: Iterable[Message | StoredMessage],
    out: TextIO | Path,
    fmt: str = "jsonl",
    *,
    force: bool = False,
) -> int:
    """Write an archive, one message a line; return how many were written. A file
    `out` is written whole or not at all (`replacing`, which says what `force` does).

    JSONL: the records `core/record` defines (with moderation), so the archive imports
    and replays again. CSV: the fixed `CSV_HEADER`, list fields space-separated, and any
    cell that starts with `= + - @`, a tab or a carriage return prefixed with a single
    quote, so a spreadsheet shows it as text instead of running it as a formula (CSV
    injection); that makes the CSV for reading, not for importing back.
    """
    if fmt not in ARCHIVE_FORMATS:
        raise BackchannelError(
            f"unknown archive format {fmt!r}; expected one of {', '.join(ARCHIVE_FORMATS)}"
        )
    if isinstance(out, Path):
        with replacing(out, force=force) as fh:
            return write_archive(messages, fh, fmt)
    count = 0
    if fmt == "jsonl":
        for line in _jsonl_lines(messages):
            out.write(line)
            count += 1
        return count
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for m in messages:
        writer.writerow(_csv_row(m))
        count += 1
    return count
