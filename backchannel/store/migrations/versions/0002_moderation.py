"""moderation state on messages and premoderation on events

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN works on SQLite too, without rebuilding the tables.
    op.add_column("events", sa.Column("premoderation", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("messages", sa.Column("status", sa.String(16), nullable=False, server_default="new"))
    for name in ("starred", "answered", "pinned"):
        op.add_column("messages", sa.Column(name, sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        for name in ("pinned", "answered", "starred", "status"):
            batch.drop_column(name)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("premoderation")
