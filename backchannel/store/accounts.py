"""Moderator accounts and their login sessions.

A session is a row keyed by the SHA-256 of the random id in the browser's cookie, so
every instance sees the same sessions and ending one (logout, a password change,
`user remove`) takes effect everywhere at the next request. A session is live while
it has been used within the idle timeout and is younger than its lifetime; the
caller passes both, and the time, so the rule is the caller's to set (and to test).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from backchannel.errors import StoreError
from backchannel.store.rows import aware
from backchannel.store.schema import sessions, users


@dataclass(frozen=True, slots=True)
class SessionRules:
    idle: timedelta
    lifetime: timedelta
    # `last_seen` is written at most this often: a read per request, not a write.
    touch_every: timedelta

    def live(self, now: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(sessions.c.last_seen > now - self.idle, sessions.c.created_at > now - self.lifetime)


@dataclass(frozen=True, slots=True)
class SessionRow:
    user: str
    csrf: str
    created_at: datetime


class AccountMixin:
    if TYPE_CHECKING:
        engine: sa.Engine

    def add_user(self, username: str, password_hash: str) -> None:
        """Add a moderator, or set their password: that ends every session they have."""
        with self.engine.begin() as conn:
            user_id = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
            if user_id is not None:
                conn.execute(
                    sa.update(users).where(users.c.id == user_id).values(password_hash=password_hash)
                )
                conn.execute(sa.delete(sessions).where(sessions.c.user_id == user_id))
            else:
                conn.execute(
                    sa.insert(users).values(
                        username=username, password_hash=password_hash, created_at=datetime.now(UTC)
                    )
                )

    def remove_user(self, username: str) -> bool:
        """Remove a moderator and their sessions; False if there was none of that name."""
        with self.engine.begin() as conn:
            user_id = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
            if user_id is None:
                return False
            conn.execute(sa.delete(sessions).where(sessions.c.user_id == user_id))
            conn.execute(sa.delete(users).where(users.c.id == user_id))
            return True

    def password_hash(self, username: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(users.c.password_hash).where(users.c.username == username)
            ).scalar_one_or_none()

    # -- sessions ----------------------------------------------------------------------

    def start_session(
        self, key_hash: str, username: str, csrf: str, *, now: datetime, rules: SessionRules
    ) -> None:
        """Record a new login; sessions past their time (anyone's) are cleared on the way,
        so the table holds no more than the live ones and the last few hours' logins."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sessions).where(sa.not_(rules.live(now))))
            user_id = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
            if user_id is None:
                raise StoreError(f"no moderator named {username!r}")
            conn.execute(
                sa.insert(sessions).values(
                    key_hash=key_hash, user_id=user_id, csrf=csrf, created_at=now, last_seen=now
                )
            )

    def session(self, key_hash: str, *, now: datetime, rules: SessionRules) -> SessionRow | None:
        """The live session with this key, marked as used now; None if it ended or expired."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users.c.username, sessions.c.csrf, sessions.c.created_at, sessions.c.last_seen)
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.key_hash == key_hash, rules.live(now))
            ).one_or_none()
        if row is None:
            return None
        if aware(row.last_seen) <= now - rules.touch_every:
            # A write transaction of its own: SQLite cannot turn the read above into a write
            # once another writer has committed.
            with self.engine.begin() as conn:
                conn.execute(sa.update(sessions).where(sessions.c.key_hash == key_hash).values(last_seen=now))
        return SessionRow(row.username, row.csrf, aware(row.created_at))

    def live_sessions(self, key_hashes: Collection[str], *, now: datetime, rules: SessionRules) -> set[str]:
        """Which of these sessions are still live (without marking them used)."""
        if not key_hashes:
            return set()
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(sessions.c.key_hash).where(sessions.c.key_hash.in_(key_hashes), rules.live(now))
                ).scalars()
            )

    def end_session(self, key_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sessions).where(sessions.c.key_hash == key_hash))

    def end_sessions(self, username: str) -> int:
        """End every session of a moderator (logout ends them all); how many there were."""
        with self.engine.begin() as conn:
            user_id = sa.select(users.c.id).where(users.c.username == username).scalar_subquery()
            return conn.execute(sa.delete(sessions).where(sessions.c.user_id == user_id)).rowcount
