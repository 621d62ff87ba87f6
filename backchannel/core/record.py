"""The project's own archive record: one JSON object per line, one message each.

Pure conversion between a decoded JSON object and a `Message`. The format is
documented in `replay_data/README.md`; `message_to_record` and `message_from_record`
round-trip, so an export can be replayed again.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from backchannel.core.models import Message, Network, StoredMessage
from backchannel.errors import PayloadError

REQUIRED = ("network", "network_id", "author_handle", "text", "created_at")


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time (a trailing `Z` allowed) as an aware UTC datetime.

    Raises PayloadError for anything else, a time that is out of range once converted to
    UTC included (`9999-12-31T23:59:59-14:00` is year 10000 in UTC)."""
    if type(value) is not str or not value:
        raise PayloadError(f"created_at must be an ISO 8601 string, got {value!r:.80}")
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads a trailing "Z"
    except ValueError as exc:
        raise PayloadError(f"created_at is not an ISO 8601 time: {value!r:.80}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is UTC:
        return parsed
    return in_utc(parsed, value)


def in_utc(dt: datetime, given: Any) -> datetime:
    """An aware `dt` in UTC; PayloadError (naming `given`) when that is past year 1 or 9999."""
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise PayloadError(f"created_at is out of range in UTC: {given!r:.80}") from None


def format_time(dt: datetime) -> str:
    if dt.tzinfo is not UTC:  # messages hold UTC already; converting anyway costs a third
        dt = dt.astimezone(UTC)
    return dt.isoformat().replace("+00:00", "Z")


_NETWORKS = {n.value: n for n in Network}
_STR = itertools.repeat(str)  # for map(isinstance, values, _STR): a C-speed type check


def _str_tuple(record: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key)
    if not value:
        return ()
    if type(value) is not list or not all(map(isinstance, value, _STR)):
        raise PayloadError(f"{key} must be a list of strings")
    return tuple(value)


def _optional_str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if type(value) is str:
        return value or None
    if value is None:
        return None
    raise PayloadError(f"{key} must be a string")


def message_from_record(record: Any, *, event: str = "") -> Message:
    if type(record) is not dict and not isinstance(record, Mapping):
        raise PayloadError("a record must be a JSON object")
    get = record.get
    missing = [key for key in REQUIRED if not get(key) and get(key) is not False]
    if "text" in missing and record.get("text") == "":
        # A native repost has no text of its own, nor has a post that is only an image
        # (Mastodon's content is then empty): exports write "" and must import again.
        missing.remove("text")
    if missing:
        raise PayloadError(f"missing required field(s): {', '.join(missing)}")
    network = _NETWORKS.get(record["network"]) if type(record["network"]) is str else None
    if network is None:
        known = ", ".join(n.value for n in Network)
        raise PayloadError(f"unknown network {record['network']!r} (known: {known})")
    for key in ("network_id", "author_handle", "text"):
        if type(record[key]) is not str:
            raise PayloadError(f"{key} must be a string")
    raw = record.get("raw")
    handle = record["author_handle"]
    if handle[0] == "@":
        handle = handle.lstrip("@")
    return Message(
        network=network,
        network_id=record["network_id"],
        uri=_optional_str(record, "uri") or f"{network.value}:{record['network_id']}",
        author_handle=handle,
        author_name=_optional_str(record, "author_name") or handle,
        text=record["text"],
        created_at=parse_time(record["created_at"]),
        event=event or _optional_str(record, "event") or "",
        permalink=_optional_str(record, "permalink"),
        reply_to=_optional_str(record, "reply_to"),
        repost_of=_optional_str(record, "repost_of"),
        hashtags=_str_tuple(record, "hashtags"),
        mentions=_str_tuple(record, "mentions"),
        links=_str_tuple(record, "links"),
        raw=None if raw is None else _raw_json(raw),
    )


def _raw_json(raw: Any) -> str:
    """`raw` as JSON text: a JSON value serialised, or a string that must already be JSON
    text (the export reads it back with orjson; a string that is not JSON would break an
    export halfway through, so it is refused here)."""
    if type(raw) is str:
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(
                f"raw is a string but not JSON text ({exc.msg} at character {exc.pos + 1})"
            ) from None
        return raw
    try:
        return orjson.dumps(raw).decode()
    except TypeError as exc:  # orjson refuses integers beyond 64 bits, for one
        raise PayloadError(f"raw cannot be kept as JSON: {exc}") from None


def message_to_record(message: Message | StoredMessage) -> dict[str, Any]:
    """The archive record for a message; a stored message also carries its moderation."""
    stored = message if isinstance(message, StoredMessage) else None
    m = stored.message if stored else message
    assert isinstance(m, Message)
    record: dict[str, Any] = {
        "network": m.network.value,
        "network_id": m.network_id,
        "uri": m.uri,
        "event": m.event or None,
        "author_handle": m.author_handle,
        "author_name": m.author_name,
        "text": m.text,
        "created_at": format_time(m.created_at),
        "permalink": m.permalink,
        "reply_to": m.reply_to,
        "repost_of": m.repost_of,
        "hashtags": list(m.hashtags),
        "mentions": list(m.mentions),
        "links": list(m.links),
        "raw": orjson.loads(m.raw) if m.raw else None,
    }
    if stored:
        mod = stored.moderation
        record["moderation"] = {
            "status": mod.status.value,
            "starred": mod.starred,
            "answered": mod.answered,
            "pinned": mod.pinned,
        }
    return record
