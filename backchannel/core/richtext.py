"""A message's plain text split into segments a renderer can link, and the URL allowlist.

Pure: no I/O, no markup. Every view and export links from these segments, so the
http/https allowlist (`safe_href`) is applied here, once, to every href: a segment
whose target fails it is plain text, never a link. Rendering (escaping for HTML or
Markdown) belongs to the caller; this module never produces markup.

URLs come from the message's own `links` (the network's entities, when they occur
verbatim in the text) and linkify-it-py; hashtags and mentions from the text. They
link to the network they were written on: X and Bluesky to their web apps, Mastodon
to the instance named by the message's permalink. Other networks' hashtags and
mentions keep their kind but get no href.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import quote, urlsplit

from linkify_it import LinkifyIt

from backchannel.core.models import Message, Network

SegmentKind = Literal["text", "hashtag", "mention", "link"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of a message's text; `href` is set only when it passed `safe_href`."""

    kind: SegmentKind
    text: str
    href: str | None = None


# -- cleaning ---------------------------------------------------------------------------

# C0 and C1 controls (newline and tab handled apart), DEL, lone surrogates (they cannot
# be written as UTF-8), the BOM, and the bidi embedding/override/isolate controls, which
# let a display name reorder the handle shown after it.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
_NEEDS_CLEANING = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]|^\\s|\\s$"
)
_LINE_BREAKS = {"\r": "\n", "\x0b": " ", "\x0c": " ", "\u2028": "\n", "\u2029": "\n"}


def _control(match: re.Match[str]) -> str:
    return _LINE_BREAKS.get(match.group(), "")


def clean_text(text: str) -> str:
    """Text fit to show: controls removed (newlines kept), tabs as spaces, each line
    stripped, runs of blank lines collapsed to one, none at either end."""
    if text.isprintable() and not (text[:1].isspace() or text[-1:].isspace()):
        return text  # the common case, decided in C
    if not _NEEDS_CLEANING.search(text):
        return text
    text = _CONTROL.sub(_control, text.replace("\r\n", "\n")).replace("\t", " ")
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.strip()
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


@lru_cache(maxsize=16384)
def clean_line(text: str) -> str:
    """`clean_text` on one line: for names and handles."""
    cleaned = clean_text(text)
    return " ".join(cleaned.split()) if "\n" in cleaned else cleaned


# -- the URL allowlist ------------------------------------------------------------------

# What browsers strip or ignore inside a URL: whitespace anywhere, controls, and invisible
# format characters. A scheme spelled with any of them in it is refused as a whole.
_INVISIBLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# What a URL may carry at either end (whitespace and C0 controls), stripped with str.strip:
# the regex `[\s\x00-\x20]+$` it replaces tried every position of a run of spaces in the
# middle of a URL, quadratic in the run (10 s for 20,000 spaces). No character past
# U+3000 is whitespace (Unicode's White_Space property), so the set is complete.
_EDGES = "".join(c for c in map(chr, range(0x3001)) if c <= " " or c.isspace())
# Characters that are never valid in a URL and that would matter to a renderer
# (quotes and angle brackets to HTML, backslashes and backticks to Markdown).
_UNSAFE_IN_URL = re.compile(r"[\"'<>`\\{}|^]")
ALLOWED_SCHEMES = ("http", "https")


class Href(str):
    """A URL that passed `safe_href` (which alone makes them), so it is not checked twice."""

    __slots__ = ()


def percent_encode(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def safe_href(url: str | None) -> str | None:
    """`url` if it is an absolute http or https URL, else None.

    The scheme is judged as a browser would read it: with whitespace, control and
    invisible characters removed and case folded, so `JaVaScRiPt:`, ` javascript:`
    and `java\\tscript:` are all seen for what they are. A URL that has any such
    character inside it is refused outright rather than repaired. Characters no URL
    may contain (quotes, angle brackets, backslashes…) come back percent-encoded.
    """
    if type(url) is Href:
        return url
    if not isinstance(url, str) or not url:
        return None
    if url.startswith(("https://", "http://")) and url.isprintable() and " " not in url and "[" not in url:
        # The common case: nothing invisible anywhere, a lower-case allowed scheme.
        rest = url[url.index("//") + 2 :]
        if not rest or rest[0] in "/?#":
            return None
        return Href(_UNSAFE_IN_URL.sub(percent_encode, url) if _UNSAFE_IN_URL.search(url) else url)
    probe = _INVISIBLE.sub("", url).casefold()
    scheme, colon, _ = probe.partition(":")
    if not colon or scheme not in ALLOWED_SCHEMES:
        return None
    candidate = url.strip(_EDGES)
    if _INVISIBLE.search(candidate):
        return None
    given_scheme = candidate.partition(":")[0]
    if not given_scheme.isascii() or given_scheme.lower() not in ALLOWED_SCHEMES:
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if not parts.netloc or not candidate[len(given_scheme) :].startswith("://"):
        return None
    candidate = given_scheme.lower() + candidate[len(given_scheme) :]
    if _UNSAFE_IN_URL.search(candidate):
        candidate = _UNSAFE_IN_URL.sub(percent_encode, candidate)
    return Href(candidate)


# -- networks -----------------------------------------------------------------------------

_HOST = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_SAFE_NAME = re.compile(r"[\w.-]+")


def _host_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ALLOWED_SCHEMES or not host or not _HOST.fullmatch(host):
        return None
    return host


def instance_host(message: Message) -> str | None:
    """The Mastodon instance a status was read from, from its permalink (or its URI)."""
    return _host_of(message.permalink) or _host_of(message.uri)


def _path_part(name: str) -> str:
    return name if name.isascii() and name.replace("_", "").isalnum() else quote(name, safe="")


# The href builders are cached: an event's hashtags and handles recur in most messages.
@lru_cache(maxsize=16384)
def _mastodon_profile(host: str | None, user: str, domain: str | None) -> str | None:
    home = domain or host
    if not home or not _HOST.fullmatch(home) or not _SAFE_NAME.fullmatch(user):
        return None
    return safe_href(f"https://{home}/@{_path_part(user)}")


@lru_cache(maxsize=16384)
def profile_url(network: Network, handle: str, host: str | None = None) -> str | None:
    """The web profile of `handle` on `network` (Mastodon: `user` on `host`, or `user@domain`)."""
    handle = handle.lstrip("@")
    if not handle:
        return None
    if network is Network.X:
        return safe_href(f"https://x.com/{_path_part(handle)}")
    if network is Network.BLUESKY:
        return safe_href(f"https://bsky.app/profile/{_path_part(handle)}")
    if network is Network.MASTODON:
        user, _, domain = handle.partition("@")
        return _mastodon_profile(host, user, domain or None)
    return None


@lru_cache(maxsize=16384)
def hashtag_url(network: Network, tag: str, host: str | None = None) -> str | None:
    tag = _path_part(tag)
    if network is Network.X:
        return safe_href(f"https://x.com/hashtag/{tag}")
    if network is Network.BLUESKY:
        return safe_href(f"https://bsky.app/hashtag/{tag}")
    if network is Network.MASTODON and host:
        return safe_href(f"https://{host}/tags/{tag}")
    return None


def author_url(message: Message) -> str | None:
    """The author's profile page, where the network has one we can name."""
    host = instance_host(message) if message.network is Network.MASTODON else None
    return profile_url(message.network, message.author_handle, host)


# -- splitting ------------------------------------------------------------------------------

# Each pattern starts with its `#` or `@` so the regex engine can skip ahead to one; the
# lookbehind then refuses one that follows a word character (`a@b.com` is no mention).
# One capturing group around the whole, so `split` yields text and entities in turn.
_HASHTAG = r"#(?<![\w&#/]#)\w+"
_DOMAIN = r"[\w-]+(?:\.[\w-]+)+"
_MENTION_BY_NETWORK = {
    Network.X: r"@(?<![\w@/]@)[A-Za-z0-9_]+",
    Network.BLUESKY: r"@(?<![\w@/]@)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+",
}
_FEDIVERSE_MENTION = rf"@(?<![\w@/]@)\w+(?:[.-]+\w+)*(?:@{_DOMAIN})?"
_TAGS_AND_MENTIONS = {
    network: re.compile(f"({_HASHTAG}|{_MENTION_BY_NETWORK.get(network, _FEDIVERSE_MENTION)})")
    for network in Network
}

# linkify-it costs microseconds a call, so it only sees the whitespace-separated tokens
# that might hold a link: those with a `//`, or a dot before two letters (a host name). A
# link never contains whitespace, so token by token it finds the links the whole text has.
_DOT_NAME = re.compile(r"\.[^\W\d_]{2}")
_SLASHES = re.compile("//")
_LINKIFY = LinkifyIt()

# (start, end, segment): a link whose URL failed the allowlist keeps its place, so nothing
# inside it is linked, with segment None: it stays in the surrounding text.
_Span = tuple[int, int, Segment | None]

_SCHEME = re.compile(r"https?:(?=//)", re.IGNORECASE)
# linkify-it's own quick test for a schemeless host (one ending in a known TLD).
_FUZZY_HOST = re.compile(_LINKIFY.re["host_fuzzy_test"], re.IGNORECASE)


def _scheme_boundary(char: str) -> bool:
    # Where linkify-it lets a scheme start: after punctuation, a separator or a control
    # character (not `_`), or `<`, `>`, `｜`.
    return char in "<>｜" or (char != "_" and unicodedata.category(char)[0] in "PZC")


def _linkify_token(token: str) -> tuple[tuple[int, int, str], ...]:
    """The links linkify-it finds in one token, as (start, end, url)."""
    # Cached: the same links recur across an event's messages (retweets, a shared slide
    # deck); a freak token of thousands of characters is not worth keeping.
    return _linkify_cached(token) if len(token) <= 512 else _linkify(token)


@lru_cache(maxsize=8192)
def _linkify_cached(token: str) -> tuple[tuple[int, int, str], ...]:
    return _linkify(token)


def _linkify(token: str) -> tuple[tuple[int, int, str], ...]:
    # linkify-it's full match costs tens of microseconds; a token holding one http(s)
    # link and nothing else link-like needs only its check of that scheme.
    scheme = _SCHEME.search(token)
    if scheme is not None:
        at, tail = scheme.start(), scheme.end()
        head = token[:at]
        if at == 0 or (_scheme_boundary(head[-1]) and not _link_like(head)):
            end = tail + _LINKIFY.test_schema_at(token, scheme.group(), tail)
            if end > tail + 2 and not _link_like(token[end:]):
                return ((at, end, token[at:end]),)
    elif "@" not in token and not _FUZZY_HOST.search(token):
        return ()
    return tuple((m.index, m.last_index, m.url) for m in _LINKIFY.match(token) or ())


def _link_like(text: str) -> bool:
    return "//" in text or "@" in text or _DOT_NAME.search(text) is not None


def _ends_token(text: str, end: int) -> bool:
    """A known link found verbatim must not be the head of a longer URL."""
    rest = text[end : end + 8].lstrip(".,;:!?)]}'\"…")
    return not rest or rest[0].isspace()


def _token_at(text: str, pos: int) -> tuple[int, int]:
    """The token around `pos`, split at spaces and newlines (a token may hold other
    whitespace, such as a no-break space; linkify-it ends a link there itself)."""
    start = text.rfind(" ", 0, pos) + 1
    end = text.find(" ", pos)
    if end == -1:
        end = len(text)
    if "\n" in text:
        start = max(start, text.rfind("\n", 0, pos) + 1)
        newline = text.find("\n", pos, end)
        if newline != -1:
            end = newline
    return start, end


@lru_cache(maxsize=8192)
def _link(piece: str, url: str) -> Segment | None:
    href = safe_href(url)
    return Segment("link", piece, href) if href else None


def _link_spans(text: str, links: tuple[str, ...]) -> list[_Span]:
    spans: list[_Span] = []
    rest = text  # the text with the known links blanked out, for linkify-it's turn
    for url in links:
        if not url or url not in text:
            continue
        start = text.find(url)
        while start != -1:
            end = start + len(url)
            if (start == 0 or not text[start - 1].isalnum()) and _ends_token(text, end):
                spans.append((start, end, _link(url, url)))
                rest = rest[:start] + " " * len(url) + rest[end:]
            start = text.find(url, end)
    dotted = _DOT_NAME.search(rest)
    if dotted is None and "//" not in rest:
        return spans
    marks = [m.start() for m in _DOT_NAME.finditer(rest, dotted.start())] if dotted else []
    if "//" in rest:
        marks += [m.start() for m in _SLASHES.finditer(rest)]
    for start, end in sorted({_token_at(rest, pos) for pos in marks}):
        for a, b, url in _linkify_token(rest[start:end]):
            spans.append((start + a, start + b, _link(text[start + a : start + b], url)))
    return spans


@lru_cache(maxsize=16384)
def _entity(network: Network, host: str | None, piece: str) -> Segment | None:
    """The segment for a matched `#tag` or `@mention`; cached, as an event's recur."""
    if piece[0] == "#":
        tag = piece[1:]
        return None if tag.isdigit() else Segment("hashtag", piece, hashtag_url(network, tag, host))
    user, _, domain = piece[1:].partition("@")
    if network is Network.MASTODON:
        return Segment("mention", piece, _mastodon_profile(host, user, domain or None))
    return Segment("mention", piece, profile_url(network, user))


def _split_tags(text: str, network: Network, host: str | None) -> list[Segment]:
    """`split_text` of a text without links (most messages): one `re.split` in C."""
    if "#" not in text and "@" not in text:
        return [Segment("text", text)] if text else []
    pieces = _TAGS_AND_MENTIONS[network].split(text)
    out: list[Segment] = []
    plain = pieces[0]
    for i in range(1, len(pieces), 2):
        segment = _entity(network, host, pieces[i])
        if segment is None:  # `#123`
            plain += pieces[i] + pieces[i + 1]
            continue
        if plain:
            out.append(Segment("text", plain))
        out.append(segment)
        plain = pieces[i + 1]
    if plain:
        out.append(Segment("text", plain))
    return out


def _by_position(span: _Span) -> tuple[int, int]:
    return span[0], -span[1]


def split_text(
    text: str, network: Network, *, links: tuple[str, ...] = (), host: str | None = None
) -> list[Segment]:
    """Segments of already cleaned `text` written on `network` (`host`: a Mastodon instance)."""
    spans = _link_spans(text, links)
    if not spans:
        return _split_tags(text, network, host)
    if "#" in text or "@" in text:
        for match in _TAGS_AND_MENTIONS[network].finditer(text):
            segment = _entity(network, host, match.group())
            if segment is not None:
                spans.append((match.start(), match.end(), segment))
    if len(spans) > 1:
        spans.sort(key=_by_position)
    out: list[Segment] = []
    pos = taken = 0
    for start, end, segment in spans:
        if start < taken:
            continue  # inside an earlier, longer span (a hashtag in a URL)
        taken = end
        if segment is None:
            continue  # a refused link stays in the surrounding text
        if start > pos:
            out.append(Segment("text", text[pos:start]))
        out.append(segment)
        pos = end
    if pos < len(text):
        out.append(Segment("text", text[pos:]))
    return out


def segments(message: Message) -> list[Segment]:
    """The message's cleaned text (`clean_text`) as text, hashtag, mention and link segments."""
    host = instance_host(message) if message.network is Network.MASTODON else None
    return split_text(clean_text(message.text), message.network, links=message.links, host=host)
