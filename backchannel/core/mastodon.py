"""Mastodon `Status` entities (REST, streaming or saved JSON) to `Message`s.

Pure: no I/O. Field shapes follow docs.joinmastodon.org/entities/Status. The
status `uri` (its ActivityPub id) is the identity, so the same post seen through
two instances folds into one message; `id` is only meaningful on the instance that
served it.

Replies: a status names its parent only by `in_reply_to_id`, an id local to the
serving instance, not by the parent's URI. Without a lookup on that instance the
parent's identity is unknown, so `reply_to` stays None rather than holding a key
that would never match a stored message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from backchannel.core.html_text import html_to_text
from backchannel.core.models import Message, Network
from backchannel.core.record import parse_time
from backchannel.errors import PayloadError


def _required_str(obj: Mapping[str, Any], key: str, where: str = "status") -> str:
    value = obj.get(key)
    if value is None or value == "":
        raise PayloadError(f"{where} has no {key}")
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, where: str = "status") -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _json(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError as exc:  # orjson refuses integers beyond 64 bits, for one
        raise PayloadError(f"status cannot be kept as JSON: {exc}") from exc


def _names(status: Mapping[str, Any], key: str, field: str) -> tuple[str, ...]:
    """`status[key][*][field]`, e.g. the names of `tags` or the accts of `mentions`."""
    items = status.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise PayloadError(f"status.{key} must be a list")
    names: list[str] = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get(field), str):
            raise PayloadError(f"status.{key} entries must be objects with a string {field!r}")
        if item[field] not in names:
            names.append(item[field])
    return tuple(names)


def _author(status: Mapping[str, Any], instance: str | None) -> tuple[str, str]:
    """The author's handle and display name."""
    account = status.get("account")
    if not isinstance(account, Mapping):
        raise PayloadError("status has no account object")
    handle = _required_str(account, "acct", "status.account").lstrip("@")
    # `acct` is bare for the serving instance's own users; qualifying it keeps one
    # author's handle the same whichever instance the status was read from.
    if instance and "@" not in handle:
        handle = f"{handle}@{instance}"
    # Display names are plain text (a name like "Ann <3" is legal): kept verbatim,
    # escaped by whatever shows them.
    name = (
        _optional_str(account, "display_name", "status.account")
        or _optional_str(account, "username", "status.account")
        or handle
    )
    return handle, name


def _message(status: Mapping[str, Any], *, instance: str | None, event: str, raw: str) -> Message:
    uri = _required_str(status, "uri")
    handle, name = _author(status, instance)
    text, links = html_to_text(_optional_str(status, "content"))
    spoiler = _optional_str(status, "spoiler_text").strip()
    if spoiler:
        text = f"CW: {spoiler}\n{text}"
    return Message(
        network=Network.MASTODON,
        network_id=_required_str(status, "id"),
        uri=uri,
        author_handle=handle,
        author_name=name,
        text=text,
        created_at=parse_time(_required_str(status, "created_at")),
        event=event,
        permalink=_optional_str(status, "url") or uri,
        hashtags=_names(status, "tags", "name"),
        mentions=_names(status, "mentions", "acct"),
        links=links,
        raw=raw,
    )


def messages_from_status(
    status: Any, *, instance: str | None = None, event: str = "", raw: str | None = None
) -> list[Message]:
    """The messages a status stands for: itself, or for a boost the original then the boost.

    A boost (`reblog` set) becomes a message with empty text whose `repost_of` is
    the original's URI, so the store counts it onto the original. `instance` is the
    host the status was read from (qualifies local `acct`s); `raw` is the status's
    JSON text when the caller has it, else the dict is serialised.
    """
    if not isinstance(status, Mapping):
        raise PayloadError(f"a status must be a JSON object, got {type(status).__name__}")
    raw_text = raw if raw is not None else _json(status)
    reblog = status.get("reblog")
    if reblog is None:
        return [_message(status, instance=instance, event=event, raw=raw_text)]
    if not isinstance(reblog, Mapping):
        raise PayloadError("status.reblog must be a status object or null")
    try:
        original = _message(reblog, instance=instance, event=event, raw=_json(reblog))
    except PayloadError as exc:
        raise PayloadError(f"boosted status: {exc}") from exc
    uri = _required_str(status, "uri")
    handle, name = _author(status, instance)
    boost = Message(
        network=Network.MASTODON,
        network_id=_required_str(status, "id"),
        uri=uri,
        author_handle=handle,
        author_name=name,
        text="",
        created_at=parse_time(_required_str(status, "created_at")),
        event=event,
        permalink=_optional_str(status, "url") or uri,
        repost_of=original.uri,
        raw=raw_text,
    )
    return [original, boost]
