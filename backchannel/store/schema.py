"""Table definitions for SQLAlchemy Core queries.

The migrations in `migrations/versions` create these tables; this module mirrors the
head revision so queries can be written with Core constructs. A test checks that the
two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    # Changes whenever the history that sequence numbers count from is lost (a new
    # database, a wiped event): a client holding another epoch must reload.
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("premoderation", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("network", sa.String(20), nullable=False),
    sa.Column("network_id", sa.String(200), nullable=False),
    sa.Column("uri", sa.String(500), nullable=False),
    sa.Column("author_handle", sa.String(300), nullable=False),
    sa.Column("author_name", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("permalink", sa.Text),
    sa.Column("reply_to", sa.String(500)),
    sa.Column("repost_of", sa.String(500)),
    sa.Column("hashtags", sa.Text, nullable=False),  # JSON arrays
    sa.Column("mentions", sa.Text, nullable=False),
    sa.Column("links", sa.Text, nullable=False),
    sa.Column("raw", sa.Text),
    sa.Column("status", sa.String(16), nullable=False, server_default="new"),
    sa.Column("starred", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("answered", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_question", sa.Boolean, nullable=False, server_default=sa.false()),
    # The message a manual "RT @x: …" copy quotes (native reposts use repost_of).
    sa.Column("copy_of", sa.String(500)),
    # Applied from upstream: a deleted message stays stored (the log is the truth) but
    # is shown nowhere; an edited one keeps its latest text.
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("edited_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("event_id", "uri", name="uq_messages_event_uri"),
    sa.UniqueConstraint("event_id", "seq", name="uq_messages_event_seq"),
    sa.Index(
        "ix_messages_event_repost_of",
        "event_id",
        "repost_of",
        sqlite_where=sa.text("repost_of IS NOT NULL"),
        postgresql_where=sa.text("repost_of IS NOT NULL"),
    ),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id")),
    sa.Column("subject", sa.Text),
    sa.Column("action_id", sa.String(100)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("event_id", "seq", name="uq_changes_event_seq"),
    sa.UniqueConstraint("event_id", "action_id", name="uq_changes_event_action_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(200), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

blocked_authors = sa.Table(
    "blocked_authors",
    metadata,
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), primary_key=True),
    sa.Column("network", sa.String(20), primary_key=True),
    sa.Column("author_handle", sa.String(300), primary_key=True),
)

muted_terms = sa.Table(
    "muted_terms",
    metadata,
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), primary_key=True),
    sa.Column("term", sa.String(200), primary_key=True),
)

source_cursors = sa.Table(
    "source_cursors",
    metadata,
    sa.Column("source", sa.String(300), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("cursor", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

source_states = sa.Table(
    "source_states",
    metadata,
    sa.Column("source", sa.String(300), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("next_try", sa.DateTime(timezone=True)),
    sa.Column("collected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

source_gaps = sa.Table(
    "source_gaps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(300), nullable=False),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("gap_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gap_to", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# Moderators' logins. The cookie carries a random session id; only its SHA-256 is
# stored, so a copy of the database holds no usable session.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sessions_user_id", "user_id"),
)
