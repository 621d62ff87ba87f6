"""A fake YouTube Data API for live chat: `liveChat/messages` and `videos`, on a free port.

It answers as developers.google.com/youtube/v3/live/docs/liveChatMessages/list
documents: the first request (no pageToken) returns the recent history oldest first,
each response a `nextPageToken` and `pollingIntervalMillis`, `offlineAt` once the
stream is offline; errors in the Data API's shape
`{"error": {"code", "message", "errors": [{"message", "domain", "reason"}]}}`
(liveChatEnded 403, liveChatNotFound 404, quotaExceeded 403, rateLimitExceeded 403,
an invalid key 400). It counts quota as YouTube bills it (5 units a list call, 1 a
videos.list, refused calls too) and records every request, so tests can check what
was asked and when. What YouTube answers to an expired page token is not documented:
this fake answers 400 `invalidPageToken`, the Data API's reason for bad page tokens.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from fakes import serve

T0 = datetime(2026, 6, 22, 17, 0, tzinfo=UTC)


def error_body(code: int, reason: str, message: str, domain: str = "youtube.liveChat") -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
        }
    }


QUOTA_EXCEEDED = error_body(
    403,
    "quotaExceeded",
    'The request cannot be completed because you have exceeded your <a href="/youtube/v3/getting-started#quota">quota</a>.',
    domain="youtube.quota",
)
CHAT_ENDED = error_body(403, "liveChatEnded", "The specified live chat is no longer live.")
CHAT_NOT_FOUND = error_body(
    404, "liveChatNotFound", "The live chat that you are trying to retrieve cannot be found."
)
TOO_FAST = error_body(403, "rateLimitExceeded", "The request was sent too soon after the previous one.")
BAD_TOKEN = error_body(
    400, "invalidPageToken", "The request specifies an invalid page token.", domain="youtube.parameter"
)
BAD_KEY = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "errors": [
            {
                "message": "API key not valid. Please pass a valid API key.",
                "domain": "global",
                "reason": "badRequest",
            }
        ],
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
    }
}


@dataclass
class Seen:
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


@dataclass
class FakeYouTube:
    api_key: str = "test-key"
    live_chat_id: str = "Cg0KC2xpdmUtY2hhdC0x"
    polling_ms: int = 5000
    history_limit: int = 200  # how much history a first request gets
    quota_limit: int = 10_000
    items: list[dict[str, Any]] = field(default_factory=list)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> liveStreamingDetails
    requests: list[Seen] = field(default_factory=list)
    quota_used: int = 0
    offline_at: str | None = None
    ended: bool = False  # 403 liveChatEnded
    gone: bool = False  # 404 liveChatNotFound
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # served next, in order
    base: str = ""  # http://127.0.0.1:PORT once started
    _tokens: dict[str, int] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # -- the chat -------------------------------------------------------------------------

    def say(
        self,
        text: str,
        *,
        channel: str = "UCaaaaaaaaaaaaaaaaaaaaaa",
        name: str = "Ada",
        at: datetime | None = None,
        kind: str = "textMessageEvent",
        **snippet: Any,
    ) -> str:
        number = next(self._ids)
        item_id = f"LCC.msg-{number:04d}"
        published = at or T0 + timedelta(seconds=number)
        body: dict[str, Any] = {
            "type": kind,
            "liveChatId": self.live_chat_id,
            "authorChannelId": channel,
            "publishedAt": published.isoformat().replace("+00:00", "Z"),
            "hasDisplayContent": True,
            "displayMessage": text,
        }
        if kind == "textMessageEvent":
            body["textMessageDetails"] = {"messageText": text}
        body.update(snippet)
        self.items.append(
            {
                "kind": "youtube#liveChatMessage",
                "etag": f"etag-{number}",
                "id": item_id,
                "snippet": body,
                "authorDetails": {
                    "channelId": channel,
                    "channelUrl": f"http://www.youtube.com/channel/{channel}",
                    "displayName": name,
                    "profileImageUrl": f"https://yt3.ggpht.com/{channel}=s88",
                    "isVerified": False,
                    "isChatOwner": False,
                    "isChatSponsor": False,
                    "isChatModerator": False,
                },
            }
        )
        return item_id

    def delete(self, item_id: str) -> None:
        """A moderator removed `item_id`: YouTube reports it as a messageDeletedEvent."""
        self.say(
            "",
            kind="messageDeletedEvent",
            hasDisplayContent=False,
            messageDeletedDetails={"deletedMessageId": item_id},
        )
        del self.items[-1]["snippet"]["displayMessage"]

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def list_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/liveChat/messages")]

    # -- the server -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.base

    async def __aenter__(self) -> FakeYouTube:
        app = web.Application()
        app.router.add_get("/youtube/v3/liveChat/messages", self._messages)
        app.router.add_get("/youtube/v3/videos", self._videos)
        self._runner, self.base = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _bill(self, request: web.Request, cost: int) -> web.Response | None:
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers)))
        key = request.headers.get("X-Goog-Api-Key") or request.query.get("key")
        if key != self.api_key:
            return web.json_response(BAD_KEY, status=400)
        # Every request is billed, refused ones too; over the limit, nothing is served.
        self.quota_used += cost
        if self.quota_used > self.quota_limit:
            return web.json_response(QUOTA_EXCEEDED, status=403)
        if self.errors:
            status, body = self.errors.pop(0)
            return web.json_response(body, status=status)
        return None

    async def _messages(self, request: web.Request) -> web.Response:
        refused = self._bill(request, 5)
        if refused is not None:
            return refused
        query = request.query
        if set(query.get("part", "").split(",")) - {"id", "snippet", "authorDetails"} or not query.get(
            "part"
        ):
            return web.json_response(
                error_body(400, "invalidValue", "bad part", "youtube.parameter"), status=400
            )
        if self.gone or query.get("liveChatId") != self.live_chat_id:
            return web.json_response(CHAT_NOT_FOUND, status=404)
        if self.ended:
            return web.json_response(CHAT_ENDED, status=403)
        limit = int(query.get("maxResults", "500"))
        if not 200 <= limit <= 2000:
            return web.json_response(
                error_body(400, "invalidValue", "maxResults", "youtube.parameter"), status=400
            )
        token = query.get("pageToken")
        if token is None:
            start = max(0, len(self.items) - self.history_limit)
        elif token in self._tokens:
            start = self._tokens[token]
        else:
            return web.json_response(BAD_TOKEN, status=400)
        page = self.items[start : start + limit]
        next_token = f"GLgBCg{len(self._tokens) + 1:06d}"
        self._tokens[next_token] = start + len(page)
        body: dict[str, Any] = {
            "kind": "youtube#liveChatMessageListResponse",
            "etag": f"page-{start}",
            "nextPageToken": next_token,
            "pollingIntervalMillis": self.polling_ms,
            "pageInfo": {"totalResults": len(page), "resultsPerPage": len(page)},
            "items": page,
        }
        if self.offline_at:
            body["offlineAt"] = self.offline_at
        return web.json_response(body)

    async def _videos(self, request: web.Request) -> web.Response:
        refused = self._bill(request, 1)
        if refused is not None:
            return refused
        video_id = request.query.get("id", "")
        items = []
        if video_id in self.videos:
            items.append(
                {
                    "kind": "youtube#video",
                    "etag": f"video-{video_id}",
                    "id": video_id,
                    "liveStreamingDetails": self.videos[video_id],
                }
            )
        return web.json_response(
            {
                "kind": "youtube#videoListResponse",
                "etag": "videos",
                "items": items,
                "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
            }
        )
