"""RSS and Atom feeds (a blog's comment feed, say) to `Message`s.

Pure: feedparser reads bytes already fetched (wrapped in a BytesIO, so it never opens
a URL or a file itself) and nothing here touches the network.

An entry's identity is its Atom `id` or RSS `guid` (Blogger's look like
`tag:blogger.com,1999:blog-….post-…`): globally unique by the Atom spec, so it is the
message's URI as it is. A guid that is not a URI (a bare number) is only unique in its
feed and is prefixed with the feed's address. Entry HTML is untrusted: feedparser
sanitises it, and `html_to_text` sanitises it again with nh3 before reducing it to
plain text; only http(s) links survive, for the entry's permalink too.
"""

from __future__ import annotations

import calendar
import io
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser
import orjson
from linkify_it import LinkifyIt

from backchannel.core.html_text import html_to_text, is_web_url
from backchannel.core.models import Message, Network
from backchannel.errors import PayloadError

_HASHTAG = re.compile(r"(?<![\w&#])#(\w*[^\W\d]\w*)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_linkify = LinkifyIt()
_PLAIN = {"text/plain", "text"}


@dataclass(slots=True)
class FeedRead:
    messages: list[Message] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    title: str | None = None


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None = None,
    fetched_at: datetime | None = None,
    event: str = "",
) -> FeedRead:
    """The entries of a fetched feed. A body that is no feed at all raises
    PayloadError; an entry that cannot be read is rejected alone.

    `url` resolves relative links and prefixes bare guids; `fetched_at` dates entries
    that carry no date of their own (RSS makes pubDate optional)."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    try:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:
        # feedparser reports most broken feeds as `bozo`, but some bytes still raise from
        # inside it (a character reference to a surrogate, &#xD800;, is a UnicodeEncodeError):
        # whatever it raises is about the bytes it was given.
        raise PayloadError(f"the feed cannot be read: {type(exc).__name__}: {exc}") from exc
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise PayloadError(f"not an RSS or Atom feed{f' ({problem})' if problem else ''}")
    out = FeedRead(title=parsed.feed.get("title") or None)
    fallback = fetched_at or datetime.now(UTC)
    for position, entry in enumerate(parsed.entries, 1):
        try:
            out.messages.append(message_from_entry(entry, feed_url=url, fetched_at=fallback, event=event))
        except (PayloadError, ValueError, TypeError) as exc:
            name = _get(entry, "id") or _get(entry, "link") or f"entry {position}"
            out.rejected.append(f"{name}: {exc}")
    return out


def _get(entry: Mapping[str, Any], key: str) -> Any:
    # feedparser's dict answers some missing keys from others (`updated` from `published`)
    # with a DeprecationWarning; read what the feed itself said.
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def entry_uri(entry_id: str, feed_url: str) -> str:
    return entry_id if _SCHEME.match(entry_id) else f"{feed_url}#{entry_id}"


def _time(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = _get(entry, key)
        if isinstance(value, time.struct_time):
            # feedparser normalises every date it reads to UTC.
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, OSError):
                continue  # a date no datetime can hold is no date: the next, or the fetch time
    return None


def _body(entry: Mapping[str, Any]) -> tuple[str, str]:
    """The fullest text the entry has and its type: content, else summary, else title."""
    contents = _get(entry, "content")
    if isinstance(contents, list):
        for content in contents:
            if isinstance(content, Mapping) and isinstance(content.get("value"), str) and content["value"]:
                return content["value"], str(content.get("type") or "text/html")
    for key in ("summary", "title"):
        value = _get(entry, key)
        if isinstance(value, str) and value:
            detail = _get(entry, f"{key}_detail")
            kind = detail.get("type") if isinstance(detail, Mapping) else None
            return value, str(kind or "text/html")
    return "", "text/plain"


def _author(entry: Mapping[str, Any]) -> tuple[str, str]:
    """(handle, name): the author's profile URI is the stable handle when there is one
    (Blogger gives every commenter the same noreply address); else the name."""
    detail = _get(entry, "author_detail")
    detail = detail if isinstance(detail, Mapping) else {}
    name = detail.get("name") or _get(entry, "author") or ""
    href = detail.get("href") or ""
    name = name.strip() if isinstance(name, str) else ""
    href = href.strip() if isinstance(href, str) and is_web_url(href) else ""
    if not name:
        email = detail.get("email")
        name = email.split("@")[0] if isinstance(email, str) and email else "anonymous"
    return href or name, name


def _links(text: str, anchors: tuple[str, ...]) -> tuple[str, ...]:
    found = [m.url for m in _linkify.match(text) or () if m.schema.lower() in ("http:", "https:")]
    return tuple(dict.fromkeys([*anchors, *found]))


def _permalink(entry: Mapping[str, Any]) -> str | None:
    candidates: list[Any] = []
    for link in _get(entry, "links") or ():
        if isinstance(link, Mapping) and link.get("rel", "alternate") == "alternate":
            candidates.append(link.get("href"))
    candidates.append(_get(entry, "link"))
    for href in candidates:
        if isinstance(href, str) and is_web_url(href):
            return href.strip()
    return None


def _reply_to(entry: Mapping[str, Any]) -> str | None:
    # Atom threading (RFC 4685): `thr:in-reply-to ref` is the parent's Atom id, a global
    # URI, so it matches the parent's message URI when the parent is stored.
    parent = _get(entry, "thr_in-reply-to")
    ref = parent.get("ref") if isinstance(parent, Mapping) else None
    return ref if isinstance(ref, str) and _SCHEME.match(ref) else None


def _raw(entry: Mapping[str, Any], text: str) -> str:
    keep = {k: _get(entry, k) for k in ("id", "link", "title", "author", "published", "updated")}
    keep["content"] = text
    return orjson.dumps({k: v for k, v in keep.items() if isinstance(v, str)}).decode()


def message_from_entry(
    entry: Mapping[str, Any], *, feed_url: str, fetched_at: datetime, event: str = ""
) -> Message:
    """One feedparser entry as a message."""
    entry_id = _get(entry, "id") or _get(entry, "link")
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise PayloadError("the entry has neither an id (guid) nor a link")
    entry_id = entry_id.strip()
    value, kind = _body(entry)
    anchors: tuple[str, ...] = ()
    if kind.split(";")[0].strip().lower() in _PLAIN:
        # feedparser leaves text/plain alone: it is text already, never to be read as HTML.
        text = value.strip()
    else:
        text, anchors = html_to_text(value)
    if not text:
        raise PayloadError("the entry has no text")
    handle, name = _author(entry)
    return Message(
        network=Network.FEED,
        network_id=entry_id,
        uri=entry_uri(entry_id, feed_url),
        author_handle=handle,
        author_name=name,
        text=text,
        created_at=_time(entry) or fetched_at,
        event=event,
        permalink=_permalink(entry),
        reply_to=_reply_to(entry),
        hashtags=tuple(dict.fromkeys(_HASHTAG.findall(text))),
        links=_links(text, anchors),
        raw=_raw(entry, value),
    )
