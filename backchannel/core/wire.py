"""The hub's wire format: JSON frames between the server and a dashboard or wall.

Pure: values, encoders and parsers only; no asyncio, no sockets (the hub in
`backchannel/hub.py` moves these bytes). Every frame is one JSON object in one
websocket text frame, encoded with orjson.

Server to client:

    {"type": "hello", "event": E, "epoch": P, "last_seq": N}
        Always the first frame. `epoch` names the history sequence numbers count in;
        `last_seq` is the event's head when the connection was attached.
    {"type": "items", "items": [item, ...]}
        A coalesced batch: every item published in a short window, in the order
        published (seq order for each writer; a client orders by seq if it must).
    {"type": "recovered", "from_seq": A, "to_seq": B}
        After a resume: every item with A <= seq <= B that this channel may see has
        been sent (A > B when nothing was missed). Live items follow.
    {"type": "reset", "reason": "epoch" | "gap" | "ahead"}
        The client cannot resume (another epoch, a gap too large to replay, a client
        ahead of the server): it reloads a snapshot. Live items after `hello`'s
        `last_seq` follow on the same connection; the client ignores seqs it already
        holds from the snapshot.
    {"type": "ping"}
        Reserved for an application-level keepalive; the hub relies on websocket
        ping/pong instead and does not send it.

An item is a JSON object with at least `seq` (the event's sequence number, shared
by messages and moderation changes) and `kind`:

    {"seq", "kind": "message", "id", "network", "uri", "author_handle", ...}
        A stored message (`message_item`).
    {"seq", "kind": "moderation", "action", "actor", "created_at", "subject",
     "message": {message item} | null}
        A moderation change (`change_item`), carrying the message's state after it
        (or, read back on a resume, its current state) so a client upserts by id.
        Event actions (block, mute, premoderation) carry `subject` instead.

The public wall sees less (`wall_item`): messages that `WallRules.visible` accepts
(copies left out), each as `{"seq", "kind": "message", "id", "network",
"author_handle", "author_name", "text", "created_at", "pinned"}` (`wall_message_item`:
no moderation state); a change to a visible message without its actor; `{"seq", "kind": "moderation",
"action", "retract": id}` for a change to a message it may not show (the wall drops
that id, and learns nothing else); `{"seq", "kind": "moderation", "action"}` for an
event action, after which the wall reloads its snapshot. A client keeps the highest
seq it has seen.

Client to server: nothing yet. The resume point travels in the connect URL's query,
`?epoch=E&since=N` (`resume_query` builds it, `parse_resume` reads it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from backchannel.core.models import Change, StoredMessage
from backchannel.core.moderation import WallRules
from backchannel.errors import PayloadError

# A wire item: a JSON object with "seq" and "kind". Plain dicts, because items are
# encoded once and fanned out as bytes; a dataclass would only be converted back.
Item = dict[str, Any]

# What the hub accepts: store values, or items already built (benchmarks, tools).
Publishable = StoredMessage | Change | Item

# A channel's view: the item as that channel may see it, or None.
View = Callable[[Publishable], Item | None]


class ItemKind(enum.StrEnum):
    MESSAGE = "message"
    MODERATION = "moderation"


class ResetReason(enum.StrEnum):
    EPOCH = "epoch"  # the client's history is another one (or it sent none)
    GAP = "gap"  # more missed than the server replays
    AHEAD = "ahead"  # the client claims seqs the server does not have


# -- items -----------------------------------------------------------------------------


def _iso(dt: datetime) -> str:
    # The dashboard parses ISO 8601 with "Z"; store times are aware UTC.
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_item(stored: StoredMessage) -> Item:
    """What a dashboard needs of one stored message, as a wire item: what the wall
    shows (`wall_message_item`), the moderation state, links and counts.

    The raw upstream payload is left out on purpose: it is large, and it is not
    sanitised for display.
    """
    m = stored.message
    mod = stored.moderation
    item = wall_message_item(stored)
    item.update(
        uri=m.uri,
        permalink=m.permalink,
        reply_to=m.reply_to,
        repost_of=m.repost_of,
        hashtags=list(m.hashtags),
        mentions=list(m.mentions),
        links=list(m.links),
        status=mod.status.value,
        starred=mod.starred,
        answered=mod.answered,
        repost_count=stored.repost_count,
        is_question=stored.is_question,
        copy_of=stored.copy_of,
        copy_count=stored.copy_count,
    )
    return item


def wall_message_item(stored: StoredMessage) -> Item:
    """What the public wall shows of a message, and nothing more: no moderation state
    (status, starred, answered, question) and no links, counts or upstream ids. The
    pin is shown: the wall features the pinned message."""
    m = stored.message
    return {
        "seq": stored.seq,
        "kind": ItemKind.MESSAGE.value,
        "id": stored.id,
        "network": m.network.value,
        "author_handle": m.author_handle,
        "author_name": m.author_name,
        "text": m.text,
        "created_at": _iso(m.created_at),
        "pinned": stored.moderation.pinned,
    }


def change_item(change: Change) -> Item:
    """A moderation change as the moderators' dashboard sees it."""
    return {
        "seq": change.seq,
        "kind": ItemKind.MODERATION.value,
        "action": change.action,
        "actor": change.actor,
        "created_at": _iso(change.created_at),
        "subject": change.subject,
        "message": message_item(change.message) if change.message is not None else None,
    }


def to_item(value: Publishable) -> Item:
    """The full item, for moderators (a dict passes as it is)."""
    if isinstance(value, StoredMessage):
        return message_item(value)
    if isinstance(value, Change):
        return change_item(value)
    return value


def _on_wall(stored: StoredMessage, rules: WallRules) -> bool:
    # Copies ("RT @x: …") are left out as the wall's snapshot leaves them out: the
    # original is on the wall already.
    return stored.copy_of is None and rules.visible(stored)


def wall_item(value: Publishable, rules: WallRules) -> Item | None:
    """The public wall's view of a value under the event's wall rules, or None.

    The same function serves live items and a resume's backlog, so the wall cannot
    get by resuming what it would not get live. A prebuilt dict is refused: the
    rules need the message itself.
    """
    if isinstance(value, StoredMessage):
        return wall_message_item(value) if _on_wall(value, rules) else None
    if isinstance(value, Change):
        if value.message is None:
            # An event action (block, mute, premoderation): its subject stays private
            # (a muted term may be the very word being kept off the wall).
            return {"seq": value.seq, "kind": ItemKind.MODERATION.value, "action": value.action}
        if _on_wall(value.message, rules):
            return {
                "seq": value.seq,
                "kind": ItemKind.MODERATION.value,
                "action": value.action,
                "created_at": _iso(value.created_at),
                "message": wall_message_item(value.message),
            }
        return {
            "seq": value.seq,
            "kind": ItemKind.MODERATION.value,
            "action": value.action,
            "retract": value.message.id,
        }
    return None


# -- frames ----------------------------------------------------------------------------

ITEMS_PREFIX = b'{"type":"items","items":['
ITEMS_SUFFIX = b"]}"


def encode_item(item: Mapping[str, Any]) -> bytes:
    return orjson.dumps(item)


def items_frame(encoded: Iterable[bytes]) -> bytes:
    """An items frame from items encoded with `encode_item`, without decoding them.

    Frames are assembled from already-encoded items so the hub encodes each item once
    per channel, whatever the number of clients and however batches are coalesced.
    """
    return ITEMS_PREFIX + b",".join(encoded) + ITEMS_SUFFIX


@dataclass(frozen=True, slots=True)
class Hello:
    event: str
    epoch: str
    last_seq: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {"type": "hello", "event": self.event, "epoch": self.epoch, "last_seq": self.last_seq}
        )


@dataclass(frozen=True, slots=True)
class Items:
    items: tuple[Item, ...]

    def encode(self) -> bytes:
        return items_frame(encode_item(item) for item in self.items)


@dataclass(frozen=True, slots=True)
class Recovered:
    from_seq: int
    to_seq: int

    def encode(self) -> bytes:
        return orjson.dumps({"type": "recovered", "from_seq": self.from_seq, "to_seq": self.to_seq})


@dataclass(frozen=True, slots=True)
class Reset:
    reason: ResetReason

    def encode(self) -> bytes:
        return orjson.dumps({"type": "reset", "reason": self.reason.value})


@dataclass(frozen=True, slots=True)
class Ping:
    def encode(self) -> bytes:
        return b'{"type":"ping"}'


Frame = Hello | Items | Recovered | Reset | Ping


def parse_frame(data: str | bytes) -> Frame:
    """Decode one server frame (for Python clients: tests, benchmarks, tools)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"a frame must be JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise PayloadError("a frame must be a JSON object")
    try:
        match obj.get("type"):
            case "items":
                items = obj["items"]
                if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                    raise PayloadError("items must be a list of objects")
                return Items(tuple(items))
            case "hello":
                return Hello(str(obj["event"]), str(obj["epoch"]), int(obj["last_seq"]))
            case "recovered":
                return Recovered(int(obj["from_seq"]), int(obj["to_seq"]))
            case "reset":
                return Reset(ResetReason(obj["reason"]))
            case "ping":
                return Ping()
            case other:
                raise PayloadError(f"unknown frame type {other!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed {obj.get('type')} frame: {exc!r}") from exc


# -- resume ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a connecting client stands: the epoch and last seq it holds, if any."""

    epoch: str | None = None
    since: int | None = None


def parse_resume(query: Mapping[str, str]) -> Resume:
    """Read `?epoch=E&since=N` from a connect URL's query; absent values are None."""
    epoch = query.get("epoch") or None
    raw = query.get("since")
    if raw is None or raw == "":
        return Resume(epoch, None)
    return Resume(epoch, client_int(raw, "since"))


# -- integers from clients ---------------------------------------------------------------

# Ids and sequence numbers are signed 64-bit in the store (BigInteger): a larger number
# would overflow the database driver (an OverflowError, a 500) instead of a 400.
MAX_CLIENT_INT = 2**63 - 1


def client_int(value: object, name: str) -> int:
    """A whole number from 0 to `MAX_CLIENT_INT` sent by a client, as a query-string
    digit string or a JSON integer; anything else raises PayloadError.

    Every integer a client sends (the API's `limit` and `before`, moderation `ids`, the
    websocket's `since`) passes here, so no client number reaches the store unchecked.
    """
    if isinstance(value, str):
        # isdecimal() rejects signs, spaces and exponents that int() would accept; the
        # length check keeps int() from parsing a megabyte of digits.
        if not value.isascii() or not value.isdecimal() or len(value) > len(str(MAX_CLIENT_INT)):
            raise PayloadError(
                f"{name} must be a whole number from 0 to {MAX_CLIENT_INT}, got {value[:40]!r}"
            )
        value = int(value)
    # type(), not isinstance: JSON true and false are ints to Python.
    if type(value) is not int or not 0 <= value <= MAX_CLIENT_INT:
        raise PayloadError(f"{name} must be a whole number from 0 to {MAX_CLIENT_INT}")
    return value


def resume_query(epoch: str | None, since: int | None) -> dict[str, str]:
    query: dict[str, str] = {}
    if epoch is not None:
        query["epoch"] = epoch
    if since is not None:
        query["since"] = str(since)
    return query
