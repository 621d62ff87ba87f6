"""YouTube live chat responses (`liveChatMessages.list`, `videos.list`) to `Message`s.

Pure: no I/O, no asyncio. Shapes follow developers.google.com/youtube/v3/live/docs
(liveChatMessages/list, liveChatMessage resource) and the Data API's error format
`{"error": {"code": 403, "errors": [{"domain": …, "reason": "quotaExceeded"}]}}`.

A chat item's identity is its `id`; its author is the channel (`authorDetails.channelId`),
which, unlike the display name, is unique and stable, so moderation can act on it.
Chat text is plain: it is kept as sent (never read as HTML), and links are only those
linkify-it-py finds with an http(s) scheme. Items are not all messages: a
`messageDeletedEvent` or `messageRetractedEvent` deletes an earlier one, a
`chatEndedEvent` ends the chat, and items without display content (`tombstone`, bans)
are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from linkify_it import LinkifyIt

from backchannel.core.models import Message, Network
from backchannel.core.record import parse_time
from backchannel.errors import PayloadError

# Quota costs (developers.google.com/youtube/data/determine_quota_cost): every request,
# an invalid one too, costs at least one unit.
LIST_COST = 5
VIDEOS_COST = 1
# Daily quotas reset at midnight Pacific Time (same page).
QUOTA_TZ = ZoneInfo("America/Los_Angeles")

_HASHTAG = re.compile(r"(?<![\w&#])#(\w*[^\W\d]\w*)")
_linkify = LinkifyIt()

# Item types that carry no chat line of their own.
_DELETING = {
    "messageDeletedEvent": "messageDeletedDetails",
    "messageRetractedEvent": "messageRetractedDetails",
}
_DELETED_ID = {"messageDeletedDetails": "deletedMessageId", "messageRetractedDetails": "retractedMessageId"}


def chat_uri(item_id: str) -> str:
    return f"youtube:{item_id}"


def scan_text(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Hashtags and http(s) links in plain text (YouTube sends no entities)."""
    links = [m.url for m in _linkify.match(text) or () if m.schema.lower() in ("http:", "https:")]
    return tuple(dict.fromkeys(_HASHTAG.findall(text))), tuple(dict.fromkeys(links))


@dataclass(slots=True)
class ChatResponse:
    """One `liveChatMessages.list` response, read."""

    messages: list[Message] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # URIs of messages deleted upstream
    rejected: list[str] = field(default_factory=list)
    next_page_token: str | None = None
    polling_interval: float | None = None  # seconds
    offline_at: datetime | None = None  # the stream went offline
    chat_ended: bool = False  # a chatEndedEvent was among the items


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where} has no {key}")
    return value


def _mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, Mapping):
        raise PayloadError(f"{where} has no {key}")
    return value


def watch_url(video_id: str, offset: timedelta | None = None) -> str:
    url = f"https://www.youtube.com/watch?v={video_id}"
    if offset is not None and offset >= timedelta(0):
        url += f"&t={int(offset.total_seconds())}s"
    return url


def message_from_item(
    item: Mapping[str, Any],
    *,
    event: str = "",
    video_id: str | None = None,
    started_at: datetime | None = None,
) -> Message:
    """A chat item with display content as a message.

    YouTube has no address for a chat line; with the `video_id` the permalink is the
    watch URL, at the line's offset into the stream when `started_at` is known.
    """
    item_id = _str(item, "id", "item")
    snippet = _mapping(item, "snippet", f"item {item_id}")
    author = _mapping(item, "authorDetails", f"item {item_id}")
    text = snippet.get("displayMessage")
    if not isinstance(text, str) or not text:
        details = snippet.get("textMessageDetails")
        text = details.get("messageText") if isinstance(details, Mapping) else None
    if not isinstance(text, str) or not text:
        raise PayloadError(f"item {item_id} has no displayMessage")
    created_at = parse_time(snippet.get("publishedAt"))
    channel_id = _str(author, "channelId", f"item {item_id} authorDetails")
    name = author.get("displayName")
    hashtags, links = scan_text(text)
    permalink = None
    if video_id:
        permalink = watch_url(video_id, created_at - started_at if started_at else None)
    return Message(
        network=Network.YOUTUBE,
        network_id=item_id,
        uri=chat_uri(item_id),
        author_handle=channel_id,
        author_name=name if isinstance(name, str) and name else channel_id,
        text=text,
        created_at=created_at,
        event=event,
        permalink=permalink,
        hashtags=hashtags,
        links=links,
        raw=orjson.dumps(item).decode(),
    )


def read_list_response(
    body: Any,
    *,
    event: str = "",
    video_id: str | None = None,
    started_at: datetime | None = None,
) -> ChatResponse:
    """A decoded `youtube#liveChatMessageListResponse`; bad items are rejected one by one."""
    if not isinstance(body, Mapping):
        raise PayloadError("the response is not a JSON object")
    out = ChatResponse()
    token = body.get("nextPageToken")
    out.next_page_token = token if isinstance(token, str) and token else None
    interval = body.get("pollingIntervalMillis")
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval >= 0:
        out.polling_interval = interval / 1000
    if body.get("offlineAt"):
        try:
            out.offline_at = parse_time(body["offlineAt"])
        except PayloadError:
            out.offline_at = datetime.now(UTC)  # offline, even if the time is unreadable
    items = body.get("items") or []
    if not isinstance(items, list):
        raise PayloadError("items is not a list")
    for position, item in enumerate(items, 1):
        where = item.get("id") if isinstance(item, Mapping) else None
        where = f"item {where}" if isinstance(where, str) else f"item {position}"
        try:
            _read_item(item, out, event=event, video_id=video_id, started_at=started_at)
        except (PayloadError, ValueError, TypeError) as exc:
            out.rejected.append(f"{where}: {exc}")
    return out


def _read_item(
    item: Any, out: ChatResponse, *, event: str, video_id: str | None, started_at: datetime | None
) -> None:
    if not isinstance(item, Mapping):
        raise PayloadError("not a JSON object")
    snippet = item.get("snippet")
    if not isinstance(snippet, Mapping):
        raise PayloadError("no snippet")
    kind = snippet.get("type")
    if kind == "chatEndedEvent":
        out.chat_ended = True
        return
    if kind in _DELETING:
        details = _mapping(snippet, _DELETING[kind], "snippet")
        out.deletes.append(chat_uri(_str(details, _DELETED_ID[_DELETING[kind]], _DELETING[kind])))
        return
    if snippet.get("hasDisplayContent") is False:
        return  # tombstones, bans and other events with nothing to show
    out.messages.append(message_from_item(item, event=event, video_id=video_id, started_at=started_at))


@dataclass(frozen=True, slots=True)
class VideoChat:
    """What `videos.list?part=liveStreamingDetails` says about a video's chat."""

    live_chat_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    found: bool = True


def read_video(body: Any) -> VideoChat:
    if not isinstance(body, Mapping):
        raise PayloadError("the response is not a JSON object")
    items = body.get("items")
    if not isinstance(items, list) or not items or not isinstance(items[0], Mapping):
        return VideoChat(None, None, None, found=False)
    details = items[0].get("liveStreamingDetails")
    if not isinstance(details, Mapping):
        return VideoChat(None, None, None)  # not a live stream at all

    def when(key: str) -> datetime | None:
        try:
            return parse_time(details[key]) if details.get(key) else None
        except PayloadError:
            return None

    chat = details.get("activeLiveChatId")
    return VideoChat(
        live_chat_id=chat if isinstance(chat, str) and chat else None,
        started_at=when("actualStartTime"),
        ended_at=when("actualEndTime"),
    )


# -- errors and quota --------------------------------------------------------------------


def error_reasons(body: Any) -> tuple[str, ...]:
    """The `reason`s of a Data API error body, and any google.rpc.ErrorInfo reasons
    (an invalid API key is reported as `API_KEY_INVALID` there)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("error"), Mapping):
        return ()
    error = body["error"]
    reasons: list[str] = []
    for key, field_name in (("errors", "reason"), ("details", "reason")):
        entries = error.get(key)
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get(field_name), str):
                reasons.append(entry[field_name])
    return tuple(reasons)


def error_message(body: Any) -> str | None:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        message = body["error"].get("message")
        if isinstance(message, str) and message:
            # Google puts HTML in some messages ("your <a href=…>quota</a>"): keep the words.
            # `<[^<>]*>`, not `<[^>]*>`: a run of "<" with no ">" made the latter rescan to the
            # end from each one, quadratic in the length of the message.
            return re.sub(r"<[^<>]*>", "", message)[:300]
    return None


def quota_day(now: datetime) -> date:
    """The quota day `now` falls in (a Pacific Time calendar day)."""
    return now.astimezone(QUOTA_TZ).date()


def seconds_until_quota_reset(now: datetime) -> float:
    """Seconds from `now` to the next midnight Pacific Time, when the daily quota resets."""
    local = now.astimezone(QUOTA_TZ)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=QUOTA_TZ)
    # Subtract in UTC: datetimes sharing a tzinfo subtract naively, which is an hour off
    # on the days the clocks change.
    return max(0.0, (midnight.astimezone(UTC) - now.astimezone(UTC)).total_seconds())
