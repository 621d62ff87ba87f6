"""Moderation writes.

Every change is applied and logged in one transaction, numbered in the event's
sequence (the same counter as messages), so a dashboard that resumes replays
moderation in order with the messages. An `action_id` makes a retried request
apply once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa

from backchannel.core.models import Change, Moderation, Status
from backchannel.core.moderation import Action, EventAction, WallRules, apply
from backchannel.errors import StoreError
from backchannel.store.queries import QueryMixin
from backchannel.store.rows import lock_event, next_seq
from backchannel.store.schema import blocked_authors, changes, events, messages, muted_terms


class ModerationMixin(QueryMixin):
    def moderate(
        self, event: str, message_id: int, action: Action, *, actor: str, action_id: str | None = None
    ) -> Change:
        info = self.event(event, create=False)
        with self.engine.begin() as conn:
            # Lock first: SQLite cannot upgrade a read transaction to a write, and on
            # PostgreSQL two moderators must not both act on the state they read.
            lock_event(conn, info.id)
            if action_id and (done := self._logged(conn, info.id, action_id)) is not None:
                return replace(self._change_from_row(done, event), replayed=True)
            row = conn.execute(
                sa.select(
                    messages.c.status, messages.c.starred, messages.c.answered, messages.c.pinned
                ).where(messages.c.event_id == info.id, messages.c.id == message_id)
            ).one_or_none()
            if row is None:
                raise StoreError(f"no message {message_id} in event {event!r}")
            after = apply(Moderation(Status(row.status), row.starred, row.answered, row.pinned), action)
            seq = next_seq(conn, info.id)
            if after.pinned:
                # The wall features one message: pinning one unpins the others.
                conn.execute(
                    sa.update(messages)
                    .where(messages.c.event_id == info.id, messages.c.pinned.is_(True))
                    .values(pinned=False)
                )
            conn.execute(
                sa.update(messages)
                .where(messages.c.id == message_id)
                .values(
                    status=after.status.value,
                    starred=after.starred,
                    answered=after.answered,
                    pinned=after.pinned,
                )
            )
            self._log(conn, info.id, seq, action.value, actor, message_id=message_id, action_id=action_id)
        return Change(
            seq=seq,
            action=action.value,
            actor=actor,
            created_at=datetime.now(UTC),
            message=self.message(event, message_id),
            action_id=action_id,
        )

    def moderate_event(
        self,
        event: str,
        action: EventAction,
        subject: str = "",
        *,
        actor: str,
        action_id: str | None = None,
    ) -> Change:
        """Block/unblock an author (`subject` = "network:handle"), mute/unmute a term, or
        switch premoderation."""
        info = self.event(event, create=False)
        subject = subject.strip()
        with self.engine.begin() as conn:
            # Lock first: SQLite cannot upgrade a read transaction to a write, and on
            # PostgreSQL two moderators must not both act on the state they read.
            lock_event(conn, info.id)
            if action_id and (done := self._logged(conn, info.id, action_id)) is not None:
                return replace(self._change_from_row(done, event), replayed=True)
            if action in (EventAction.BLOCK, EventAction.UNBLOCK):
                network, _, handle = subject.partition(":")
                if not network or not handle:
                    raise StoreError("an author is named network:handle")
                subject = f"{network}:{handle.lstrip('@').lower()}"
                key = {"event_id": info.id, "network": network, "author_handle": handle.lstrip("@").lower()}
                conn.execute(
                    sa.delete(blocked_authors).where(*(blocked_authors.c[k] == v for k, v in key.items()))
                )
                if action is EventAction.BLOCK:
                    conn.execute(sa.insert(blocked_authors).values(**key))
            elif action in (EventAction.MUTE, EventAction.UNMUTE):
                if not subject or len(subject) > 200:
                    raise StoreError("a muted term has 1 to 200 characters")
                conn.execute(
                    sa.delete(muted_terms).where(
                        muted_terms.c.event_id == info.id, muted_terms.c.term == subject
                    )
                )
                if action is EventAction.MUTE:
                    conn.execute(sa.insert(muted_terms).values(event_id=info.id, term=subject))
            else:
                conn.execute(
                    sa.update(events)
                    .where(events.c.id == info.id)
                    .values(premoderation=action is EventAction.PREMODERATION_ON)
                )
                subject = ""
            seq = next_seq(conn, info.id)
            self._log(conn, info.id, seq, action.value, actor, subject=subject or None, action_id=action_id)
        return Change(
            seq=seq,
            action=action.value,
            actor=actor,
            created_at=datetime.now(UTC),
            subject=subject or None,
            action_id=action_id,
        )

    def wall_rules(self, event: str) -> WallRules:
        info = self.event(event, create=False)
        with self.engine.connect() as conn:
            blocked = conn.execute(
                sa.select(blocked_authors.c.network, blocked_authors.c.author_handle).where(
                    blocked_authors.c.event_id == info.id
                )
            ).all()
            muted = conn.execute(
                sa.select(muted_terms.c.term)
                .where(muted_terms.c.event_id == info.id)
                .order_by(muted_terms.c.term)
            ).scalars()
            return WallRules(
                premoderation=info.premoderation,
                blocked=frozenset((n, h) for n, h in blocked),
                muted=tuple(muted),
            )

    def _logged(self, conn: sa.Connection, event_id: int, action_id: str) -> sa.Row | None:  # type: ignore[type-arg]
        return conn.execute(
            sa.select(changes).where(changes.c.event_id == event_id, changes.c.action_id == action_id)
        ).one_or_none()

    @staticmethod
    def _log(
        conn: sa.Connection,
        event_id: int,
        seq: int,
        action: str,
        actor: str,
        *,
        message_id: int | None = None,
        subject: str | None = None,
        action_id: str | None = None,
    ) -> None:
        conn.execute(
            sa.insert(changes).values(
                event_id=event_id,
                seq=seq,
                action=action,
                actor=actor,
                message_id=message_id,
                subject=subject,
                action_id=action_id,
                created_at=datetime.now(UTC),
            )
        )
