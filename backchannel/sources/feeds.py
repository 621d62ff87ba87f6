"""RSS and Atom feeds (a blog's comment feed), polled politely.

Each poll is a conditional GET: the `ETag` and `Last-Modified` of the last full
response go back as `If-None-Match` and `If-Modified-Since`, and a 304 costs the
server almost nothing and us nothing at all. The cursor is those two validators as
JSON; entries are not tracked here, because a feed is a window that repeats what it
showed before and the store keeps one row per URI. Parsing and normalising is
`backchannel.core.feeds`' job: this module only fetches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from backchannel.core.backoff import retry_after
from backchannel.core.feeds import parse_feed
from backchannel.errors import ConfigError, PayloadError
from backchannel.eventfile import EventFile, SourceType, register
from backchannel.sources.base import Page, UpstreamError

log = logging.getLogger(__name__)

# Comments on a blog come in over minutes, not seconds; five minutes between polls is
# what feed readers consider polite, and a 304 makes each poll nearly free.
DEFAULT_INTERVAL = 300.0
# A comment feed is tens of kilobytes; anything far larger is not what we asked for.
MAX_BYTES = 10 * 1024 * 1024
ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"


def _validators(cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    try:
        data = orjson.loads(cursor)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("etag", "modified") and isinstance(v, str) and v}


class FeedSource:
    def __init__(self, url: str, *, interval: float = DEFAULT_INTERVAL) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"a feed's url must be http(s)://…, got {url!r}")
        self.url = url
        self.key = f"feed:{url}"
        self.interval = interval

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page:
        known = _validators(cursor)
        headers = {"Accept": ACCEPT}
        if "etag" in known:
            headers["If-None-Match"] = known["etag"]
        if "modified" in known:
            headers["If-Modified-Since"] = known["modified"]
        async with http.get(self.url, headers=headers) as resp:
            if resp.status == 304:
                return Page()  # nothing new; the stored validators stay as they are
            if resp.status != 200:
                raise self._error(resp.status, resp.headers)
            if resp.content_length is not None and resp.content_length > MAX_BYTES:
                raise UpstreamError(
                    f"the feed is {resp.content_length:,} bytes; refusing", status=resp.status
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise UpstreamError(f"the feed is over {MAX_BYTES:,} bytes; refusing", status=resp.status)
                chunks.append(chunk)
            body = b"".join(chunks)
            etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            content_type = resp.headers.get("Content-Type")
        try:
            read = parse_feed(body, url=self.url, content_type=content_type, fetched_at=datetime.now(UTC))
        except PayloadError as exc:
            # A 200 that is not a feed (a login page, a parked domain): an HTTP-kind failure.
            raise UpstreamError(f"{self.url}: {exc}", status=resp.status) from exc
        validators = {"etag": etag, "modified": modified}
        return Page(
            messages=read.messages,
            rejected=read.rejected,
            cursor=orjson.dumps(validators).decode(),
        )

    def _error(self, status: int, headers: Mapping[str, str]) -> UpstreamError:
        # 429 and 503 may say when to come back (Retry-After); the runner honours it.
        wait = retry_after(headers, datetime.now(UTC)) if status in (429, 503) else None
        return UpstreamError(f"{self.url}: HTTP {status}", status=status, upstream_wait=wait)


def _build(event_file: EventFile, settings: Mapping[str, Any]) -> FeedSource:
    url = settings.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError("feed: url is required (the RSS or Atom feed's address)")
    return FeedSource(url, interval=float(settings.get("interval", DEFAULT_INTERVAL)))


register(
    SourceType(
        network="feed",
        summary="an RSS or Atom feed, such as a blog's comment feed (conditional GET; default every 300 s)",
        settings={"url": "the feed's address, e.g. https://example.blogspot.com/feeds/comments/default"},
        build=_build,
    )
)
