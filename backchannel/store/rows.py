"""Row helpers shared by the store's modules: conversions and the event lock."""

from __future__ import annotations

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


def stored_from_row(row: Any, event: str) -> StoredMessage:
    m = row._mapping
    message = Message(
        network=Network(m["network"]),
        network_id=m["network_id"],
        uri=m["uri"],
        author_handle=m["author_handle"],
        author_name=m["author_name"],
        text=m["text"],
        created_at=aware(m["created_at"]),
        event=event,
        permalink=m["permalink"],
        reply_to=m["reply_to"],
        repost_of=m["repost_of"],
        hashtags=tuple(orjson.loads(m["hashtags"])),
        mentions=tuple(orjson.loads(m["mentions"])),
        links=tuple(orjson.loads(m["links"])),
        raw=m["raw"],
    )
    moderation = Moderation(
        status=Status(m["status"]),
        starred=bool(m["starred"]),
        answered=bool(m["answered"]),
        pinned=bool(m["pinned"]),
    )
    return StoredMessage(
        id=m["id"],
        seq=m["seq"],
        message=message,
        moderation=moderation,
        repost_count=int(m.get("repost_count") or 0),
        is_question=bool(m["is_question"]),
        copy_of=m["copy_of"],
        copy_count=int(m.get("copy_count") or 0),
        deleted=bool(m.get("deleted")),
    )
