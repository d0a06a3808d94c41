"""History at scale: an index behind every filter, full-text search, kept counts, ids never reused.

- ``(column, created_at, id)`` indexes serve each equality filter in listing order (``type``
  had one); ``(created_at, id)`` serves the plain listing, date ranges and cursors both ways,
  which makes the foundation's ``created_at``-only index redundant.
- Search of prompt and negative prompt: SQLite gets an FTS5 table with external content (the
  rows stay in ``generations``; triggers keep the index in step; ``detail=none`` because only
  whole-word matches are asked of it, never phrases); PostgreSQL gets a generated ``tsvector`` column
  (``simple`` configuration: no stemming or stop words, the same words as SQLite) over the
  text with punctuation turned to spaces, behind a GIN index.
- ``generation_counts`` holds the number of rows per ``type``, kept by triggers, so an
  unfiltered ``total`` does not count a million rows (row triggers on SQLite; statement
  triggers with transition tables on PostgreSQL, so bulk loads update it once per statement).
- SQLite: ``generations`` is rebuilt with ``AUTOINCREMENT`` so that the id of a deleted newest
  row is never handed out again (PostgreSQL's sequence never reuses one).

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

_FILTER_INDEXES = {
    "ix_generations_operation_created": "operation",
    "ix_generations_engine_created": "engine",
    "ix_generations_model_created": "model",
}

_SQLITE_SEARCH = [
    """
    CREATE VIRTUAL TABLE generations_fts USING fts5(
        prompt, negative_prompt,
        content='generations', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0', detail=none
    )
    """,
    """
    CREATE TRIGGER generations_fts_insert AFTER INSERT ON generations BEGIN
        INSERT INTO generations_fts (rowid, prompt, negative_prompt)
        VALUES (new.id, new.prompt, new.negative_prompt);
    END
    """,
    """
    CREATE TRIGGER generations_fts_delete AFTER DELETE ON generations BEGIN
        INSERT INTO generations_fts (generations_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
    END
    """,
    """
    CREATE TRIGGER generations_fts_update AFTER UPDATE OF id, prompt, negative_prompt ON generations
    BEGIN
        INSERT INTO generations_fts (generations_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
        INSERT INTO generations_fts (rowid, prompt, negative_prompt)
        VALUES (new.id, new.prompt, new.negative_prompt);
    END
    """,
    "INSERT INTO generations_fts (generations_fts) VALUES ('rebuild')",
]

_SQLITE_COUNTS = [
    """
    CREATE TRIGGER generation_counts_insert AFTER INSERT ON generations BEGIN
        INSERT INTO generation_counts (type, total) VALUES (new.type, 1)
        ON CONFLICT (type) DO UPDATE SET total = total + 1;
    END
    """,
    """
    CREATE TRIGGER generation_counts_delete AFTER DELETE ON generations BEGIN
        UPDATE generation_counts SET total = total - 1 WHERE type = old.type;
    END
    """,
    """
    CREATE TRIGGER generation_counts_update AFTER UPDATE OF type ON generations
    WHEN old.type IS NOT new.type BEGIN
        UPDATE generation_counts SET total = total - 1 WHERE type = old.type;
        INSERT INTO generation_counts (type, total) VALUES (new.type, 1)
        ON CONFLICT (type) DO UPDATE SET total = total + 1;
    END
    """,
]

# Punctuation, symbols and spaces become spaces first, so that PostgreSQL's parser sees the
# same words as SQLite's unicode61 tokenizer ("text-to-image" is three words, "f/1.8" two).
_POSTGRESQL_SEARCH = [
    """
    ALTER TABLE generations ADD COLUMN search tsvector GENERATED ALWAYS AS (
        to_tsvector(
            'simple'::regconfig,
            regexp_replace(
                prompt || ' ' || coalesce(negative_prompt, ''),
                '[[:punct:][:space:][:cntrl:]]+', ' ', 'g'
            )
        )
    ) STORED
    """,
    "CREATE INDEX ix_generations_search ON generations USING gin (search)",
]

_POSTGRESQL_COUNTS = [
    """
    CREATE FUNCTION generation_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO generation_counts AS c (type, total)
        SELECT type, count(*) FROM new_rows GROUP BY type ORDER BY type
        ON CONFLICT (type) DO UPDATE SET total = c.total + excluded.total;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION generation_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE generation_counts AS c SET total = c.total - gone.n
        FROM (SELECT type, count(*) AS n FROM old_rows GROUP BY type) AS gone
        WHERE c.type = gone.type;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION generation_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE generation_counts AS c SET total = c.total - gone.n
        FROM (SELECT type, count(*) AS n FROM old_rows GROUP BY type) AS gone
        WHERE c.type = gone.type;
        INSERT INTO generation_counts AS c (type, total)
        SELECT type, count(*) FROM new_rows GROUP BY type ORDER BY type
        ON CONFLICT (type) DO UPDATE SET total = c.total + excluded.total;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER generation_counts_insert AFTER INSERT ON generations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION generation_counts_add()
    """,
    """
    CREATE TRIGGER generation_counts_delete AFTER DELETE ON generations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION generation_counts_remove()
    """,
    """
    CREATE TRIGGER generation_counts_update AFTER UPDATE ON generations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION generation_counts_move()
    """,
]


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    if _is_sqlite():
        with op.batch_alter_table(
            "generations", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_index("ix_generations_created_at")
    else:
        op.drop_index("ix_generations_created_at", table_name="generations")
    for name, column in _FILTER_INDEXES.items():
        op.create_index(name, "generations", [column, "created_at", "id"])

    op.create_table(
        "generation_counts",
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type"),
    )
    op.execute(
        "INSERT INTO generation_counts (type, total) SELECT type, count(*) FROM generations GROUP BY type"
    )
    if _is_sqlite():
        _run(_SQLITE_COUNTS)
        _run(_SQLITE_SEARCH)
    else:
        _run(_POSTGRESQL_COUNTS)
        _run(_POSTGRESQL_SEARCH)


def downgrade() -> None:
    if _is_sqlite():
        for trigger in ("generations_fts_insert", "generations_fts_delete", "generations_fts_update"):
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute("DROP TABLE generations_fts")
        for trigger in ("generation_counts_insert", "generation_counts_delete", "generation_counts_update"):
            op.execute(f"DROP TRIGGER {trigger}")
    else:
        op.execute("DROP INDEX ix_generations_search")
        op.execute("ALTER TABLE generations DROP COLUMN search")
        for trigger in ("generation_counts_insert", "generation_counts_delete", "generation_counts_update"):
            op.execute(f"DROP TRIGGER {trigger} ON generations")
        for function in ("generation_counts_add", "generation_counts_remove", "generation_counts_move"):
            op.execute(f"DROP FUNCTION {function}()")
    op.drop_table("generation_counts")
    for name in _FILTER_INDEXES:
        op.drop_index(name, table_name="generations")
    if _is_sqlite():
        with op.batch_alter_table(
            "generations", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ) as batch:
            batch.create_index("ix_generations_created_at", ["created_at"])
    else:
        op.create_index("ix_generations_created_at", "generations", ["created_at"])
