"""change log, moderators, blocked authors, muted terms; questions and manual retweets

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("is_question", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("messages", sa.Column("copy_of", sa.String(500)))
    op.create_table(
        "changes",
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
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "blocked_authors",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("network", sa.String(20), primary_key=True),
        sa.Column("author_handle", sa.String(300), primary_key=True),
    )
    op.create_table(
        "muted_terms",
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("term", sa.String(200), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("muted_terms")
    op.drop_table("blocked_authors")
    op.drop_table("users")
    op.drop_table("changes")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("copy_of")
        batch.drop_column("is_question")
