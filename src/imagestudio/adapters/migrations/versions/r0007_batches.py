"""Batches: a task makes up to eight images (``count``), so its row lists them all.

``tasks.generation_ids`` holds every generation of a completed batch (a JSON list of ids;
``generation_id`` stays the first) and ``tasks.images`` every image a running batch has written
but not yet recorded (a JSON list of ``[root, key]``; ``image_key``/``image_root`` keep the first),
so a restart after a crash removes them all. ``task_events.generation_ids`` carries the ids of a
``completed`` event across the PostgreSQL event stream (comma-separated). Rows of single images
leave the new columns empty, so older rows read as before.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("generation_ids", sa.String(), nullable=True))
        batch.add_column(sa.Column("images", sa.String(), nullable=True))
    with op.batch_alter_table("task_events") as batch:
        batch.add_column(sa.Column("generation_ids", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_events") as batch:
        batch.drop_column("generation_ids")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("images")
        batch.drop_column("generation_ids")
