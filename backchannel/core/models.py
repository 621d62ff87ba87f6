"""The message model shared by every network, archive and view.

Pure values only: no I/O, no asyncio. A `Message` is what a source or an importer
produces; a `StoredMessage` is a message as the store holds it, with its per-event
sequence number and moderation state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime


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
