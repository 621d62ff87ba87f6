"""A fake Mastodon instance for the tests, speaking the API as docs.joinmastodon.org
documents it.

Served: `GET /api/v1/timelines/tag/:hashtag` (`max_id`, `since_id`, `min_id`, `limit`
20 by default and 40 at most, `local`, `remote`; newest first; `Link` with
rel="next"/"prev"; `X-RateLimit-*` on every answer, the reset as an ISO 8601 time),
`GET /api/v2/instance` (its `configuration.urls.streaming`) and the streaming
websocket `/api/v1/streaming`, which wants a user token (since Mastodon 4.2) and
takes `{"type": "subscribe", "stream": "hashtag", "tag": …}`.

The test drives it: `post`, `receive` (a post from another server, federated here),
`edit`, `delete` (each pushed to the subscribed streams as `update`, `status.update`,
`delete`), `fail_next`, `truncate_next`, `limit_rate`, `hold_after`/`release`,
`hold_streams`/`release_streams`, `drop_streams` and `silence_streams`.

Status ids are snowflakes like Mastodon's: the millisecond the server *received*
the post, shifted left 16 bits, so a late-federated post gets a high id and an old
`created_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import time
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from fakes import serve

DEFAULT_LIMIT = 20  # "limit: Max number of results to return. Defaults to 20 statuses. Max 40 statuses."
MAX_LIMIT = 40
UNAUTHENTICATED = "This API requires an authenticated user"


@dataclass
class Post:
    """One status as this server holds it; rendered to a Status entity on demand."""

    id: int
    uri: str
    url: str
    user: str
    origin: str  # the author's server: this server's domain for local posts
    text: str
    tags: tuple[str, ...]
    mentions: tuple[str, ...]  # "user@domain"
    created_at: datetime
    edited_at: datetime | None = None
    spoiler_text: str = ""
    broken: dict[str, Any] = field(default_factory=dict)  # entity fields replaced, to make it malformed


@dataclass
class Failure:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Subscriber:
    ws: web.WebSocketResponse
    streams: set[tuple[str, str]] = field(default_factory=set)  # (stream, tag)
    silent: bool = False  # neither pushes events nor answers pings


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _limit(value: str | None) -> int:
    # Mastodon's limit_param: the default when absent, else |to_i| capped at twice the default.
    if value is None:
        return DEFAULT_LIMIT
    number = _int(value)
    return min(abs(number or 0), MAX_LIMIT)


class FakeMastodon:
    def __init__(
        self,
        domain: str = "mastodon.test",
        *,
        tokens: tuple[str, ...] = ("user-token",),
        public: bool = True,
        rate_limit: int = 300,
        rate_period: float = 300.0,
    ) -> None:
        self.domain = domain
        self.tokens = set(tokens)
        self.public = public  # False: the instance disabled public timelines (401 without a token)
        self.posts: dict[int, Post] = {}
        self.known_tags: set[str] = set()
        self.requests: list[dict[str, str]] = []  # each timeline request's query, in arrival order
        self.authorizations: list[str | None] = []  # each timeline request's Authorization header
        self.served_pages = 0  # timeline answers with at least one status
        self.handshakes = 0  # streaming connections that passed authentication
        self.subscribers: list[Subscriber] = []
        self.base_url = ""
        self.rate_limit, self.rate_period, self.retry_after = rate_limit, rate_period, False
        self._window_start: float | None = None
        self._window_count = 0
        self._failures: deque[Failure] = deque()
        self._truncations: deque[bool] = deque()  # True: cut the connection mid-body
        self._hold_from: int | None = None
        self._gate = asyncio.Event()
        self._gate.set()
        self._stream_gate = asyncio.Event()
        self._stream_gate.set()
        self._last_id = 0
        self._accounts: dict[tuple[str, str], int] = {}
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/api/v1/timelines/tag/{hashtag}", self._timeline)
        self.app.router.add_get("/api/v2/instance", self._instance)
        self.app.router.add_get("/api/v1/streaming/health", self._health)
        self.app.router.add_get("/api/v1/streaming", self._streaming)
        self.app.on_shutdown.append(self._close_streams)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> str:
        self._runner, self.base_url = await serve(self.app)
        return self.base_url

    async def close(self) -> None:
        self._gate.set()
        self._stream_gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeMastodon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- content the test controls ------------------------------------------------------

    def _next_id(self) -> int:
        # Mastodon's timestamp_id: milliseconds in the high bits, a sequence in the low 16.
        # The low bits differ between servers, as Mastodon's (hashed) sequence does.
        low = zlib.crc32(self.domain.encode()) & 0xFF00
        self._last_id = max(int(time.time() * 1000) << 16 | low, self._last_id + 1)
        return self._last_id

    async def post(
        self,
        text: str = "hello",
        *,
        tags: tuple[str, ...] = ("slz",),
        user: str = "ann",
        origin: str | None = None,
        mentions: tuple[str, ...] = (),
        created_at: datetime | None = None,
        id: int | None = None,
    ) -> dict[str, Any]:
        """A new status by `user` of `origin` (this server by default); returns its entity."""
        status_id = id if id is not None else self._next_id()
        self._last_id = max(self._last_id, status_id)
        origin = origin or self.domain
        post = Post(
            id=status_id,
            uri=f"https://{origin}/users/{user}/statuses/{status_id}",
            url=f"https://{origin}/@{user}/{status_id}",
            user=user,
            origin=origin,
            text=text,
            tags=tuple(t.lower() for t in tags),
            mentions=mentions,
            created_at=created_at or datetime.now(UTC),
        )
        return await self._add(post)

    async def post_many(self, count: int, text: str = "toot", **kwargs: Any) -> list[dict[str, Any]]:
        return [await self.post(f"{text} {i}", **kwargs) for i in range(count)]

    async def receive(self, other: FakeMastodon, status_id: str | int) -> dict[str, Any]:
        """A status of `other` arriving here by federation: the same `uri` and `url`, an id
        of this server's (allocated now), the author's `acct` qualified by their domain."""
        post = other.posts[int(status_id)]
        return await self._add(replace(post, id=self._next_id()))

    async def _add(self, post: Post) -> dict[str, Any]:
        self.posts[post.id] = post
        self.known_tags.update(post.tags)
        entity = self.entity(post)
        await self._push("update", post, json.dumps(entity))
        return entity

    async def edit(self, status_id: str | int, text: str) -> dict[str, Any]:
        post = self.posts[int(status_id)]
        post.text, post.edited_at = text, datetime.now(UTC)
        entity = self.entity(post)
        await self._push("status.update", post, json.dumps(entity))
        return entity

    async def delete(self, status_id: str | int) -> None:
        post = self.posts.pop(int(status_id))
        await self._push("delete", post, str(post.id))

    def corrupt(self, status_id: str | int, **fields: Any) -> None:
        """Serve the status with these entity fields replaced (e.g. `account=None`)."""
        self.posts[int(status_id)].broken.update(fields)

    def entity(self, post: Post) -> dict[str, Any]:
        """The Status entity (docs.joinmastodon.org/entities/Status) for `post`."""
        local = post.origin == self.domain
        account_id = self._accounts.setdefault(
            (post.user, post.origin), 109_000_000_000 + len(self._accounts)
        )
        mentions = []
        links = []
        for acct in post.mentions:
            username, _, domain = acct.partition("@")
            domain = domain or self.domain
            mention_url = f"https://{domain}/@{username}"
            mentions.append(
                {
                    "id": str(
                        self._accounts.setdefault((username, domain), 109_000_000_000 + len(self._accounts))
                    ),
                    "username": username,
                    "url": mention_url,
                    "acct": username if domain == self.domain else f"{username}@{domain}",
                }
            )
            links.append(
                f'<span class="h-card" translate="no"><a href="{mention_url}" class="u-url mention">'
                f"@<span>{html.escape(username)}</span></a></span>"
            )
        tag_links = [
            f'<a href="https://{self.domain}/tags/{t}" class="mention hashtag" rel="tag">#<span>{t}</span></a>'
            for t in post.tags
        ]
        content = "<p>" + " ".join([*links, html.escape(post.text), *tag_links]) + "</p>"
        entity = {
            "id": str(post.id),
            "created_at": _iso(post.created_at),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": bool(post.spoiler_text),
            "spoiler_text": post.spoiler_text,
            "visibility": "public",
            "language": "en",
            "uri": post.uri,
            "url": post.url,
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "quotes_count": 0,
            "edited_at": _iso(post.edited_at) if post.edited_at else None,
            "content": content,
            "reblog": None,
            "application": {"name": "Web", "website": None} if local else None,
            "account": {
                "id": str(account_id),
                "username": post.user,
                "acct": post.user if local else f"{post.user}@{post.origin}",
                "display_name": post.user.title(),
                "locked": False,
                "bot": False,
                "discoverable": True,
                "group": False,
                "created_at": "2022-11-03T00:00:00.000Z",
                "note": "<p>Attending the webinar.</p>",
                "url": f"https://{post.origin}/@{post.user}",
                "uri": f"https://{post.origin}/users/{post.user}",
                "avatar": f"https://{self.domain}/avatars/original/missing.png",
                "avatar_static": f"https://{self.domain}/avatars/original/missing.png",
                "header": f"https://{self.domain}/headers/original/missing.png",
                "header_static": f"https://{self.domain}/headers/original/missing.png",
                "followers_count": 12,
                "following_count": 34,
                "statuses_count": 56,
                "last_status_at": post.created_at.date().isoformat(),
                "emojis": [],
                "fields": [],
            },
            "media_attachments": [],
            "mentions": mentions,
            "tags": [{"name": t, "url": f"https://{self.domain}/tags/{t}"} for t in post.tags],
            "emojis": [],
            "card": None,
            "poll": None,
        }
        return {**entity, **post.broken}

    # -- failures the test scripts ----------------------------------------------------

    def fail_next(
        self, count: int = 1, status: int = 500, *, retry_after: float | None = None, body: str | None = None
    ) -> None:
        """Answer the next `count` timeline requests with `status` (and Retry-After)."""
        headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
        error = body or json.dumps(
            {"error": "Too many requests" if status == 429 else "Internal Server Error"}
        )
        self._failures.extend(Failure(status, headers, error) for _ in range(count))

    def truncate_next(self, count: int = 1, *, cut_connection: bool = False) -> None:
        """Send only the first half of the next `count` JSON bodies: as a complete (short)
        response, or with the full Content-Length and the connection closed mid-body."""
        self._truncations.extend([cut_connection] * count)

    def limit_rate(self, limit: int, period: float = 300.0, *, retry_after: bool = False) -> None:
        """At most `limit` requests per window of `period` seconds from the next request;
        past it, 429 (Mastodon sends the X-RateLimit-* headers; `retry_after` adds that too)."""
        self.rate_limit, self.rate_period, self.retry_after = limit, period, retry_after
        self._window_start, self._window_count = None, 0

    def hold_after(self, count: int) -> None:
        """Let `count` more timeline requests through, then hold the rest until `release`."""
        self._hold_from = len(self.requests) + count
        self._gate.clear()

    def release(self) -> None:
        self._hold_from = None
        self._gate.set()

    @property
    def held(self) -> int:
        """Timeline requests waiting at the hold."""
        if self._hold_from is None:
            return 0
        return max(0, len(self.requests) - self._hold_from)

    def hold_streams(self) -> None:
        """Keep new streaming connections waiting (after authentication) until released."""
        self._stream_gate.clear()

    def release_streams(self) -> None:
        self._stream_gate.set()

    async def drop_streams(self) -> None:
        """Close every streaming connection, as a restarting streaming server does."""
        for subscriber in list(self.subscribers):
            await subscriber.ws.close(code=WSCloseCode.GOING_AWAY, message=b"restarting")

    def silence_streams(self) -> None:
        """The open streaming connections stop pushing events and answering pings, as a
        half-open connection does; new connections work."""
        for subscriber in self.subscribers:
            subscriber.silent = True

    def subscribed(self, tag: str) -> int:
        return sum(1 for s in self.subscribers if any(t == tag for _, t in s.streams))

    # -- the API ------------------------------------------------------------------------

    def _rate_headers(self, now: float) -> tuple[dict[str, str], bool]:
        if self._window_start is None or now >= self._window_start + self.rate_period:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        reset = datetime.fromtimestamp(self._window_start + self.rate_period, UTC)
        remaining = max(0, self.rate_limit - self._window_count)
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        exceeded = self._window_count > self.rate_limit
        if exceeded and self.retry_after:
            headers["Retry-After"] = str(math.ceil(self._window_start + self.rate_period - now))
        return headers, exceeded

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else request.query.get("access_token")
        return token in self.tokens

    async def _timeline(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.query))
        self.authorizations.append(request.headers.get("Authorization"))
        if self._hold_from is not None and len(self.requests) > self._hold_from:
            await self._gate.wait()
        headers, exceeded = self._rate_headers(time.time())
        if exceeded:
            return web.json_response({"error": "Too many requests"}, status=429, headers=headers)
        if self._failures:
            failure = self._failures.popleft()
            return web.Response(
                status=failure.status,
                text=failure.body,
                content_type="application/json",
                headers={**headers, **failure.headers},
            )
        if not self.public and not self._authorised(request):
            return web.json_response({"error": UNAUTHENTICATED}, status=401, headers=headers)
        tag = request.match_info["hashtag"].lower()
        if tag not in self.known_tags:
            return web.json_response({"error": "Record not found"}, status=404, headers=headers)
        page = self._page(tag, request.query)
        body = json.dumps([self.entity(p) for p in page])
        headers.update(self._link(request, page, _limit(request.query.get("limit"))))
        if page:
            self.served_pages += 1
        if self._truncations:
            return await self._truncated(request, body, headers, cut=self._truncations.popleft())
        return web.Response(text=body, content_type="application/json", headers=headers)

    def _page(self, tag: str, query: Any) -> list[Post]:
        """Mastodon's paginate_by_id: `min_id` pages forward from a cursor (the `limit`
        statuses just above it); otherwise the newest `limit` below `max_id` and above
        `since_id`. Either way newest first."""
        limit = _limit(query.get("limit"))
        max_id, since_id, min_id = (_int(query.get(k)) for k in ("max_id", "since_id", "min_id"))
        posts = [p for p in self.posts.values() if tag in p.tags]
        if query.get("local") in ("true", "1"):
            posts = [p for p in posts if p.origin == self.domain]
        if query.get("remote") in ("true", "1"):
            posts = [p for p in posts if p.origin != self.domain]
        if max_id is not None:
            posts = [p for p in posts if p.id < max_id]
        if min_id is not None:
            ascending = sorted((p for p in posts if p.id > min_id), key=lambda p: p.id)
            return list(reversed(ascending[:limit]))
        if since_id is not None:
            posts = [p for p in posts if p.id > since_id]
        return sorted(posts, key=lambda p: p.id, reverse=True)[:limit]

    def _link(self, request: web.Request, page: list[Post], limit: int) -> dict[str, str]:
        # Next (older) only when the page is full; prev (newer) whenever it is not empty.
        kept = {k: v for k, v in request.query.items() if k in ("limit", "local", "remote", "only_media")}
        url = request.url.with_query(None)
        links = []
        if page and len(page) == limit:
            links.append(f'<{url.with_query({**kept, "max_id": str(page[-1].id)})}>; rel="next"')
        if page:
            links.append(f'<{url.with_query({**kept, "min_id": str(page[0].id)})}>; rel="prev"')
        return {"Link": ", ".join(links)} if links else {}

    async def _truncated(
        self, request: web.Request, body: str, headers: dict[str, str], *, cut: bool
    ) -> web.StreamResponse:
        half = body.encode()[: len(body) // 2]
        if not cut:
            return web.Response(body=half, content_type="application/json", headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.content_length = len(body.encode())
        await response.prepare(request)
        await response.write(half)
        assert request.transport is not None
        request.transport.close()
        return response

    async def _instance(self, request: web.Request) -> web.Response:
        streaming = "ws" + self.base_url.removeprefix("http")
        return web.json_response(
            {
                "domain": self.domain,
                "title": "Fake Mastodon",
                "version": "4.5.0",
                "source_url": "https://github.com/mastodon/mastodon",
                "configuration": {"urls": {"streaming": streaming}, "statuses": {"max_characters": 500}},
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    # -- streaming ----------------------------------------------------------------------

    async def _streaming(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"error": "Error while trying to authenticate"}, status=401)
        self.handshakes += 1
        await self._stream_gate.wait()
        # autoping off: this server answers pings itself, so that it can stop (silence_streams).
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        subscriber = Subscriber(ws)
        if request.query.get("stream") in ("hashtag", "hashtag:local") and request.query.get("tag"):
            subscriber.streams.add((request.query["stream"], request.query["tag"].lower()))
        self.subscribers.append(subscriber)
        try:
            async for message in ws:
                if message.type is WSMsgType.PING:
                    if not subscriber.silent:
                        await ws.pong(message.data)
                elif message.type is WSMsgType.TEXT:
                    await self._command(subscriber, message.data)
        finally:
            self.subscribers.remove(subscriber)
        return ws

    async def _command(self, subscriber: Subscriber, data: str) -> None:
        try:
            command = json.loads(data)
        except ValueError:
            await subscriber.ws.send_json({"error": "Invalid JSON", "status": 400})
            return
        stream, tag = command.get("stream"), command.get("tag")
        if stream not in ("hashtag", "hashtag:local"):
            await subscriber.ws.send_json({"error": "Unknown stream type", "status": 400})
        elif not tag:
            await subscriber.ws.send_json({"error": "Missing tag name parameter", "status": 400})
        elif command.get("type") == "subscribe":
            subscriber.streams.add((stream, tag.lower()))
        elif command.get("type") == "unsubscribe":
            subscriber.streams.discard((stream, tag.lower()))

    async def _push(self, event: str, post: Post, payload: str) -> None:
        for subscriber in [s for s in self.subscribers if not s.silent]:
            for stream, tag in sorted(subscriber.streams):
                if tag in post.tags and (stream == "hashtag" or post.origin == self.domain):
                    frame = {"stream": [stream, tag], "event": event, "payload": payload}
                    if not subscriber.ws.closed:
                        # A subscriber gone mid-push (killed) misses it, as on a real server.
                        with contextlib.suppress(ConnectionResetError):
                            await subscriber.ws.send_str(json.dumps(frame))

    async def _close_streams(self, app: web.Application) -> None:
        for subscriber in list(self.subscribers):
            await subscriber.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
