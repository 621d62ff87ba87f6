"""events and messages

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "messages",
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
        sa.Column("hashtags", sa.Text, nullable=False),
        sa.Column("mentions", sa.Text, nullable=False),
        sa.Column("links", sa.Text, nullable=False),
        sa.Column("raw", sa.Text),
        sa.UniqueConstraint("event_id", "uri", name="uq_messages_event_uri"),
        sa.UniqueConstraint("event_id", "seq", name="uq_messages_event_seq"),
    )
    # Partial: most messages are no repost, and an index entry per message would slow
    # every insert for nothing.
    op.create_index(
        "ix_messages_event_repost_of",
        "messages",
        ["event_id", "repost_of"],
        sqlite_where=sa.text("repost_of IS NOT NULL"),
        postgresql_where=sa.text("repost_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("events")
