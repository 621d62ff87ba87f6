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
    sa.UniqueConstraint("event_id", "uri", name="uq_messages_event_uri"),
    sa.UniqueConstraint("event_id", "seq", name="uq_messages_event_seq"),
    sa.Index("ix_messages_event_repost_of", "event_id", "repost_of"),
)
