"""Mastodon: one hashtag on one instance, polled without gaps and optionally streamed.

The source knows Mastodon's API (SOURCES.md §3.1) and nothing else: it turns answers
into `Page`s and failures into `UpstreamError`s. Storing, cursors, scheduling and
backoff belong to the runner (`backchannel.jobs`); nothing here sleeps, writes to the
store or logs the token.

Polling: `GET /api/v1/timelines/tag/:hashtag?min_id=CURSOR&limit=40` answers the 40
statuses just above the cursor (newest first within the page). The cursor becomes the
page's highest id and the runner asks again at once (`more`) until a page brings
nothing newer, so any number of statuses posted between two polls arrives with no gap.
`since_id` is never used: it answers the *newest* 40 and silently skips the middle.
With no cursor yet, the first poll takes the newest page only (an event starts now,
not at the tag's history). The cursor is per instance and tag (`mastodon:HOST:TAG`):
ids are local to the instance that allocated them. A status the normaliser cannot
read (malformed, or one it fails on for any reason) is rejected alone, and the
cursor moves past it: asking again would only bring it back.

Streaming (`stream=True`, needs a user token since Mastodon 4.2): a websocket
subscribed to the tag. Mastodon replays nothing, so after subscribing the source first
catches up over REST from the stored cursor, then reads events; anything posted while
disconnected or while connecting is fetched once (the store folds what both paths
saw). `update` adds, `status.update` edits, `delete` deletes by the URI this source
saw for that id.

One source follows one hashtag; `build` makes one per hashtag of the event file. The
same post read through two instances has one `uri` and is stored once.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from backchannel.core.backoff import rate_limit, retry_after, wait_before_next_call
from backchannel.core.mastodon import messages_from_status
from backchannel.core.models import Message
from backchannel.errors import ConfigError, PayloadError
from backchannel.eventfile import EventFile, SourceType, register
from backchannel.sources.base import Page, Sink, UpstreamError

log = logging.getLogger(__name__)

TOKEN_ENV = "BACKCHANNEL_MASTODON_TOKEN"
PAGE_LIMIT = 40  # the API's maximum: fewer requests per drained backlog
# A body that is not a list of statuses is the server's fault, like a bad gateway: it is
# reported as a 502 so the runner backs off as after any server error (5 s, doubling).
BAD_BODY = 502
# Mastodon's streaming server pings each websocket every 30 s. Silence (no frame, no
# ping) for `keepalive` seconds means the connection is dead even if TCP has not noticed:
# aiohttp pings after 2/3 of it and gives up when no pong comes within the last third.
KEEPALIVE = 60.0
# A stream that closes this soon after opening counts as a failure, so a server that
# accepts and drops at once is retried with backoff instead of in a tight loop.
HEALTHY_STREAM = 2.0
# Ids reach the stream roughly, not strictly, in order (remote posts are processed in
# parallel). The cursor a stream event stores is rewound by this much, so a reconnect's
# REST catch-up also fetches a lower id the stream had not delivered yet.
STREAM_REWIND = 10.0
# Deletes arrive as instance-local ids; this many id -> URI pairs are remembered.
KNOWN_IDS = 100_000

_TAG = re.compile(r"\w{1,100}")
# What a status id looks like (Mastodon: decimal; Pleroma, Akkoma: base 62). Anything
# else never becomes the cursor: one absurd id would put every later status behind it.
_STATUS_ID = re.compile(r"[0-9A-Za-z]{1,32}")


def id_order(status_id: str) -> tuple[int, str]:
    """Sort key for status ids: Mastodon's are decimal snowflakes (as strings, beyond
    JavaScript's integers), so length then text is numeric order ("99" < "100") without
    parsing; it is also right for the fixed-length ids of Pleroma and Akkoma."""
    return (len(status_id), status_id)


def newest(*ids: str | None) -> str | None:
    present = [i for i in ids if i]
    return max(present, key=id_order) if present else None


def _order_in_page(position: int, status: Any) -> tuple[int, str, int]:
    status_id = status.get("id") if isinstance(status, dict) else None
    if isinstance(status_id, str):
        return (*id_order(status_id), position)
    return (0, "", position)


def rewound(status_id: str, seconds: float) -> str:
    """A Mastodon snowflake id `seconds` earlier (its high bits are milliseconds since
    1970); other ids are returned as they are."""
    if status_id.isdigit():
        value = int(status_id)
        if value >> 16 > 1_000_000_000_000:  # a snowflake of this century, not an old serial id
            return str(value - (int(seconds * 1000) << 16))
    return status_id


def instance_url(instance: str) -> URL:
    """The instance's origin: `mastodon.social`, `https://mastodon.social/` or, for a
    local test server, `http://127.0.0.1:8080`."""
    url = URL(instance if "://" in instance else f"https://{instance}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"a Mastodon instance is an https:// address, got {instance!r}")
    return url.origin()


def _error_detail(body: bytes) -> str:
    """Mastodon's `{"error": "..."}` text, if the body is that."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f": {data['error'][:200]}"
    return ""


class MastodonSource:
    """A hashtag timeline on one instance: a `PollingSource`, and a `StreamingSource`
    too when built with `stream=True`."""

    # The runner streams a source that has a `stream` attribute and schedules polls for
    # one that has not, so `stream` is bound in __init__ only when streaming is wanted.
    stream: Callable[[aiohttp.ClientSession, str | None, Sink], Awaitable[None]]

    def __init__(
        self,
        instance: str,
        hashtag: str,
        *,
        interval: float = 20,
        token: str | None = None,
        stream: bool = False,
        local: bool = False,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self.base = instance_url(instance)
        self.hashtag = hashtag.lstrip("#").lower()
        if not _TAG.fullmatch(self.hashtag):
            raise ConfigError(f"not a hashtag: {hashtag!r}")
        netloc = self.base.host if self.base.explicit_port is None else f"{self.base.host}:{self.base.port}"
        self.host = str(netloc).lower()
        self.key = f"mastodon:{self.host}:{self.hashtag}"
        self.interval = float(interval)
        self.local = local
        self.keepalive = keepalive
        self._token = token or None
        if stream:
            if self._token is None:
                raise ConfigError(
                    f"streaming {self.host} needs a user token (Mastodon 4.2+): set {TOKEN_ENV}"
                )
            self.stream = self._stream
        # The domain that qualifies local users' handles (`ann` -> `ann@domain`), so one
        # author has one handle whichever instance served the post. The instance's own
        # `domain` (LOCAL_DOMAIN) replaces the host name once /api/v2/instance has said it.
        self.domain = str(self.base.host).lower()
        self._streaming_base: URL | None = None
        self._instance_known = False
        self._uris: OrderedDict[str, str] = OrderedDict()
        self._unknown_tag_logged = False
        self._stream_cursor: str | None = None
        self._bug_logged = False

    def __repr__(self) -> str:
        return f"MastodonSource({self.key!r}, stream={hasattr(self, 'stream')}, local={self.local})"

    @property
    def timeline_url(self) -> URL:
        return self.base / "api/v1/timelines/tag" / self.hashtag

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    # -- polling ----------------------------------------------------------------------

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page:
        await self._learn_instance(http)
        params = {"limit": str(PAGE_LIMIT)}
        if cursor:
            params["min_id"] = cursor
        if self.local:
            params["local"] = "true"
        try:
            async with http.get(self.timeline_url, params=params, headers=self._headers()) as response:
                status, headers = response.status, response.headers
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"{self.host}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        now = datetime.now(UTC)
        if status == 404:
            # Mastodon answers 404 for a tag nobody on the instance has used yet (older
            # versions answer []): nothing to collect, not a failure.
            if not self._unknown_tag_logged:
                log.info(
                    "%s: #%s is unknown on %s (404); empty until someone uses it",
                    self.key,
                    self.hashtag,
                    self.host,
                )
                self._unknown_tag_logged = True
            return Page(cursor=cursor, wait=wait_before_next_call(headers, now))
        if status != 200:
            raise self._http_error(status, headers, body, now)
        page = self._page(self._statuses(body), cursor)
        page.wait = wait_before_next_call(headers, now)
        return page

    def _statuses(self, body: bytes) -> list[Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"{self.host} sent a #{self.hashtag} page that is not valid JSON "
                f"({len(body)} bytes: {exc}); treated as a server error",
                status=BAD_BODY,
            ) from exc
        if not isinstance(data, list):
            raise UpstreamError(
                f"{self.host} sent a #{self.hashtag} page that is not a list of statuses "
                f"(a JSON {type(data).__name__}); treated as a server error",
                status=BAD_BODY,
            )
        return data

    def _page(self, statuses: list[Any], cursor: str | None) -> Page:
        page = Page(cursor=cursor)
        # Pages come newest first; stored oldest first, the sequence follows the ids.
        for i, status in sorted(enumerate(statuses), key=lambda item: _order_in_page(*item)):
            status_id = status.get("id") if isinstance(status, dict) else None
            try:
                if not isinstance(status_id, str) or not _STATUS_ID.fullmatch(status_id):
                    raise PayloadError(f"status.id is not a status id: {str(status_id)[:40]!r}")
                # A malformed status still moves the cursor: asking again would bring it back.
                page.cursor = newest(page.cursor, status_id)
                messages = self._messages(status)
            except PayloadError as exc:
                valid = isinstance(status_id, str) and _STATUS_ID.fullmatch(status_id)
                name = f"status {status_id}" if valid else f"entry {i + 1} of the page"
                page.rejected.append(f"{name} from {self.host}: {exc}")
                continue
            self._remember(messages)
            page.messages.extend(messages)
        if statuses:
            self._unknown_tag_logged = False
        # min_id paging ends when a page brings nothing newer (normally: an empty page).
        # Without a cursor this was the first poll: the newest page only, no history.
        page.more = cursor is not None and page.cursor != cursor
        return page

    def _http_error(
        self, status: int, headers: CIMultiDictProxy[str], body: bytes, now: datetime
    ) -> UpstreamError:
        detail = _error_detail(body)
        wait = retry_after(headers, now)
        if wait is None and status == 429:
            # Mastodon's 429 carries the X-RateLimit-* headers rather than Retry-After.
            wait = rate_limit(headers, now).reset_in
        if status in (401, 403) and self._token:
            message = (
                f"{self.host} refused the token for #{self.hashtag} ({status}{detail}): check {TOKEN_ENV}"
            )
        elif status in (401, 403):
            message = (
                f"{self.host} does not show #{self.hashtag} without a login ({status}{detail}): "
                f"the instance has disabled public timelines; set {TOKEN_ENV} to a user token"
            )
        elif status == 429:
            message = f"{self.host} rate limit reached (429{detail})"
        else:
            message = f"{self.host} answered {status} for #{self.hashtag}{detail}"
        return UpstreamError(message, status=status, upstream_wait=wait)

    def _messages(self, status: Any, raw: str | None = None) -> list[Message]:
        """A status's messages. Whatever the normaliser raises on it, not only a
        PayloadError (a bug), rejects this status alone: asking again would fail the
        same way, and the statuses after it would never be collected."""
        try:
            return messages_from_status(status, instance=self.domain, raw=raw)
        except PayloadError:
            raise
        except Exception as exc:
            if not self._bug_logged:
                self._bug_logged = True
                log.error("%s: the Mastodon normaliser failed on a status", self.key, exc_info=exc)
            raise PayloadError(f"unexpected {type(exc).__name__}: {exc}") from exc

    def _remember(self, messages: list[Message]) -> None:
        # A boost's messages are the original (its id on this instance) and the boost.
        for message in messages:
            self._uris[message.network_id] = message.uri
            self._uris.move_to_end(message.network_id)
        while len(self._uris) > KNOWN_IDS:
            self._uris.popitem(last=False)

    async def _learn_instance(self, http: aiohttp.ClientSession) -> None:
        """The instance's own domain and streaming address (GET /api/v2/instance, 4.0+),
        asked once; older servers keep the defaults, a failed request is tried again."""
        if self._instance_known:
            return
        try:
            async with http.get(self.base / "api/v2/instance", headers=self._headers()) as response:
                if response.status >= 500:
                    return
                data = await response.json(content_type=None) if response.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("%s: /api/v2/instance failed (%s); asking again next time", self.key, exc)
            return
        self._instance_known = True
        if not isinstance(data, dict):
            return
        if isinstance(data.get("domain"), str) and data["domain"]:
            self.domain = data["domain"].lower()
        urls = (data.get("configuration") or {}).get("urls") or {}
        streaming = urls.get("streaming") if isinstance(urls, dict) else None
        if isinstance(streaming, str):
            url = URL(streaming)
            if url.scheme in ("ws", "wss", "http", "https") and url.host:
                self._streaming_base = url.origin()

    # -- streaming ----------------------------------------------------------------------

    def streaming_url(self) -> URL:
        base = self._streaming_base or self.base
        scheme = {"http": "ws", "https": "wss"}.get(base.scheme, base.scheme)
        return base.with_scheme(scheme) / "api/v1/streaming"

    async def _stream(self, http: aiohttp.ClientSession, cursor: str | None, sink: Sink) -> None:
        await self._learn_instance(http)
        url = self.streaming_url()
        try:
            ws = await http.ws_connect(url, headers=self._headers(), heartbeat=self.keepalive * 2 / 3)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise UpstreamError(
                    f"{self.host} refused the streaming token ({exc.status}): check {TOKEN_ENV}",
                    status=exc.status,
                ) from exc
            raise UpstreamError(
                f"{self.host}: the stream was refused ({exc.status})", status=exc.status
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"{self.host}: cannot open the stream: {type(exc).__name__}: {exc}") from exc
        opened = time.monotonic()
        async with ws:
            stream = "hashtag:local" if self.local else "hashtag"
            await ws.send_json({"type": "subscribe", "stream": stream, "tag": self.hashtag})
            # Subscribed first, then the gap: what is posted meanwhile waits in the socket.
            self._stream_cursor = await self._catch_up(http, cursor, sink)
            log.info("%s: streaming from %s", self.key, url.host)
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_frame(message.data, sink)
                elif message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    break
                elif message.type is aiohttp.WSMsgType.ERROR:
                    raise UpstreamError(
                        f"{self.host}: the stream was silent for {self.keepalive:g} s or broke "
                        f"({type(message.data).__name__}: {message.data}); reconnecting"
                    )
        if ws.exception() is not None or ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE:
            raise UpstreamError(f"{self.host}: the stream broke ({ws.exception() or 'no close frame'})")
        if time.monotonic() - opened < HEALTHY_STREAM:
            raise UpstreamError(
                f"{self.host} closed the stream right after opening it (code {ws.close_code})"
            )
        log.info("%s: %s closed the stream (code %s)", self.key, self.host, ws.close_code)

    async def _catch_up(self, http: aiohttp.ClientSession, cursor: str | None, sink: Sink) -> str | None:
        while True:
            page = await self.poll(http, cursor)
            await sink(page)
            cursor = page.cursor or cursor
            if not page.more:
                return cursor
            if page.wait:
                # Streaming past an unfilled gap would move the cursor beyond it for good:
                # give up the connection, let the runner wait, and catch up on reconnect.
                raise UpstreamError(
                    f"{self.host} rate limit spent while catching up", status=429, upstream_wait=page.wait
                )

    async def _on_frame(self, data: str, sink: Sink) -> None:
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("%s: skipped a stream frame that is not JSON (%d bytes)", self.key, len(data))
            return
        if not isinstance(frame, dict):
            return
        if "error" in frame:
            status = frame.get("status")
            raise UpstreamError(
                f"{self.host} stream: {str(frame['error'])[:200]}",
                status=status if isinstance(status, int) else None,
            )
        event, payload = frame.get("event"), frame.get("payload")
        if not isinstance(payload, str):
            return
        page: Page | None = None
        if event == "update":
            page = self._update(payload)
        elif event == "status.update":
            page = self._edit(payload)
        elif event == "delete":
            page = self._delete(payload)
        if page is not None:
            await sink(page)

    def _stream_messages(self, payload: str, event: str) -> list[Message] | str:
        """The messages of an event's Status payload, or why it was rejected."""
        try:
            status = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return f"{event} from {self.host} is not JSON: {exc}"
        try:
            messages = self._messages(status, raw=payload)
        except PayloadError as exc:
            status_id = status.get("id") if isinstance(status, dict) else None
            return f"{event} of status {status_id or '?'} from {self.host}: {exc}"
        self._remember(messages)
        return messages

    def _update(self, payload: str) -> Page:
        messages = self._stream_messages(payload, "update")
        if isinstance(messages, str):
            return Page(rejected=[messages])
        for message in messages:
            if _STATUS_ID.fullmatch(message.network_id):
                self._stream_cursor = newest(self._stream_cursor, rewound(message.network_id, STREAM_REWIND))
        return Page(messages=messages, cursor=self._stream_cursor)

    def _edit(self, payload: str) -> Page:
        messages = self._stream_messages(payload, "status.update")
        if isinstance(messages, str):
            return Page(rejected=[messages])
        return Page(edits=[m for m in messages if m.repost_of is None])

    def _delete(self, payload: str) -> Page | None:
        uri = self._uris.pop(payload, None)
        if uri is None:
            # Seen before this process started, or never: Mastodon names it by its local id only.
            log.debug("%s: delete of status %s, which this source has not seen", self.key, payload)
            return None
        return Page(deletes=[uri])


# -- the event file ------------------------------------------------------------------------


def _flag(settings: Mapping[str, Any], name: str) -> bool:
    value = settings.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"mastodon source: {name} must be true or false")
    return value


def sources_for(event: EventFile, settings: Mapping[str, Any]) -> list[MastodonSource]:
    """One source per hashtag of the event on the instance of `settings`."""
    instance = settings.get("instance")
    if not isinstance(instance, str) or not instance:
        raise ConfigError('a mastodon source needs instance = "https://…"')
    if not event.hashtags:
        raise ConfigError("a mastodon source follows the event's hashtags: set event.hashtags")
    stream, local = _flag(settings, "stream"), _flag(settings, "local")
    variable = settings.get("token_env", TOKEN_ENV)
    if not isinstance(variable, str) or not variable:
        raise ConfigError("mastodon source: token_env names an environment variable")
    host = instance_url(instance).host
    token = event.secret(variable) if stream else (event.environ.get(variable) or None)
    if token is not None:
        # A token belongs to one instance: sending it to another would hand it to that
        # server's operators.
        for other in event.sources:
            if (
                other.get("network") == "mastodon"
                and other.get("token_env", TOKEN_ENV) == variable
                and isinstance(other.get("instance"), str)
                and instance_url(other["instance"]).host != host
            ):
                raise ConfigError(
                    f"${variable} would be sent to {host} and to {instance_url(other['instance']).host}; "
                    "a token belongs to one instance: give each instance its own token_env"
                )
    return [
        MastodonSource(
            instance, tag, interval=settings.get("interval", 20), token=token, stream=stream, local=local
        )
        for tag in event.hashtags
    ]


def build(event: EventFile, settings: Mapping[str, Any]) -> MastodonSource | list[MastodonSource]:
    sources = sources_for(event, settings)
    return sources[0] if len(sources) == 1 else sources


SOURCE_TYPE = register(
    SourceType(
        network="mastodon",
        summary="an instance's hashtag timelines (one source per event hashtag), "
        "polled without gaps (min_id paging), optionally streamed",
        settings={
            "instance": "the instance's address, e.g. https://mastodon.social (http:// for a local test server)",
            "stream": "true: also follow the streaming API for instant delivery (needs a user token); "
            "every reconnect is backfilled by polling",
            "local": "true: only posts by the instance's own users",
            "token_env": f"the environment variable holding this instance's user token (default {TOKEN_ENV}); "
            "sources on different instances need different ones",
        },
        env={
            TOKEN_ENV: "user token, needed for streaming (Mastodon 4.2+) and for instances that "
            "disabled public timelines",
        },
        build=build,
    )
)
