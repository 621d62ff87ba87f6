"""The message model shared by every network, archive and view.

Pure values only: no I/O, no asyncio. A `Message` is what a source or an importer
produces; a `StoredMessage` is a message as the store holds it, with its per-event
sequence number and moderation state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backchannel.core import limits
from backchannel.core.limits import HANDLE_MAX, ITEMS_MAX, NAME_MAX, RAW_MAX, TEXT_MAX, URL_MAX, entries_over


class Network(enum.StrEnum):
    X = "x"
    MASTODON = "mastodon"
    BLUESKY = "bluesky"
    YOUTUBE = "youtube"
    FEED = "feed"
    FILE = "file"


class Status(enum.StrEnum):
    """Moderation status of a message."""

    NEW = "new"
    APPROVED = "approved"
    HIDDEN = "hidden"


@dataclass(slots=True)
class Message:
    """One post, tweet, toot or chat line, normalised. Treat it as immutable.

    Not a frozen dataclass only because a frozen one costs about 4 µs more to build
    (every field goes through object.__setattr__), a fifth of the import path's budget.

    `uri` is the canonical identity used to fold duplicates, across servers too (a
    Mastodon status `uri`, a Bluesky at-uri, `https://x.com/i/status/ID`).
    `repost_of` is set on a native retweet/boost: it is then not a message of its
    own but a count on the original named by that URI.

    Every field is within the caps of `core/limits.py` once built: longer values are
    cut (text visibly) or dropped there, whatever built the message.
    """

    network: Network
    network_id: str
    uri: str
    author_handle: str
    author_name: str
    text: str
    created_at: datetime
    event: str = ""
    permalink: str | None = None
    reply_to: str | None = None
    repost_of: str | None = None
    hashtags: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    raw: str | None = None  # the upstream payload, verbatim JSON text

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        if self.created_at.tzinfo is not UTC and self.created_at.utcoffset():
            self.created_at = self.created_at.astimezone(UTC)
        if (
            len(self.text) > TEXT_MAX
            or len(self.author_name) > NAME_MAX
            or len(self.author_handle) > HANDLE_MAX
            or len(self.uri) > URL_MAX
            or len(self.network_id) > URL_MAX
            or (self.permalink is not None and len(self.permalink) > URL_MAX)
            or (self.reply_to is not None and len(self.reply_to) > URL_MAX)
            or (self.repost_of is not None and len(self.repost_of) > URL_MAX)
            or (self.raw is not None and len(self.raw) > RAW_MAX)
            or ((self.hashtags or self.mentions or self.links) and self._entries_over())
        ):
            self._cap()

    def _entries_over(self) -> bool:
        entries = self.hashtags + self.mentions + self.links
        # Entries whose lengths add up to no more than the smallest cap cannot exceed
        # theirs one by one: one sum in C decides nearly every message.
        if len(entries) <= ITEMS_MAX and sum(map(len, entries)) <= HANDLE_MAX:
            return False
        return (
            entries_over(self.hashtags, HANDLE_MAX)
            or entries_over(self.mentions, HANDLE_MAX)
            or entries_over(self.links, URL_MAX)
        )

    def _cap(self) -> None:
        self.text = limits.cap_text(self.text)
        self.author_name = limits.cap_name(self.author_name)
        self.author_handle = limits.cap_identity(self.author_handle, HANDLE_MAX)
        self.network_id = limits.cap_identity(self.network_id, URL_MAX)
        self.uri = limits.cap_identity(self.uri, URL_MAX)
        self.reply_to = limits.cap_optional_identity(self.reply_to, URL_MAX)
        self.repost_of = limits.cap_optional_identity(self.repost_of, URL_MAX)
        if self.permalink is not None and len(self.permalink) > URL_MAX:
            self.permalink = None  # a cut URL would lead somewhere else
        self.hashtags = limits.cap_entries(self.hashtags, HANDLE_MAX)
        self.mentions = limits.cap_entries(self.mentions, HANDLE_MAX)
        self.links = limits.cap_entries(self.links, URL_MAX)
        self.raw = limits.cap_raw(self.raw)


@dataclass(frozen=True, slots=True)
class Moderation:
    status: Status = Status.NEW
    starred: bool = False
    answered: bool = False
    pinned: bool = False


@dataclass(slots=True)
class StoredMessage:
    """A message as the store holds it. Treat it as immutable (not frozen for the
    same reason as `Message`: exports build a hundred thousand of them).

    `repost_count` counts native retweets/boosts of it; `copy_count` counts manual
    "RT @x:" copies, and `copy_of` is set on such a copy (the URI it quotes).
    """

    id: int
    seq: int
    message: Message
    moderation: Moderation = field(default_factory=Moderation)
    repost_count: int = 0
    is_question: bool = False
    copy_of: str | None = None
    copy_count: int = 0
    deleted: bool = False  # deleted upstream: kept in the log, shown nowhere


def utc(dt: datetime) -> datetime:
    """Return `dt` as an aware UTC datetime (naive values are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Change:
    """A moderation change, numbered in the same sequence as the event's messages.

    `message` is the message's state after the change for per-message actions; event
    actions (block, mute, premoderation) carry their subject in `subject`.
    """

    seq: int
    action: str
    actor: str
    created_at: datetime
    message: StoredMessage | None = None
    subject: str | None = None
    action_id: str | None = None
    # Set when a retried action_id read the change back from the log instead of applying it.
    replayed: bool = False
