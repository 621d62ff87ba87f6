"""What the live sources keep in the store: cursors, states, gaps, upstream edits and deletes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from backchannel.core.models import Change, Message
from backchannel.core.questions import is_question
from backchannel.store.moderation import ModerationMixin
from backchannel.store.rows import aware, json_list, next_seq, save_cursor
from backchannel.store.schema import messages, source_cursors, source_gaps, source_states


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str
    event: str
    state: str
    detail: str | None
    last_error: str | None
    next_try: datetime | None
    collected: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Gap:
    source: str
    gap_from: datetime
    gap_to: datetime
    reason: str


class SourceMixin(ModerationMixin):
    def cursor(self, source: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(source_cursors.c.cursor).where(source_cursors.c.source == source)
            ).scalar_one_or_none()

    def apply_upstream(
        self,
        event: str,
        *,
        edits: Sequence[Message] = (),
        deletes: Sequence[str] = (),
        cursor: tuple[str, str] | None = None,
        actor: str = "upstream",
    ) -> list[Change]:
        """Apply edits (by URI, new text and entities) and deletes (by URI) that a network
        reported, each numbered in the event's sequence like a moderation change."""
        info = self.event(event, create=False)
        done: list[tuple[int, int, str]] = []
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if cursor is not None:
                save_cursor(conn, info.id, *cursor)
            for edit in edits:
                message_id = conn.execute(
                    sa.update(messages)
                    .where(messages.c.event_id == info.id, messages.c.uri == edit.uri)
                    .values(
                        text=edit.text,
                        hashtags=json_list(edit.hashtags),
                        mentions=json_list(edit.mentions),
                        links=json_list(edit.links),
                        is_question=is_question(edit.text),
                        edited_at=now,
                        raw=edit.raw,
                    )
                    .returning(messages.c.id)
                ).scalar_one_or_none()
                if message_id is not None:
                    done.append((next_seq(conn, info.id), message_id, "edit"))
            for uri in deletes:
                message_id = conn.execute(
                    sa.update(messages)
                    .where(
                        messages.c.event_id == info.id, messages.c.uri == uri, messages.c.deleted.is_(False)
                    )
                    .values(deleted=True, pinned=False)
                    .returning(messages.c.id)
                ).scalar_one_or_none()
                if message_id is not None:
                    done.append((next_seq(conn, info.id), message_id, "delete"))
            for seq, message_id, action in done:
                self._log(conn, info.id, seq, action, actor, message_id=message_id)
        return [
            Change(
                seq=seq, action=action, actor=actor, created_at=now, message=self.message(event, message_id)
            )
            for seq, message_id, action in done
        ]

    def set_source_state(
        self,
        event: str,
        source: str,
        state: str,
        *,
        detail: str | None = None,
        last_error: str | None = None,
        next_try: datetime | None = None,
        collected: int = 0,
    ) -> None:
        info = self.event(event)
        values = {
            "event_id": info.id,
            "state": state,
            "detail": detail,
            "last_error": last_error,
            "next_try": next_try,
            "updated_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(source_states)
                .where(source_states.c.source == source)
                .values(collected=source_states.c.collected + collected, **values)
            )
            if not updated.rowcount:
                conn.execute(sa.insert(source_states).values(source=source, collected=collected, **values))

    def source_states(self, event: str | None = None) -> list[SourceStatus]:
        from backchannel.store.schema import events

        query = (
            sa.select(source_states, events.c.name)
            .join(events, events.c.id == source_states.c.event_id)
            .order_by(source_states.c.source)
        )
        if event is not None:
            query = query.where(events.c.name == event)
        with self.engine.connect() as conn:
            return [
                SourceStatus(
                    source=row.source,
                    event=row.name,
                    state=row.state,
                    detail=row.detail,
                    last_error=row.last_error,
                    next_try=aware(row.next_try) if row.next_try else None,
                    collected=row.collected,
                    updated_at=aware(row.updated_at),
                )
                for row in conn.execute(query)
            ]

    def record_gap(self, event: str, source: str, gap_from: datetime, gap_to: datetime, reason: str) -> None:
        info = self.event(event)
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(source_gaps).values(
                    source=source, event_id=info.id, gap_from=gap_from, gap_to=gap_to, reason=reason
                )
            )

    def gaps(self, event: str) -> list[Gap]:
        info = self.event(event, create=False)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(source_gaps)
                .where(source_gaps.c.event_id == info.id)
                .order_by(source_gaps.c.gap_from)
            ).all()
        return [Gap(r.source, aware(r.gap_from), aware(r.gap_to), r.reason) for r in rows]
