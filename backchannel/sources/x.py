"""X (Twitter), by polling API v2 recent search: a `PollingSource`.

Polling follows X's pagination guide (docs.x.com, "Recent search pagination"): each
poll asks for posts newer than `since_id`, the newest post id already stored. When
more posts arrived than fit one response (100), the response carries a `next_token`;
the older pages are fetched with the *same* `since_id` and that token, and only when
the last of them is stored does `since_id` move to the newest id of the round's first
response. The cursor is JSON holding all three, and it is stored with each page's
posts, so a crash in the middle of a round resumes the round where it stopped:
nothing is skipped and nothing is fetched twice.

    {"since_id": "1800…", "next_token": "b26v89c19zqg8o3f…", "newest_id": "1805…"}

Posts are normalised by `backchannel.core.twarc` (a response page is a twarc2 line).
A retweet is stored as a count on its original (`repost_of`), and the original, when
the response includes it, is stored too so the count has something to land on.

Failures become `UpstreamError`s for the runner: 429 carries the rate-limit reset,
401/403 stop the source, 5xx and network errors back off. A spent window (the
`x-rate-limit-remaining: 0` header on a good response) asks the runner to wait for
the reset instead of collecting a 429.

This module never logs or returns the bearer token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from backchannel.core.backoff import rate_limit, retry_after, wait_before_next_call
from backchannel.core.models import Message
from backchannel.core.record import parse_time
from backchannel.core.twarc import messages_from_twarc_page
from backchannel.errors import ConfigError, PayloadError
from backchannel.eventfile import EventFile, SourceType, register
from backchannel.sources.base import Page, UpstreamError

log = logging.getLogger(__name__)

DEFAULT_API = "https://api.x.com"
TOKEN_VARIABLE = "BACKCHANNEL_X_BEARER_TOKEN"
# What the normaliser reads: full text of long posts (note_tweet), entities, and the
# references that make replies and retweets; plus the authors and the retweeted posts.
TWEET_FIELDS = "created_at,author_id,entities,referenced_tweets,conversation_id,note_tweet"
EXPANSIONS = "author_id,referenced_tweets.id,referenced_tweets.id.author_id"
USER_FIELDS = "username,name"
MAX_RESULTS = 100  # the endpoint's maximum
# Recent search queries may be 512 characters long on the self-serve plans.
MAX_QUERY = 512
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where polling stands: `since_id` for the round, and while a round is being
    drained the next page's token and the id the round will advance to."""

    since_id: str | None = None
    next_token: str | None = None
    newest_id: str | None = None

    @classmethod
    def load(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        if text.isdigit():  # a bare id, as a person might set it by hand
            return cls(since_id=text)
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            log.warning("ignoring a stored X cursor that is not JSON: %r", text[:60])
            return cls()
        return cls(*(_id_or_none(data.get(k)) for k in ("since_id", "next_token", "newest_id")))

    def dump(self) -> str:
        return orjson.dumps(
            {"since_id": self.since_id, "next_token": self.next_token, "newest_id": self.newest_id}
        ).decode()


def _id_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _newer(a: str | None, b: str | None) -> str | None:
    """The newer of two post ids (ids grow with time; compared as numbers)."""
    if a is None or b is None:
        return a or b
    if a.isdigit() and b.isdigit():
        return a if int(a) >= int(b) else b
    return a


def build_query(hashtags: Iterable[str], *, exclude_retweets: bool = False) -> str:
    tags = [f"#{t.lstrip('#')}" for t in hashtags if t.lstrip("#")]
    if not tags:
        raise ConfigError("an X source needs at least one hashtag")
    query = " OR ".join(tags)
    if exclude_retweets:
        query = f"({query}) -is:retweet" if len(tags) > 1 else f"{query} -is:retweet"
    if len(query) > MAX_QUERY:
        raise ConfigError(f"the X search query is {len(query)} characters; X accepts {MAX_QUERY}")
    return query


class XSource:
    """Posts with the event's hashtags from X's recent search."""

    def __init__(
        self,
        hashtags: Iterable[str],
        token: str,
        *,
        key: str = "x",
        api: str = DEFAULT_API,
        exclude_retweets: bool = False,
        interval: float = 20.0,
        start_time: str | None = None,
    ) -> None:
        parts = urlsplit(api)
        if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
            # The bearer token goes with every request: never in clear text over a network.
            raise ConfigError(f"the X API address must be https:// (http:// only on loopback): {api!r}")
        if start_time is not None:
            try:
                start_time = parse_time(start_time).isoformat().replace("+00:00", "Z")
            except PayloadError as exc:
                raise ConfigError(f"x: start_time: {exc}") from exc
        self.key = key
        self.interval = interval
        self.query = build_query(hashtags, exclude_retweets=exclude_retweets)
        self.url = f"{api.rstrip('/')}/2/tweets/search/recent"
        self.start_time = start_time
        self._headers = {"Authorization": f"Bearer {token}"}

    def __repr__(self) -> str:  # never the token
        return f"XSource(key={self.key!r}, query={self.query!r})"

    def params(self, cursor: Cursor) -> dict[str, str]:
        params = {
            "query": self.query,
            "max_results": str(MAX_RESULTS),
            "tweet.fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user.fields": USER_FIELDS,
        }
        if cursor.since_id:
            params["since_id"] = cursor.since_id
        elif self.start_time:
            # The first round only: how far back to begin (recent search reaches 7 days).
            params["start_time"] = self.start_time
        if cursor.next_token:
            params["next_token"] = cursor.next_token
        return params

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page:
        state = Cursor.load(cursor)
        try:
            async with http.get(self.url, params=self.params(state), headers=self._headers) as response:
                status, headers = response.status, response.headers
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"X recent search: {type(exc).__name__}: {exc}") from exc
        now = datetime.now(UTC)
        if status == 400 and state.next_token:
            # A token X no longer accepts would stall the source for good. Start the round
            # again from since_id: its pages come back (stored once), nothing is skipped.
            return Page(
                cursor=Cursor(since_id=state.since_id).dump(),
                more=True,
                rejected=[f"X refused the page token ({_problem(body)}); restarting the round"],
            )
        if status != 200:
            raise _error(status, headers, body, now)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"X recent search answered with something that is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UpstreamError("X recent search answered with JSON that is not an object")
        page = self._page(data, state)
        page.wait = wait_before_next_call(headers, now)
        return page

    def _page(self, data: Mapping[str, Any], state: Cursor) -> Page:
        messages: list[Message] = []
        rejected: list[str] = []
        if "data" in data:
            try:
                messages, rejected = messages_from_twarc_page(data)
            except PayloadError as exc:
                rejected.append(f"X response page: {exc}")
        errors = data.get("errors")
        for error in errors if isinstance(errors, list) else []:
            rejected.append(f"X: {_describe(error)}")
        # Oldest first, so sequence numbers follow time within a page (X sends newest
        # first); a retweet's original is older than the retweet, so it comes first too.
        messages.sort(key=lambda m: int(m.network_id))
        meta = data.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        # The round moves since_id to the newest id of its *first* response.
        newest = state.newest_id if state.next_token else _id_or_none(meta.get("newest_id"))
        next_token = _id_or_none(meta.get("next_token"))
        if next_token:
            after = Cursor(since_id=state.since_id, next_token=next_token, newest_id=newest)
        else:
            after = Cursor(since_id=_newer(newest, state.since_id))
        return Page(messages=messages, cursor=after.dump(), more=bool(next_token), rejected=rejected)


def _describe(error: Any) -> str:
    if not isinstance(error, dict):
        return repr(error)[:200]
    parts = [str(error[k]) for k in ("title", "detail", "message") if isinstance(error.get(k), str | int)]
    if isinstance(error.get("resource_id"), str):
        parts.append(f"(post {error['resource_id']})")
    return " ".join(parts) or repr(error)[:200]


def _problem(body: bytes) -> str:
    """X's own words for a failed request: `title`/`detail`, or `errors[].message`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:120].decode("utf-8", "replace") or "no body"
    if isinstance(data, dict):
        if isinstance(data.get("errors"), list) and data["errors"]:
            return "; ".join(_describe(e) for e in data["errors"][:3])
        if "title" in data or "detail" in data:
            return _describe(data)
    return repr(data)[:120]


def _error(status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> UpstreamError:
    problem = _problem(body)
    if status == 429:
        # X says when the window resets (x-rate-limit-reset, Unix seconds): wait until then.
        wait = rate_limit(headers, now).reset_in
        if wait is None:
            wait = retry_after(headers, now)
        return UpstreamError(f"X rate limit reached (429: {problem})", status=429, upstream_wait=wait)
    if status == 401:
        return UpstreamError(
            f"X refused the bearer token (401: {problem}); check {TOKEN_VARIABLE}", status=401
        )
    if status == 403:
        return UpstreamError(
            f"X forbids recent search to this app (403: {problem}); check the app's access", status=403
        )
    return UpstreamError(
        f"X recent search failed ({status}: {problem})",
        status=status,
        upstream_wait=retry_after(headers, now),
    )


def build(event_file: EventFile, settings: Mapping[str, Any]) -> XSource:
    api = settings.get("api", DEFAULT_API)
    if not isinstance(api, str):
        raise ConfigError("x: api must be a URL")
    exclude = settings.get("exclude_retweets", False)
    if not isinstance(exclude, bool):
        raise ConfigError("x: exclude_retweets must be true or false")
    start_time = settings.get("start_time")
    if start_time is not None and not isinstance(start_time, str | datetime):
        raise ConfigError("x: start_time must be a time such as 2026-06-22T09:00:00Z")
    if isinstance(start_time, datetime):  # TOML has a native date-time type
        start_time = start_time.isoformat()
    return XSource(
        event_file.hashtags,
        event_file.secret(TOKEN_VARIABLE),
        key=f"x:{event_file.name}",
        api=api,
        exclude_retweets=exclude,
        interval=float(settings.get("interval", 20)),
        start_time=start_time,
    )


register(
    SourceType(
        network="x",
        summary="X posts with the event's hashtags, polled from API v2 recent search (paid per post read)",
        settings={
            "api": f"API base URL (default {DEFAULT_API}; http:// only on loopback, for tests)",
            "exclude_retweets": "leave retweets out of the query (-is:retweet); they are not counted then",
            "start_time": "how far back the first poll reaches (ISO 8601; default: X's 7 days)",
        },
        env={TOKEN_VARIABLE: "an X app's bearer token (app-only auth) with access to recent search"},
        build=build,
    )
)
