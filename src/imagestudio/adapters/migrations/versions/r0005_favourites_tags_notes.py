"""Favourites, tags and notes: what a person keeps about a generation, and the indexes that page it.

- ``generations`` gains ``favorite`` (false unless set), ``tags`` (a JSON list, in the order the
  user gave them: where a generation's tags are written) and ``notes``; an index
  ``(favorite, created_at, id)`` serves ``favorite=`` pages newest first, as the other equality
  filters are served.
- ``generation_tags`` (tag, created_at, generation_id): one row per tag of a generation, its
  primary key in the order of a one-tag page, so such a page (and its cursor) is a range of that
  key; ``created_at`` is the generation's, copied (it never changes). An index by generation
  finds a generation's rows when it changes or goes. SQLite keeps the table ``WITHOUT ROWID``
  (the rows live in the key's own B-tree).
- ``tag_counts`` (tag, total): how many generations carry each tag, so the tag list and the total
  of a one-tag filter read one row per tag instead of counting; a tag's row goes when its count
  falls to zero. ``favorite_counts`` (type, total): the favourites of each type, so the total of
  ``favorite=`` (with or without ``type=``) is read like ``generation_counts``.
- Triggers make the tag tables from ``generations.tags`` (and the favourite counts from
  ``favorite``), so whatever writes a generation (the server, a bulk import, a repair) keeps them
  right: on insert, on an update of ``tags`` (rows of removed tags go, those of added tags come)
  or ``favorite``, and on delete (every row of the generation goes). SQLite: row triggers, the
  tag counts kept by triggers on ``generation_tags``. PostgreSQL: statement triggers with
  transition tables on insert and delete (a bulk load updates the counts once per statement),
  row triggers on an update that changes ``tags`` or ``favorite``; the counts change in one
  upsert per statement, in key order, so two transactions never lock two count rows in opposite
  orders.
- PostgreSQL: ``generation_counts_move`` (migration ``0002``, run after every update of
  ``generations``) writes only the types whose count changes. Before, every update wrote the
  count of its type twice (minus one, plus one), so every change of tags or notes would have
  written, and waited on, the one row every new generation writes too.

Tags are unbounded text here: the domain bounds them (64 characters once trimmed; case-folding
may make up to three characters of one). Downgrading drops the columns, and with them every
favourite, tag and note.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_SQLITE = [
    """
    CREATE TRIGGER generation_tags_insert AFTER INSERT ON generations WHEN new.tags <> '[]' BEGIN
        INSERT OR IGNORE INTO generation_tags (tag, created_at, generation_id)
        SELECT value, new.created_at, new.id FROM json_each(new.tags);
    END
    """,
    """
    CREATE TRIGGER generation_tags_update AFTER UPDATE OF tags ON generations BEGIN
        DELETE FROM generation_tags WHERE generation_id = old.id
            AND tag NOT IN (SELECT value FROM json_each(new.tags));
        INSERT OR IGNORE INTO generation_tags (tag, created_at, generation_id)
        SELECT value, new.created_at, new.id FROM json_each(new.tags);
    END
    """,
    """
    CREATE TRIGGER generation_tags_delete AFTER DELETE ON generations WHEN old.tags <> '[]' BEGIN
        DELETE FROM generation_tags WHERE generation_id = old.id;
    END
    """,
    """
    CREATE TRIGGER tag_counts_insert AFTER INSERT ON generation_tags BEGIN
        INSERT INTO tag_counts (tag, total) VALUES (new.tag, 1)
        ON CONFLICT (tag) DO UPDATE SET total = total + 1;
    END
    """,
    """
    CREATE TRIGGER tag_counts_delete AFTER DELETE ON generation_tags BEGIN
        UPDATE tag_counts SET total = total - 1 WHERE tag = old.tag;
        DELETE FROM tag_counts WHERE tag = old.tag AND total <= 0;
    END
    """,
]
_SQLITE_FAVOURITES = [
    """
    CREATE TRIGGER favorite_counts_insert AFTER INSERT ON generations WHEN new.favorite BEGIN
        INSERT INTO favorite_counts (type, total) VALUES (new.type, 1)
        ON CONFLICT (type) DO UPDATE SET total = total + 1;
    END
    """,
    """
    CREATE TRIGGER favorite_counts_delete AFTER DELETE ON generations WHEN old.favorite BEGIN
        UPDATE favorite_counts SET total = total - 1 WHERE type = old.type;
    END
    """,
    """
    CREATE TRIGGER favorite_counts_update AFTER UPDATE OF favorite, type ON generations
    WHEN old.favorite IS NOT new.favorite OR (new.favorite AND old.type IS NOT new.type) BEGIN
        UPDATE favorite_counts SET total = total - 1 WHERE old.favorite AND type = old.type;
        INSERT INTO favorite_counts (type, total) SELECT new.type, 1 WHERE new.favorite
        ON CONFLICT (type) DO UPDATE SET total = total + 1;
    END
    """,
]
_SQLITE_TRIGGERS = (
    "generation_tags_insert",
    "generation_tags_update",
    "generation_tags_delete",
    "tag_counts_insert",
    "tag_counts_delete",
    "favorite_counts_insert",
    "favorite_counts_delete",
    "favorite_counts_update",
)

# The count changes of a statement, rows of (tag, +1 or -1), as one upsert in tag order; then,
# where counts can fall, the rows whose count fell to zero go (this transaction holds their locks).
_UPSERT = """
    INSERT INTO tag_counts AS c (tag, total)
    SELECT tag, sum(delta) FROM ({changes}) AS changes (tag, delta)
    GROUP BY tag HAVING sum(delta) <> 0 ORDER BY tag
    ON CONFLICT (tag) DO UPDATE SET total = c.total + excluded.total;
"""
_EMPTIED = """
    DELETE FROM tag_counts WHERE total <= 0
    AND tag IN (SELECT tag FROM ({changes}) AS changes (tag, delta));
"""


def _count(changes: str, *, falls: bool) -> str:
    return (_UPSERT + (_EMPTIED if falls else "")).format(changes=changes).strip()


_NEW_TAGS = (
    "SELECT tag, 1 FROM (SELECT DISTINCT t.tag, n.id FROM new_rows AS n,"
    " json_array_elements_text(n.tags) AS t (tag)) AS added"
)
_OLD_TAGS = (
    "SELECT tag, -1 FROM (SELECT DISTINCT t.tag, o.id FROM old_rows AS o,"
    " json_array_elements_text(o.tags) AS t (tag)) AS removed"
)
_MOVED_TAGS = (
    "SELECT tag, 1 FROM (SELECT DISTINCT json_array_elements_text(NEW.tags)) AS added (tag)"
    " UNION ALL SELECT tag, -1 FROM (SELECT DISTINCT json_array_elements_text(OLD.tags)) AS removed (tag)"
)

_POSTGRESQL = [
    f"""
    CREATE FUNCTION generation_tags_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO generation_tags (tag, created_at, generation_id)
        SELECT DISTINCT t.tag, n.created_at, n.id
        FROM new_rows AS n, json_array_elements_text(n.tags) AS t (tag)
        ON CONFLICT DO NOTHING;
        {_count(_NEW_TAGS, falls=False)}
        RETURN NULL;
    END
    $$
    """,  # noqa: S608 - built from this module's constants
    f"""
    CREATE FUNCTION generation_tags_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM generation_tags AS g USING old_rows AS o WHERE g.generation_id = o.id;
        {_count(_OLD_TAGS, falls=True)}
        RETURN NULL;
    END
    $$
    """,  # noqa: S608 - built from this module's constants
    f"""
    CREATE FUNCTION generation_tags_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM generation_tags WHERE generation_id = OLD.id
            AND tag NOT IN (SELECT json_array_elements_text(NEW.tags));
        INSERT INTO generation_tags (tag, created_at, generation_id)
        SELECT DISTINCT t.tag, NEW.created_at, NEW.id FROM json_array_elements_text(NEW.tags) AS t (tag)
        ON CONFLICT DO NOTHING;
        {_count(_MOVED_TAGS, falls=True)}
        RETURN NULL;
    END
    $$
    """,  # noqa: S608 - built from this module's constants
    """
    CREATE TRIGGER generation_tags_insert AFTER INSERT ON generations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION generation_tags_add()
    """,
    """
    CREATE TRIGGER generation_tags_delete AFTER DELETE ON generations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION generation_tags_remove()
    """,
    """
    CREATE TRIGGER generation_tags_update AFTER UPDATE OF tags ON generations
    FOR EACH ROW WHEN (OLD.tags::text IS DISTINCT FROM NEW.tags::text)
    EXECUTE FUNCTION generation_tags_move()
    """,
]

# The favourites per type: statement triggers on insert and delete, a row trigger on an update
# that moves a favourite, each one upsert in type order (counts at zero keep their row).
_FAVOURITE_UPSERT = """
    INSERT INTO favorite_counts AS c (type, total)
    SELECT type, sum(delta) FROM ({changes}) AS changes (type, delta)
    GROUP BY type HAVING sum(delta) <> 0 ORDER BY type
    ON CONFLICT (type) DO UPDATE SET total = c.total + excluded.total;
"""
_POSTGRESQL_FAVOURITES = [
    f"""
    CREATE FUNCTION favorite_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_FAVOURITE_UPSERT.format(changes="SELECT type, 1 FROM new_rows WHERE favorite").strip()}
        RETURN NULL;
    END
    $$
    """,  # noqa: S608 - built from this module's constants
    f"""
    CREATE FUNCTION favorite_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_FAVOURITE_UPSERT.format(changes="SELECT type, -1 FROM old_rows WHERE favorite").strip()}
        RETURN NULL;
    END
    $$
    """,  # noqa: S608 - built from this module's constants
    f"""
    CREATE FUNCTION favorite_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {
        _FAVOURITE_UPSERT.format(
            changes="SELECT OLD.type, -1 WHERE OLD.favorite UNION ALL SELECT NEW.type, 1 WHERE NEW.favorite"
        ).strip()
    }
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER favorite_counts_insert AFTER INSERT ON generations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION favorite_counts_add()
    """,
    """
    CREATE TRIGGER favorite_counts_delete AFTER DELETE ON generations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION favorite_counts_remove()
    """,
    """
    CREATE TRIGGER favorite_counts_update AFTER UPDATE OF favorite, type ON generations
    FOR EACH ROW WHEN (OLD.favorite IS DISTINCT FROM NEW.favorite
        OR (NEW.favorite AND OLD.type IS DISTINCT FROM NEW.type))
    EXECUTE FUNCTION favorite_counts_move()
    """,
]

# generation_counts_move of migration 0002, and the version that writes only the changed types
_COUNTS_MOVE_0002 = """
    CREATE OR REPLACE FUNCTION generation_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""
_COUNTS_MOVE_0005 = """
    CREATE OR REPLACE FUNCTION generation_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO generation_counts AS c (type, total)
        SELECT type, sum(n) FROM (
            SELECT type, 1 FROM new_rows UNION ALL SELECT type, -1 FROM old_rows
        ) AS changes (type, n)
        GROUP BY type HAVING sum(n) <> 0 ORDER BY type
        ON CONFLICT (type) DO UPDATE SET total = c.total + excluded.total;
        RETURN NULL;
    END
    $$
"""


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.add_column(
        "generations", sa.Column("favorite", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("generations", sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
    op.add_column("generations", sa.Column("notes", sa.String(), nullable=True))
    op.create_index("ix_generations_favorite_created", "generations", ["favorite", "created_at", "id"])
    op.create_table(
        "generation_tags",
        sa.Column("tag", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tag", "created_at", "generation_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_generation_tags_generation", "generation_tags", ["generation_id", "tag"])
    op.create_table(
        "tag_counts",
        sa.Column("tag", sa.String(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tag"),
    )
    op.create_table(
        "favorite_counts",
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type"),
    )
    statements = (
        [*_SQLITE, *_SQLITE_FAVOURITES]
        if _is_sqlite()
        else [*_POSTGRESQL, *_POSTGRESQL_FAVOURITES, _COUNTS_MOVE_0005]
    )
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if _is_sqlite():
        for trigger in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
    else:
        op.execute(_COUNTS_MOVE_0002)
        for kind in ("generation_tags", "favorite_counts"):
            for trigger in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER {kind}_{trigger} ON generations")
            for function in ("add", "remove", "move"):
                op.execute(f"DROP FUNCTION {kind}_{function}()")
    op.drop_table("favorite_counts")
    op.drop_table("tag_counts")
    op.drop_index("ix_generation_tags_generation", table_name="generation_tags")
    op.drop_table("generation_tags")
    op.drop_index("ix_generations_favorite_created", table_name="generations")
    for column in ("notes", "tags", "favorite"):
        op.drop_column("generations", column)
