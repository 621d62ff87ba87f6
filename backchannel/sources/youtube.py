"""YouTube live chat, polled with `liveChatMessages.list`.

The first request returns the chat's history (oldest first); each response names the
next page (`nextPageToken`, the cursor) and how long to wait before asking for it
(`pollingIntervalMillis`, returned as `Page.wait`: we never ask sooner). Every list
call costs 5 quota units of a default 10,000 a day, and a `videos.list` to find the
chat of a `video_id` costs 1: the source counts them per quota day (Pacific time) in
`quota_used`, and carries the count in its cursor so a restart keeps counting.

YouTube keeps no chat once the event is over and a page token does not live forever:
when a saved token is refused after the collector was down, the chat is read again
from its current history and the span that history no longer covers is reported as
a gap (`ChatPage.gap`). A chat that has ended (`offlineAt`, `chatEndedEvent`, 403
`liveChatEnded`, 404 `liveChatNotFound`) stops the source with `ChatEnded`.

The API key travels in the `X-Goog-Api-Key` header (a Google system parameter, the
same as `key=`), never in a URL that could end up in a log or an error message.
Normalising the payload is `backchannel.core.youtube`'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from backchannel.core.backoff import retry_after
from backchannel.core.record import format_time, parse_time
from backchannel.core.youtube import (
    LIST_COST,
    VIDEOS_COST,
    error_message,
    error_reasons,
    quota_day,
    read_list_response,
    read_video,
    seconds_until_quota_reset,
)
from backchannel.errors import ConfigError, PayloadError
from backchannel.eventfile import EventFile, SourceType, register
from backchannel.sources.base import Page, SourceFinished, UpstreamError

log = logging.getLogger(__name__)

API = "https://www.googleapis.com"
API_KEY_ENV = "BACKCHANNEL_YOUTUBE_API_KEY"
PARTS = "id,snippet,authorDetails"
MAX_RESULTS = 2000  # the largest page the API allows: fewer calls, less quota
# Seconds between scheduled polls. YouTube's pollingIntervalMillis is often shorter, but
# at 5 units a call a 10 s rhythm spends 1,800 units an hour: a 10,000-unit day lasts
# five and a half hours of event. The runner waits for whichever is longer.
DEFAULT_INTERVAL = 10.0

_QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
_TOO_FAST_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_BAD_KEY_REASONS = {"keyInvalid", "keyExpired", "API_KEY_INVALID", "API_KEY_EXPIRED"}
_BAD_TOKEN_REASONS = {"invalidPageToken", "pageTokenInvalid"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ChatEnded(SourceFinished):
    """The live chat is over: nothing more will come, and retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


# A page that may also report chat that was missed for good (`Page.gap`).
ChatPage = Page


@dataclass(frozen=True, slots=True)
class ChatCursor:
    """The stored position: the next page token, when it was received, and the quota
    spent on that quota day."""

    page_token: str | None = None
    polled_at: datetime | None = None
    quota_day: str | None = None
    quota_used: int = 0

    def dumps(self) -> str:
        return orjson.dumps(
            {
                "page_token": self.page_token,
                "polled_at": format_time(self.polled_at) if self.polled_at else None,
                "quota_day": self.quota_day,
                "quota_used": self.quota_used,
            }
        ).decode()

    @classmethod
    def loads(cls, text: str | None) -> ChatCursor:
        if not text:
            return cls()
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return cls(page_token=text)  # a bare page token, as set by hand
        if not isinstance(data, dict):
            return cls()
        try:
            polled_at = parse_time(data["polled_at"]) if data.get("polled_at") else None
        except PayloadError:
            polled_at = None
        token, day, used = data.get("page_token"), data.get("quota_day"), data.get("quota_used")
        return cls(
            page_token=token if isinstance(token, str) and token else None,
            polled_at=polled_at,
            quota_day=day if isinstance(day, str) else None,
            quota_used=used if isinstance(used, int) and used >= 0 else 0,
        )


def _check_api(api: str) -> str:
    parts = urlsplit(api)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return api.rstrip("/")
    # The API key goes with every request: never in clear text over a network.
    raise ConfigError(f"the YouTube API address must be https:// (http:// only on loopback): {api!r}")


class YouTubeChat:
    """One live chat, named by `live_chat_id` or found from `video_id` (once)."""

    def __init__(
        self,
        *,
        api_key: str,
        live_chat_id: str | None = None,
        video_id: str | None = None,
        api: str = API,
        interval: float = DEFAULT_INTERVAL,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if bool(live_chat_id) == bool(video_id):
            raise ConfigError("a YouTube source needs either live_chat_id or video_id")
        if not api_key:
            raise ConfigError(f"set the environment variable {API_KEY_ENV}")
        self.api = _check_api(api)
        self.live_chat_id = live_chat_id or None
        self.video_id = video_id or None
        self.key = f"youtube:{live_chat_id}" if live_chat_id else f"youtube:video:{video_id}"
        self.interval = interval
        self.now = now
        self.quota_used = 0
        self.started_at: datetime | None = None  # the stream's actual start, when known
        self.ended: str | None = None  # why the chat is over, once it is
        self._api_key = api_key
        self._quota_day: str | None = None
        self._last_wait: float | None = None

    @property
    def detail(self) -> str:
        """For `backchannel status`: the quota spent this (Pacific) day."""
        return f"quota {self.quota_used:,} units today"

    # -- quota -----------------------------------------------------------------------

    def _roll_quota(self, now: datetime, saved: ChatCursor) -> None:
        day = quota_day(now).isoformat()
        if self._quota_day != day:
            self._quota_day, self.quota_used = day, 0
        if saved.quota_day == day:
            # After a restart the stored count is the best we know of today's spending.
            self.quota_used = max(self.quota_used, saved.quota_used)

    def _spend(self, units: int) -> None:
        # Counted before the request: a refused request is billed too.
        self.quota_used += units

    # -- requests --------------------------------------------------------------------

    async def _get(
        self, http: aiohttp.ClientSession, path: str, params: Mapping[str, str]
    ) -> tuple[int, Any, Mapping[str, str]]:
        headers = {"X-Goog-Api-Key": self._api_key, "Accept": "application/json"}
        async with http.get(f"{self.api}{path}", params=params, headers=headers) as resp:
            data = await resp.read()
            try:
                body = orjson.loads(data) if data else None
            except orjson.JSONDecodeError:
                body = None
            if resp.status == 200 and not isinstance(body, dict):
                raise UpstreamError(f"YouTube sent a {resp.content_type} body, not JSON", status=502)
            return resp.status, body, dict(resp.headers)

    async def _resolve(self, http: aiohttp.ClientSession) -> str:
        """The video's active live chat (a `videos.list` call, 1 unit)."""
        assert self.video_id is not None
        self._spend(VIDEOS_COST)
        status, body, headers = await self._get(
            http, "/youtube/v3/videos", {"part": "liveStreamingDetails", "id": self.video_id}
        )
        if status != 200:
            raise self._error("videos.list", status, body, headers)
        video = read_video(body)
        if not video.found:
            # Maybe private or not yet published: not worth hammering, worth retrying.
            raise UpstreamError(f"YouTube has no public video {self.video_id}", status=404)
        if video.live_chat_id is None:
            if video.ended_at is not None:
                self.ended = f"the stream of video {self.video_id} ended at {format_time(video.ended_at)}"
                raise ChatEnded(self.ended)
            raise UpstreamError(
                f"video {self.video_id} has no live chat now (not live yet, or chat is off)", status=404
            )
        self.live_chat_id, self.started_at = video.live_chat_id, video.started_at
        log.info("%s: video %s has live chat %s", self.key, self.video_id, self.live_chat_id)
        return video.live_chat_id

    async def _list(
        self, http: aiohttp.ClientSession, chat: str, token: str | None
    ) -> tuple[int, Any, Mapping[str, str]]:
        params = {"liveChatId": chat, "part": PARTS, "maxResults": str(MAX_RESULTS)}
        if token:
            params["pageToken"] = token
        self._spend(LIST_COST)
        return await self._get(http, "/youtube/v3/liveChat/messages", params)

    def _error(self, call: str, status: int, body: Any, headers: Mapping[str, str]) -> UpstreamError:
        reasons = set(error_reasons(body))
        said = error_message(body) or f"HTTP {status}"
        if reasons & _QUOTA_REASONS:
            # The project's daily quota is spent (other apps on the same key count too):
            # nothing works again before midnight Pacific time, so sleep until then.
            return UpstreamError(
                f"YouTube quota exhausted ({self.quota_used:,} units counted here today); "
                "it resets at midnight Pacific time",
                status=429,
                upstream_wait=seconds_until_quota_reset(self.now()),
            )
        if reasons & _TOO_FAST_REASONS or status == 429:
            # Asked sooner than the chat refreshes: wait at least the last polling interval.
            wait = retry_after(headers, self.now()) or self._last_wait
            return UpstreamError(
                f"YouTube {call}: requests too frequent ({said})", status=429, upstream_wait=wait
            )
        if "liveChatEnded" in reasons or (status == 404 and "liveChatNotFound" in reasons):
            self.ended = f"the live chat has ended ({said})"
            return ChatEnded(self.ended)
        if reasons & _BAD_KEY_REASONS:
            return UpstreamError(f"YouTube refused the API key in {API_KEY_ENV} ({said})", status=401)
        detail = f" [{', '.join(sorted(reasons))}]" if reasons else ""
        return UpstreamError(f"YouTube {call}: {said}{detail}", status=status)

    # -- the poll --------------------------------------------------------------------

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> ChatPage:
        if self.ended is not None:
            raise ChatEnded(self.ended)
        saved = ChatCursor.loads(cursor)
        self._roll_quota(self.now(), saved)
        chat = self.live_chat_id or await self._resolve(http)
        token = saved.page_token
        status, body, headers = await self._list(http, chat, token)
        lost_since: datetime | None = None
        if token and status in (400, 404) and set(error_reasons(body)) & _BAD_TOKEN_REASONS:
            # The saved token expired while we were away: start again from the history
            # YouTube still has, and find out below how much of the absence it covers.
            log.warning("%s: YouTube refused the saved page token; reading the chat afresh", self.key)
            lost_since = saved.polled_at
            status, body, headers = await self._list(http, chat, None)
        if status != 200:
            raise self._error("liveChatMessages.list", status, body, headers)
        now = self.now()
        read = read_list_response(body, video_id=self.video_id, started_at=self.started_at)
        self._last_wait = read.polling_interval
        page = ChatPage(
            messages=read.messages,
            deletes=read.deletes,
            rejected=read.rejected,
            cursor=ChatCursor(
                page_token=read.next_page_token or token,
                polled_at=now,
                quota_day=self._quota_day,
                quota_used=self.quota_used,
            ).dumps(),
            wait=read.polling_interval,
        )
        if lost_since is not None:
            page.gap = self._gap(lost_since, read.messages, now)
        if read.offline_at is not None or read.chat_ended:
            when = format_time(read.offline_at) if read.offline_at else "now"
            self.ended = f"the live stream went offline ({when}); its chat has ended"
            # Store this last page, then come straight back to stop (`ChatEnded`).
            page.wait, page.more = None, True
        return page

    def _gap(
        self, since: datetime, messages: list[Any], now: datetime
    ) -> tuple[datetime, datetime, str] | None:
        """The part of the absence the fresh history does not reach back to, if any."""
        earliest = min((m.created_at for m in messages), default=None)
        if earliest is not None and earliest <= since:
            return None  # the history still covers everything since the last poll
        return (
            since,
            earliest or now,
            "YouTube no longer accepted the saved page token and its chat history does not reach "
            "back this far: messages of this span are lost",
        )


def _build(event_file: EventFile, settings: Mapping[str, Any]) -> YouTubeChat:
    ids = {name: settings.get(name) for name in ("live_chat_id", "video_id")}
    for name, value in ids.items():
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"youtube: {name} must be a non-empty string")
    api = settings.get("api", API)
    if not isinstance(api, str):
        raise ConfigError("youtube: api must be a URL")
    return YouTubeChat(
        api_key=event_file.secret(API_KEY_ENV),
        live_chat_id=ids["live_chat_id"],
        video_id=ids["video_id"],
        api=api,
        interval=float(settings.get("interval", DEFAULT_INTERVAL)),
    )


register(
    SourceType(
        network="youtube",
        summary="a YouTube live chat, polled (5 quota units a call of a default 10,000 a day)",
        settings={
            "live_chat_id": "the chat's id (liveBroadcast snippet.liveChatId); or give video_id",
            "video_id": "the live video's id (watch?v=…); its active chat is looked up once",
            "api": f"API address (default {API}; http:// only on loopback, for tests)",
        },
        env={API_KEY_ENV: "a YouTube Data API v3 key (Google Cloud console)"},
        build=_build,
    )
)
