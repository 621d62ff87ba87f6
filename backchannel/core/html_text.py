"""Mastodon status HTML to plain text and the links it carries.

Pure: no I/O. Mastodon's `content` is HTML sanitised by whichever server sent it,
and that sanitiser has been bypassed before (CVE-2023-36459), so the HTML is first
re-sanitised with nh3 to the tags Mastodon documents (`p`, `br`, `a`, `span`), and
only then walked with the standard library's parser. Nothing here produces HTML:
the text is plain and must be escaped wherever it is shown.
"""

from __future__ import annotations

from html.parser import HTMLParser

import nh3

_TAGS = {"p", "br", "a", "span"}
_ATTRIBUTES = {"a": {"href", "class", "rel"}, "span": {"class"}}
_SCHEMES = {"http", "https"}


def sanitise(html: str) -> str:
    """`html` reduced to Mastodon's allowlist; script and style lose their content too."""
    # link_rel=None: nh3 would otherwise add its own rel and refuse `rel` in the allowlist,
    # and we need the original rel="tag" to tell hashtag anchors from links.
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_ATTRIBUTES,
        link_rel=None,
        url_schemes=_SCHEMES,
    )


def is_web_url(href: str) -> bool:
    scheme, sep, _ = href.strip().partition(":")
    return bool(sep) and scheme.lower() in _SCHEMES


class _TextWalker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self._paragraph_pending = False

    def _emit(self, text: str) -> None:
        if self._paragraph_pending and self.parts:
            self.parts.append("\n\n")
        self._paragraph_pending = False
        self.parts.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._emit("\n")
        elif tag == "p":
            self._paragraph_pending = True
        elif tag == "a":
            self._anchor(dict(attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._paragraph_pending = True

    def handle_data(self, data: str) -> None:
        # Invisible spans are kept on purpose: Mastodon hides a URL's scheme and tail
        # in them, and the plain text should carry the whole URL.
        if data:
            self._emit(data)

    def _anchor(self, attrs: dict[str, str | None]) -> None:
        href = (attrs.get("href") or "").strip()
        classes = (attrs.get("class") or "").split()
        rel = (attrs.get("rel") or "").split()
        if "mention" in classes or "hashtag" in classes or "tag" in rel:
            return
        if is_web_url(href) and href not in self.links:
            self.links.append(href)


def html_to_text(html: str) -> tuple[str, tuple[str, ...]]:
    """Plain text of a status's HTML, and the http(s) links it points to.

    `<br>` becomes a newline and paragraphs are separated by a blank line; links of
    mention and hashtag anchors are left out (they are in the status's own lists).
    """
    walker = _TextWalker()
    walker.feed(sanitise(html))
    walker.close()
    return "".join(walker.parts).strip(), tuple(walker.links)
