"""source cursors and states, recorded gaps; upstream edits and deletes

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("messages", sa.Column("edited_at", sa.DateTime(timezone=True)))
    op.create_table(
        "source_cursors",
        sa.Column("source", sa.String(300), primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "source_states",
        sa.Column("source", sa.String(300), primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("next_try", sa.DateTime(timezone=True)),
        sa.Column("collected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "source_gaps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
        sa.Column("gap_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gap_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("source_gaps")
    op.drop_table("source_states")
    op.drop_table("source_cursors")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("edited_at")
        batch.drop_column("deleted")
