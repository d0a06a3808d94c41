"""Tasks and idempotency keys (``adapters/sql_tasks.py``, now ``adapters/sql/tasks.py``), as that
module defined them when migrations arrived.

A database made before Alembic by a release that already had tasks (``create_all``) holds these
tables: they are kept as they are, and only missing tables and indexes are created.

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


def _existing() -> tuple[set[str], set[str]]:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    indexes = {
        index["name"]
        for table in tables & {"tasks", "idempotency_keys"}
        for index in inspector.get_indexes(table)
    }
    return tables, {name for name in indexes if name}


def upgrade() -> None:
    tables, indexes = _existing()
    if "tasks" not in tables:
        op.create_table(
            "tasks",
            sa.Column("id", sa.String(64), nullable=False),
            sa.Column("operation", sa.String(32), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("progress", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("generation_id", sa.Integer(), nullable=True),
            sa.Column("error_code", sa.String(64), nullable=True),
            sa.Column("error_message", sa.String(), nullable=True),
            sa.Column("image_key", sa.String(255), nullable=True),
            sa.Column("image_root", sa.String(), nullable=True),
            sa.Column("owner", sa.String(300), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "ix_tasks_status" not in indexes:
        op.create_index("ix_tasks_status", "tasks", ["status"])
    if "ix_tasks_finished_at" not in indexes:
        op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])
    if "idempotency_keys" not in tables:
        op.create_table(
            "idempotency_keys",
            sa.Column("key", sa.String(255), nullable=False),
            sa.Column("fingerprint", sa.String(128), nullable=False),
            sa.Column("task_id", sa.String(64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "ix_idempotency_keys_created_at" not in indexes:
        op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("tasks")
