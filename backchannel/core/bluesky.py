"""Bluesky Jetstream events (v1 JSON, `/subscribe`) to `Message`s.

Pure: no I/O, no asyncio. `parse_event` reads one frame; `matches` decides whether a
post carries one of the event's hashtags; `post_message` and `repost_message` build
the messages once the author's profile is known (events carry only a DID).

Hashtags are the post's `app.bsky.richtext.facet#tag` facets and its `tags` field,
compared case-insensitively; the text itself is never searched, so `#slzx` does not
match `#slz`, and a tag a client put only in `tags` is not missed.

Facet indices count UTF-8 bytes, not characters: an emoji before a link moves its
character position but not its byte range. A link facet whose text is a shortened
display of its URI ("example.com/a-long-pa…") gets the full URI written in its place,
so the renderer, which links URLs found in the text, can link it; custom link text
is left alone and the URI is only in `links`.

Identity is the post's at-uri (`at://did/app.bsky.feed.post/rkey`); the web link uses
the DID, which bsky.app resolves, so it survives a change of handle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from backchannel.core.models import Message, Network
from backchannel.core.record import parse_time
from backchannel.errors import PayloadError

POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"
COLLECTIONS = (POST, REPOST)
TAG = "app.bsky.richtext.facet#tag"
LINK = "app.bsky.richtext.facet#link"
MENTION = "app.bsky.richtext.facet#mention"
OPERATIONS = ("create", "update", "delete")
# What the appview answers for a handle that no longer verifies: useless as a name.
INVALID_HANDLE = "handle.invalid"
# The last microsecond a datetime can hold (9999-12-31T23:59:59.999999Z): a time_us past it
# could be neither a post's fallback time nor a sensible cursor.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Commit:
    """A record created, updated or deleted in a repository."""

    did: str
    time_us: int
    operation: str
    collection: str
    rkey: str
    record: Mapping[str, Any] | None  # None for a delete
    cid: str | None
    raw: str

    @property
    def uri(self) -> str:
        return f"at://{self.did}/{self.collection}/{self.rkey}"


@dataclass(frozen=True, slots=True)
class Identity:
    """A DID's handle changed (or should be looked up again, when `handle` is None)."""

    did: str
    time_us: int
    handle: str | None


@dataclass(frozen=True, slots=True)
class Account:
    """An account's status changed; nothing backchannel keeps."""

    did: str
    time_us: int


Event = Commit | Identity | Account


@dataclass(frozen=True, slots=True)
class Profile:
    handle: str
    display_name: str


def post_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST}/{rkey}"


def web_url(did: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{did}/post/{rkey}"


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where} needs a string {key}")
    return value


def parse_event(frame: str | bytes) -> Event:
    """One Jetstream frame. Raises PayloadError for anything that is not a v1 event."""
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError(f"an event must be a JSON object, got {type(data).__name__}")
    did = _str(data, "did", "event")
    time_us = data.get("time_us")
    if type(time_us) is not int or not 0 < time_us <= MAX_TIME_US:
        raise PayloadError("event needs a positive integer time_us, at most year 9999")
    kind = data.get("kind")
    if kind == "commit":
        commit = data.get("commit")
        if not isinstance(commit, dict):
            raise PayloadError("commit event without a commit object")
        operation = commit.get("operation")
        if operation not in OPERATIONS:
            raise PayloadError(f"unknown commit operation {operation!r:.40}")
        record = commit.get("record")
        if operation == "delete":
            record = None
        elif not isinstance(record, dict):
            raise PayloadError(f"{operation} commit without a record object")
        cid = commit.get("cid")
        raw = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        return Commit(
            did=did,
            time_us=time_us,
            operation=operation,
            collection=_str(commit, "collection", "commit"),
            rkey=_str(commit, "rkey", "commit"),
            record=record,
            cid=cid if isinstance(cid, str) else None,
            raw=raw,
        )
    if kind == "identity":
        identity = data.get("identity")
        handle = identity.get("handle") if isinstance(identity, dict) else None
        return Identity(did, time_us, handle if isinstance(handle, str) and handle else None)
    if kind == "account":
        return Account(did, time_us)
    raise PayloadError(f"unknown event kind {kind!r:.40}")


# -- hashtags ------------------------------------------------------------------------------


def _features(record: Mapping[str, Any]) -> Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(facet, feature) pairs; malformed entries are skipped, not fatal: a post is
    still worth showing when one of its facets is broken."""
    facets = record.get("facets")
    if type(facets) is not list:
        return
    for facet in facets:
        if type(facet) is not dict:
            continue
        features = facet.get("features")
        if type(features) is not list:
            continue
        for feature in features:
            if type(feature) is dict:
                yield facet, feature


def tags_of(record: Mapping[str, Any]) -> list[str]:
    """The post's hashtags as written, without '#': tag facets, then `tags`."""
    tags: list[str] = []
    if "facets" in record:
        for _, feature in _features(record):
            if feature.get("$type") == TAG:
                tag = feature.get("tag")
                if type(tag) is str and tag.lstrip("#"):
                    tags.append(tag.lstrip("#"))
    extra = record.get("tags")
    if type(extra) is list:
        tags.extend(t.lstrip("#") for t in extra if type(t) is str and t.lstrip("#"))
    return tags


def matches(record: Mapping[str, Any], wanted: frozenset[str]) -> bool:
    """Whether the post carries one of `wanted` (lower-case, without '#')."""
    if "facets" not in record and "tags" not in record:
        return False  # most posts: decided without looking further
    return any(tag.lower() in wanted for tag in tags_of(record))


def subject_uri(record: Mapping[str, Any] | None) -> str | None:
    """The post a repost record points at."""
    subject = record.get("subject") if record else None
    uri = subject.get("uri") if isinstance(subject, dict) else None
    return uri if isinstance(uri, str) and uri.startswith("at://") else None


# -- messages ------------------------------------------------------------------------------


def _created_at(record: Mapping[str, Any] | None, time_us: int) -> datetime:
    """The client-declared time; Jetstream's own clock when the client sent none usable
    (none, not ISO 8601, or out of range in UTC)."""
    value = record.get("createdAt") if record else None
    if isinstance(value, str):
        try:
            return parse_time(value)
        except PayloadError:
            pass
    return _EPOCH + timedelta(microseconds=time_us)  # exact, where a float division is not


def _web_link(uri: str) -> str | None:
    """bsky.app's page for an at-uri of a post (quote posts link to what they quote)."""
    parts = uri.removeprefix("at://").split("/")
    if uri.startswith("at://") and len(parts) == 3 and parts[1] == POST and parts[0] and parts[2]:
        return web_url(parts[0], parts[2])
    return None


def _is_http(uri: object) -> bool:
    return isinstance(uri, str) and uri.startswith(("https://", "http://"))


def _display_form(anchor: str, uri: str) -> bool:
    """Whether a link's text is the URI shortened for display (the app shows
    `example.com/a-long-pa...` for `https://example.com/a-long-path`)."""
    shown = anchor.strip().rstrip(".…")
    if not shown or shown == uri:
        return False
    bare = uri.split("://", 1)[-1]
    return uri.startswith(shown) or bare.startswith(shown) or bare.removeprefix("www.").startswith(shown)


def _expand_links(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each shortened link text replaced by its URI; spans in UTF-8 bytes.

    Built in one pass, piece by piece: replacing span after span in the whole text cost a
    copy of it each, a second for a frame of a megabyte with thousands of link facets."""
    data = text.encode("utf-8")
    pieces: list[bytes] = []
    done = 0  # bytes of `data` already in `pieces`
    for start, end, uri in sorted(spans):
        if not done <= start < end <= len(data):  # out of range, or overlapping the previous
            continue
        try:
            anchor = data[start:end].decode("utf-8")
        except UnicodeDecodeError:  # a range that splits a character: not a usable span
            continue
        if _display_form(anchor, uri):
            pieces += (data[done:start], uri.encode("utf-8"))
            done = end
    if not pieces:
        return text
    pieces.append(data[done:])
    return b"".join(pieces).decode("utf-8")


def _embedded_links(record: Mapping[str, Any]) -> list[str]:
    """An external card's URL and the web link of a quoted post."""
    embed = record.get("embed")
    if not isinstance(embed, dict):
        return []
    found: list[str] = []
    parts = [embed]
    media = embed.get("media")
    if isinstance(media, dict):
        parts.append(media)
    for part in parts:
        external = part.get("external")
        if isinstance(external, dict) and _is_http(external.get("uri")):
            found.append(external["uri"])
        quoted = part.get("record")
        if isinstance(quoted, dict) and isinstance(quoted.get("record"), dict):
            quoted = quoted["record"]  # recordWithMedia nests the strongRef one level deeper
        if isinstance(quoted, dict) and isinstance(quoted.get("uri"), str):
            link = _web_link(quoted["uri"])
            if link:
                found.append(link)
    return found


def mention_dids(record: Mapping[str, Any] | None) -> list[str]:
    if not record or "facets" not in record:
        return []
    return [
        f["did"]
        for _, f in _features(record)
        if f.get("$type") == MENTION and isinstance(f.get("did"), str) and f["did"]
    ]


def _unique(values: Iterable[str], *, fold: bool = False) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        key = value.lower() if fold else value
        if key not in seen:
            seen.add(key)
            out.append(value)
    return tuple(out)


def _author(did: str, profile: Profile | None) -> tuple[str, str]:
    if profile is None or not profile.handle or profile.handle == INVALID_HANDLE:
        return did, profile.display_name if profile and profile.display_name else did
    return profile.handle, profile.display_name or profile.handle


def post_message(
    commit: Commit, profile: Profile | None = None, handles: Mapping[str, str] | None = None
) -> Message:
    """A post (created or updated). `profile` is the author's, when resolved (else the
    DID stands in for the handle); `handles` maps mentioned DIDs to their handles."""
    record = commit.record
    if record is None:
        raise PayloadError("a post needs its record")
    text = record.get("text", "")
    if not isinstance(text, str):
        raise PayloadError(f"record.text must be a string, got {type(text).__name__}")
    links: list[str] = []
    spans: list[tuple[int, int, str]] = []
    mentions: list[str] = []
    for facet, feature in _features(record):
        kind = feature.get("$type")
        if kind == LINK and _is_http(feature.get("uri")):
            links.append(feature["uri"])
            index = facet.get("index")
            if isinstance(index, dict):
                start, end = index.get("byteStart"), index.get("byteEnd")
                if type(start) is int and type(end) is int:
                    spans.append((start, end, feature["uri"]))
        elif kind == MENTION and isinstance(feature.get("did"), str):
            mentions.append((handles or {}).get(feature["did"], feature["did"]))
    links.extend(_embedded_links(record))
    reply = record.get("reply")
    parent = reply.get("parent") if isinstance(reply, dict) else None
    reply_to = parent.get("uri") if isinstance(parent, dict) else None
    handle, name = _author(commit.did, profile)
    return Message(
        network=Network.BLUESKY,
        network_id=commit.rkey,
        uri=post_uri(commit.did, commit.rkey),
        author_handle=handle,
        author_name=name,
        text=_expand_links(text, spans) if spans else text,
        created_at=_created_at(record, commit.time_us),
        permalink=web_url(commit.did, commit.rkey),
        reply_to=reply_to if isinstance(reply_to, str) and reply_to.startswith("at://") else None,
        hashtags=_unique(tags_of(record), fold=True),
        mentions=_unique(mentions),
        links=_unique(links),
        raw=commit.raw,
    )


def repost_message(commit: Commit, profile: Profile | None = None) -> Message:
    """A repost: no text of its own, a count on the post it names."""
    subject = subject_uri(commit.record)
    if subject is None:
        raise PayloadError("a repost needs subject.uri")
    handle, name = _author(commit.did, profile)
    return Message(
        network=Network.BLUESKY,
        network_id=commit.rkey,
        uri=commit.uri,
        author_handle=handle,
        author_name=name,
        text="",
        created_at=_created_at(commit.record, commit.time_us),
        repost_of=subject,
        raw=commit.raw,
    )


def profile_from_view(view: Any) -> tuple[str, Profile] | None:
    """(did, profile) from an appview `profileView*`; None if it lacks a DID or handle."""
    if not isinstance(view, dict):
        return None
    did, handle, name = view.get("did"), view.get("handle"), view.get("displayName")
    if not isinstance(did, str) or not isinstance(handle, str) or not did or not handle:
        return None
    return did, Profile(handle, name.strip() if isinstance(name, str) else "")
