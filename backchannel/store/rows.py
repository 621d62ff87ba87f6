"""Row helpers shared by the store's modules: conversions and the event lock."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from backchannel.core.models import Message, Moderation, Network, Status, StoredMessage
from backchannel.store.schema import events, source_cursors


@dataclass(frozen=True, slots=True)
class EventInfo:
    id: int
    name: str
    epoch: str
    last_seq: int
    premoderation: bool


def json_list(values: Sequence[str]) -> str:
    return orjson.dumps(values).decode() if values else "[]"


def aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def lock_event(conn: sa.Connection, event_id: int) -> int:
    """Take the event's write lock for this transaction; return its last sequence number.

    A no-op update locks the row on PostgreSQL and takes SQLite's write lock, so
    concurrent writers to one event are serialised and numbering stays gap-free.
    """
    return int(
        conn.execute(
            sa.update(events)
            .where(events.c.id == event_id)
            .values(last_seq=events.c.last_seq)
            .returning(events.c.last_seq)
        ).scalar_one()
    )


def save_cursor(conn: sa.Connection, event_id: int, source: str, position: str) -> None:
    now = datetime.now(UTC)
    updated = conn.execute(
        sa.update(source_cursors)
        .where(source_cursors.c.source == source)
        .values(cursor=position, event_id=event_id, updated_at=now)
    )
    if not updated.rowcount:
        conn.execute(
            sa.insert(source_cursors).values(
                source=source, event_id=event_id, cursor=position, updated_at=now
            )
        )


def next_seq(conn: sa.Connection, event_id: int) -> int:
    seq = lock_event(conn, event_id) + 1
    conn.execute(sa.update(events).where(events.c.id == event_id).values(last_seq=seq))
    return seq


_NETWORKS = {n.value: n for n in Network}


@functools.cache
def _moderation(status: str, starred: bool, answered: bool, pinned: bool) -> Moderation:
    # Only 24 states exist: share them instead of building one per row.
    return Moderation(Status(status), starred, answered, pinned)


def _json_tuple(value: str) -> tuple[str, ...]:
    return () if value == "[]" else tuple(orjson.loads(value))


_NEEDED = (
    "network", "network_id", "uri", "author_handle", "author_name", "text", "created_at", "permalink",
    "reply_to", "repost_of", "hashtags", "mentions", "links", "raw", "id", "seq", "status", "starred",
    "answered", "pinned", "is_question", "copy_of", "deleted", "repost_count", "copy_count",
)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _getter(fields: tuple[str, ...]) -> operator.itemgetter[Any]:
    """Picks the needed columns, in `_NEEDED` order, from rows with these fields (every
    message query selects the repost and copy counts, if only as literal zeros)."""
    where = {name: i for i, name in enumerate(fields)}
    return operator.itemgetter(*(where[name] for name in _NEEDED))


def row_reader(result: Any) -> operator.itemgetter[Any]:
    """The column picker for every row of one result (see `stored_from_row`)."""
    return _getter(tuple(result.keys()))


def stored_from_row(row: Any, event: str, pick: operator.itemgetter[Any] | None = None) -> StoredMessage:
    # Positional access: Row attribute and mapping access cost more than the rest here.
    (network, network_id, uri, handle, name, text, created, permalink, reply_to, repost_of, hashtags,
     mentions, links, raw, id_, seq, status, starred, answered, pinned, question, copy_of, deleted,
     reposts, copies) = (pick or _getter(row._fields))(row)  # fmt: skip
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    message = Message(
        network=_NETWORKS[network],
        network_id=network_id,
        uri=uri,
        author_handle=handle,
        author_name=name,
        text=text,
        created_at=created,
        event=event,
        permalink=permalink,
        reply_to=reply_to,
        repost_of=repost_of,
        hashtags=_json_tuple(hashtags),
        mentions=_json_tuple(mentions),
        links=_json_tuple(links),
        raw=raw,
    )
    return StoredMessage(
        id=id_,
        seq=seq,
        message=message,
        moderation=_moderation(status, bool(starred), bool(answered), bool(pinned)),
        repost_count=int(reposts or 0),
        is_question=bool(question),
        copy_of=copy_of,
        copy_count=int(copies or 0),
        deleted=bool(deleted),
    )
