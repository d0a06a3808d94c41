"""Lineage: where a generation came from, in columns the ``sourceId`` history filter can use.

- ``generations.source_id``: the generation an image-to-image or upscale was made from, copied
  from ``parameters.sourceId`` (which stays what the server reads). Rows already present get it
  here, from their JSON, so what was made from an image before this migration is found too.
- ``generations.rerun_of``: the generation a re-run made again (``POST /api/history/{id}/rerun``);
  older rows are no re-runs.
- Both are 64-bit, as the ids a filter may name (the ``id`` column itself is narrower on
  PostgreSQL: a bigger id names no generation, and finds none).
- ``sourceId=ID`` matches either column. Each has a partial index ``(column, created_at, id)``
  over the rows that have one (most rows have neither, and take no room in them), so a page of
  what was made from one image is a union of two short index ranges, sorted.

Downgrading drops both columns and their indexes: ``parameters.sourceId`` stays in the JSON, and
which generations were re-runs is forgotten.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = (("source_id", "ix_generations_source_created"), ("rerun_of", "ix_generations_rerun_created"))

# Only a JSON integer is an id (an old row's null or a stray value copies as nothing).
_SQLITE_COPY = """
    UPDATE generations SET source_id = json_extract(parameters, '$.sourceId')
    WHERE json_type(parameters, '$.sourceId') = 'integer'
"""
_POSTGRESQL_COPY = """
    UPDATE generations SET source_id = (parameters ->> 'sourceId')::bigint
    WHERE json_typeof(parameters -> 'sourceId') = 'number'
    AND (parameters ->> 'sourceId') ~ '^[0-9]{1,18}$'
"""


def upgrade() -> None:
    for column, _ in _COLUMNS:
        op.add_column("generations", sa.Column(column, sa.BigInteger(), nullable=True))
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(_SQLITE_COPY if sqlite else _POSTGRESQL_COPY)
    for column, index in _COLUMNS:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            index, "generations", [column, "created_at", "id"], sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    for column, index in reversed(_COLUMNS):
        op.drop_index(index, table_name="generations")
        op.drop_column("generations", column)
