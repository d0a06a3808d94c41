"""Task events: the cluster's one event stream on PostgreSQL (``adapters/sql/events.py``).

Every task event is a row; its increasing ``id`` is the ``seq`` every server's WebSocket sends,
replays ``?after=`` from and announces with ``NOTIFY``. Rows are pruned in the background (the
newest kept events, a maximum age), so the table stays small. The table is created on SQLite too,
where nothing writes it (the desktop stream stays in memory): one schema on both databases.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("generation_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_events_task_id", "task_events", ["task_id", "id"])
    op.create_index("ix_task_events_created_at", "task_events", ["created_at"])


def downgrade() -> None:
    op.drop_table("task_events")
