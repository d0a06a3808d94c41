"""Migrations: new databases match the models, foundation databases keep every row, databases a
newer imagestudio upgraded are refused, and servers starting together migrate once."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import bindparam, insert, inspect, select, text
from sqlmodel import SQLModel

import imagestudio.adapters.sql.tasks  # noqa: F401 - its tables belong to the compared metadata
from imagestudio.adapters import migrations
from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, SqlSettingsRepository
from imagestudio.adapters.sql.history import _parameters, _shape, _statements, _to_values
from imagestudio.adapters.sql.tables import GENERATIONS
from imagestudio.cli import main
from imagestudio.domain.errors import IncompatibleDatabase
from imagestudio.domain.model import (
    Generation,
    GenerationPatch,
    HistoryQuery,
    Operation,
    Settings,
    TagQuery,
    search_terms,
)
from tests.adapters.test_repository_contract import make_generation
from tests.databases import PostgresServer

pytestmark = pytest.mark.anyio

FOUNDATION_DUMP = Path(__file__).parent / "data" / "foundation.sql"

# The foundation's create_all() on PostgreSQL, as SQLAlchemy emitted it for the models of commit 2fb09d3.
FOUNDATION_POSTGRESQL = """
CREATE TABLE generations (
    id SERIAL NOT NULL, type VARCHAR(16) NOT NULL, operation VARCHAR(32) NOT NULL,
    prompt VARCHAR NOT NULL, negative_prompt VARCHAR, parameters JSON NOT NULL, seed BIGINT,
    width INTEGER NOT NULL, height INTEGER NOT NULL, file_key VARCHAR(255) NOT NULL,
    storage_root VARCHAR NOT NULL, remote_url VARCHAR, task_id VARCHAR(64) NOT NULL,
    engine VARCHAR(32) NOT NULL, model VARCHAR(200), cost FLOAT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (id), UNIQUE (file_key)
);
CREATE INDEX ix_generations_created_at ON generations (created_at);
CREATE INDEX ix_generations_created_id ON generations (created_at, id);
CREATE INDEX ix_generations_task_id ON generations (task_id);
CREATE INDEX ix_generations_type_created ON generations (type, created_at, id);
CREATE TABLE settings (key VARCHAR(64) NOT NULL, value JSON NOT NULL, PRIMARY KEY (key));
"""

# Tables, columns and indexes the migrations add outside the models, on purpose (see migration 0002).
_UNMODELLED = (
    "generations_fts",
    "alembic_version",
    "search",
    "ix_generations_search",
    "generation_words",  # PostgreSQL only (migration 0004)
)


def _foundation_rows(url: str, kind: str, request: pytest.FixtureRequest) -> None:
    """Fill a database with the foundation schema and its rows (from the real foundation's dump)."""
    dump = FOUNDATION_DUMP.read_text()
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.executescript(dump)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    inserts = [line for line in dump.splitlines() if line.startswith('INSERT INTO "generations"')]
    settings = """INSERT INTO settings VALUES
        ('storage_path', '"./my-images"'), ('default_width', '768'), ('default_cfg_scale', '9.5');"""
    statements = [FOUNDATION_POSTGRESQL, *inserts, settings, "SELECT setval('generations_id_seq', 6)"]
    server.execute(url, "\n".join(statements))


def _rows(db: SqlDatabase, table: str) -> list[dict[str, Any]]:
    with db.engine.connect() as connection:
        columns = (
            "id, type, operation, prompt, negative_prompt, seed, width, height, file_key, task_id, engine"
        )
        order = "id" if table == "generations" else "key"
        selected = columns if table == "generations" else "key"
        rows = connection.execute(text(f"SELECT {selected} FROM {table} ORDER BY {order}"))  # noqa: S608 - constants
        return [dict(row._mapping) for row in rows]


def _include(name: str | None, type_: str, *_: Any) -> bool:
    return not (name or "").startswith(_UNMODELLED)


@pytest.fixture
def database(sql_url: str) -> Iterator[SqlDatabase]:
    db = SqlDatabase(sql_url)
    yield db
    db.dispose()


def test_the_revisions_form_one_chain_with_one_head() -> None:
    script = migrations.script_directory()
    assert script.get_heads() == [migrations.head_revision()]
    chain = [revision.revision for revision in script.walk_revisions("base", "heads")]
    assert chain[-1] == migrations.FOUNDATION_REVISION
    assert len(chain) == len(set(chain))


def test_a_new_database_is_migrated_to_exactly_what_the_models_say(database: SqlDatabase) -> None:
    assert database.upgrade_schema() == migrations.head_revision()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_name": _include, "compare_type": True}
        )
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
    assert database.schema_state().up_to_date


def test_upgrading_twice_changes_nothing_and_downgrading_to_base_removes_everything(
    database: SqlDatabase,
) -> None:
    database.upgrade_schema()
    assert database.upgrade_schema() == migrations.head_revision()
    with database.migration_transaction() as connection:
        migrations.downgrade(connection, "base")
    with database.engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version", "sqlite_sequence"}
    assert database.upgrade_schema() == migrations.head_revision()


async def test_a_foundation_database_is_adopted_and_keeps_every_row(
    sql_url: str, request: pytest.FixtureRequest
) -> None:
    _foundation_rows(sql_url, "sqlite" if sql_url.startswith("sqlite") else "postgresql", request)
    db = SqlDatabase(sql_url)
    try:
        before = _rows(db, "generations"), _rows(db, "settings")
        assert db.schema_state().foundation
        assert db.upgrade_schema() == migrations.head_revision()
        assert (_rows(db, "generations"), _rows(db, "settings")) == before

        repository = SqlGenerationRepository(db)
        page = await repository.list(HistoryQuery())
        assert [g.id for g in page.items] == [5, 4, 3, 2, 1]
        assert page.total == 5
        first = await repository.get(1)
        assert first is not None
        assert first.created_at == dt.datetime(2026, 1, 2, 10, 1, 0, 123456, tzinfo=dt.UTC)
        assert first.negative_prompt == "blurry, low quality"
        assert (await repository.list(HistoryQuery(type="video"))).total == 1
        assert [g.id for g in (await repository.list(HistoryQuery(q="sunset red"))).items] == [4, 3, 1]
        assert [g.id for g in (await repository.list(HistoryQuery(q="cafe"))).items] == []
        assert [g.id for g in (await repository.list(HistoryQuery(q="café NEÓN"))).items] == [2]
        assert [g.id for g in (await repository.list(HistoryQuery(operation=Operation.UPSCALE))).items] == [4]
        # the foundation's image-to-image of 1 and upscale of 3 (parameters.sourceId), found by 0008
        assert [g.id for g in (await repository.list(HistoryQuery(source_id=1))).items] == [3]
        assert [g.id for g in (await repository.list(HistoryQuery(source_id=3))).items] == [4]
        assert (await repository.list(HistoryQuery(source_id=4))).total == 0
        assert (await SqlSettingsRepository(db).get()) == Settings(
            storage_path="./my-images", default_width=768, default_cfg_scale=9.5
        )
        newest = page.items[0]
        copy = replace(newest, id=None, image=replace(newest.image, key="2026-01-03/new.jpg"), task_id="new")
        added = await repository.add(copy)
        assert added.id is not None
        assert added.id > 5  # after the newest row; SQLite's foundation schema forgot its deleted 6
    finally:
        db.dispose()


def test_a_database_a_newer_imagestudio_upgraded_is_refused(database: SqlDatabase) -> None:
    database.upgrade_schema()
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    state = database.schema_state()
    assert state.unknown == ("9999",)
    assert "newer" in state.describe()
    with pytest.raises(IncompatibleDatabase) as caught:
        database.upgrade_schema()
    assert "9999" in caught.value.message
    assert "Upgrade imagestudio" in caught.value.message
    assert caught.value.code == "DATABASE_ERROR"


def test_a_generations_table_imagestudio_did_not_make_is_refused(database: SqlDatabase) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE generations (name VARCHAR(10))"))
    with pytest.raises(IncompatibleDatabase):
        database.upgrade_schema()


def test_servers_starting_together_migrate_once(sql_url: str) -> None:
    databases = [SqlDatabase(sql_url) for _ in range(4)]
    results: list[object] = []
    start = threading.Barrier(len(databases))

    def upgrade(db: SqlDatabase) -> None:
        start.wait()
        try:
            results.append(db.upgrade_schema())
        except Exception as error:  # collected, then asserted on
            results.append(error)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [migrations.head_revision()] * len(databases)
    with databases[0].engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    for db in databases:
        db.dispose()


def test_connections_opening_a_fresh_sqlite_file_together_all_get_in(tmp_path: Path) -> None:
    # Turning a new file to WAL takes an exclusive lock that SQLite refuses at once ("database is
    # locked", no busy wait) while another connection holds any lock: servers starting together
    # on a fresh data dir failed about one time in ten (a CI run did).
    failures: list[BaseException] = []
    for attempt in range(25):
        databases = [SqlDatabase(f"sqlite:///{tmp_path}/fresh-{attempt}.db") for _ in range(6)]
        start = threading.Barrier(len(databases))

        def connect(db: SqlDatabase, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                with db.engine.connect() as connection:
                    assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            except Exception as error:  # collected, then asserted on
                failures.append(error)

        threads = [threading.Thread(target=connect, args=(db,)) for db in databases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for db in databases:
            db.dispose()
    assert failures == []


def test_the_cli_upgrades_shows_the_revision_and_refuses_a_newer_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IMAGESTUDIO_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    assert main(["db", "current", "--data-dir", str(data)]) == 0
    assert "no database yet" in capsys.readouterr().out
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    assert f"at revision {migrations.head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "--data-dir", str(data)]) == 0
    assert "up to date" in capsys.readouterr().out

    with sqlite3.connect(data / "imagestudio.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("imagestudio: DATABASE_ERROR: ")
    assert "9999" in error
    assert "Traceback" not in error
    assert main(["serve", "--data-dir", str(data), "--port", "0"]) == 1
    assert "9999" in capsys.readouterr().err


def test_the_cli_adopts_a_foundation_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGESTUDIO_DATABASE_URL", f"sqlite:///{tmp_path / 'old.db'}")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.executescript(FOUNDATION_DUMP.read_text())
    assert main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    with sqlite3.connect(tmp_path / "old.db") as connection:
        assert connection.execute("SELECT count(*) FROM generations").fetchone() == (5,)
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
            migrations.head_revision(),
        )


_SEARCH_PROMPTS = [
    ("a red castle at dusk", "blurry, red"),
    ("Castle of glass, 4K", None),
    ("a quiet café in the rain", "text"),
    ("text-to-image of a golden castle", None),
    ("RED red red", "castle"),
    ("a lighthouse, watercolor", "low quality"),
]


def _word_counts(db: SqlDatabase) -> dict[str, int]:
    """``generation_words`` without its zeros (PostgreSQL)."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT word, total FROM generation_words WHERE total <> 0"))
        return {row.word: row.total for row in rows}


def _lexemes(db: SqlDatabase) -> dict[str, int]:
    """The same counts made from scratch from the rows' ``search`` column (PostgreSQL)."""
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT word, count(*) AS total FROM generations,"
                " unnest(tsvector_to_array(generations.search)) AS word GROUP BY word"
            )
        )
        return {row.word: row.total for row in rows}


async def _assert_search_totals(
    repository: SqlGenerationRepository, kept: dict[int, tuple[str, str | None]]
) -> None:
    """Every one- and two-word search totals what a brute-force count of the kept rows says."""
    words = sorted(
        {w for prompt, negative in kept.values() for w in search_terms(f"{prompt} {negative or ''}")}
    )
    for query in [*words, "zzz", "castle red", "red castle golden", "café text"]:
        terms = set(search_terms(query))
        expected = sorted(
            (
                i
                for i, (prompt, negative) in kept.items()
                if terms <= set(search_terms(f"{prompt} {negative or ''}"))
            ),
            reverse=True,
        )
        page = await repository.list(HistoryQuery(q=query))
        assert page.total == len(expected), query
        assert [g.id for g in page.items] == expected, query


def _add_as_0003(db: SqlDatabase, generation: Generation) -> int:
    """Add ``generation`` to a database at revision 0003 (without the columns 0005 and later add),
    as the code of that time did, and return its id."""
    return _add_without(db, generation, (*_SINCE_0005, *_SINCE_0008))


def _add_without(db: SqlDatabase, generation: Generation, columns: tuple[str, ...]) -> int:
    """Add ``generation`` without ``columns`` (as a revision before them did) and return its id."""
    values = {name: value for name, value in _to_values(generation).items() if name not in columns}
    names = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    statement = text(f"INSERT INTO generations ({names}) VALUES ({marks}) RETURNING id").bindparams(  # noqa: S608 - our names
        *(bindparam(name, type_=GENERATIONS.c[name].type) for name in values)
    )
    with db.engine.begin() as connection:
        return int(connection.execute(statement, values).scalar_one())


_SINCE_0005 = ("favorite", "tags", "notes")
_SINCE_0008 = ("source_id", "rerun_of")


async def test_search_word_counts_are_made_from_existing_rows_and_kept_by_inserts_and_deletes(
    database: SqlDatabase,
) -> None:
    database.upgrade_schema()
    with database.migration_transaction() as connection:
        migrations.downgrade(connection, "0003")
    repository = SqlGenerationRepository(database)
    kept: dict[int, tuple[str, str | None]] = {}
    for index, (prompt, negative) in enumerate(_SEARCH_PROMPTS[:4]):
        kept[_add_as_0003(database, make_generation(index, prompt=prompt, negative=negative))] = (
            prompt,
            negative,
        )

    assert database.upgrade_schema() == migrations.head_revision()  # 0004 counts the rows present
    postgresql = database.dialect == "postgresql"
    if postgresql:
        assert _word_counts(database) == _lexemes(database)
        assert _word_counts(database)["castle"] == 3
    await _assert_search_totals(repository, kept)

    for index, (prompt, negative) in enumerate(_SEARCH_PROMPTS[4:], start=4):
        added = await repository.add(make_generation(index, prompt=prompt, negative=negative))
        assert added.id is not None
        kept[added.id] = (prompt, negative)
    for gone in sorted(kept)[:2]:
        assert await repository.delete(gone) is not None
        del kept[gone]
    if postgresql:
        assert _word_counts(database) == _lexemes(database)
        with database.engine.begin() as connection:  # an update moves its words (the app never does)
            connection.execute(
                text("UPDATE generations SET prompt = 'a castle' WHERE id = :id"), {"id": max(kept)}
            )
        kept[max(kept)] = ("a castle", kept[max(kept)][1])
        assert _word_counts(database) == _lexemes(database)
    await _assert_search_totals(repository, kept)

    with database.migration_transaction() as connection:
        migrations.downgrade(connection, "0003")
    with database.engine.connect() as connection:
        assert "generation_words" not in inspect(connection).get_table_names()
    added_id = _add_as_0003(database, make_generation(9, prompt="castle after the downgrade"))
    kept[added_id] = ("castle after the downgrade", make_generation(9).negative_prompt)
    assert database.upgrade_schema() == migrations.head_revision()
    if postgresql:
        assert _word_counts(database) == _lexemes(database)
    await _assert_search_totals(repository, kept)


def _tag_tables(db: SqlDatabase) -> tuple[set[tuple[str, int]], dict[str, int], dict[str, int]]:
    """``generation_tags`` (tag, generation id, with its ``created_at`` checked against the
    generation's), ``tag_counts``, and the counts made from scratch from ``generations.tags``."""
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.tag, t.generation_id, t.created_at = g.created_at AS same_time"
                " FROM generation_tags AS t LEFT JOIN generations AS g ON g.id = t.generation_id"
            )
        ).all()
        assert all(row.same_time for row in rows), "a tag row outlived its generation or moved in time"
        kept = {row.tag: row.total for row in connection.execute(text("SELECT tag, total FROM tag_counts"))}
        generations = connection.execute(select(GENERATIONS.c.id, GENERATIONS.c.tags)).all()
    made: dict[str, int] = {}
    expected_rows = set()
    for generation_id, tags in generations:
        for tag in set(tags):
            made[tag] = made.get(tag, 0) + 1
            expected_rows.add((tag, generation_id))
    assert {(row.tag, row.generation_id) for row in rows} == expected_rows
    return expected_rows, kept, made


def _favourites(db: SqlDatabase) -> tuple[dict[str, int], dict[str, int]]:
    """``favorite_counts`` without its zeros, and the same made from scratch from the rows."""
    with db.engine.connect() as connection:
        kept = connection.execute(text("SELECT type, total FROM favorite_counts WHERE total <> 0")).all()
        made = connection.execute(
            text("SELECT type, count(*) FROM generations WHERE favorite GROUP BY type")
        ).all()
    return dict(kept), dict(made)


async def test_tag_rows_and_counts_are_made_by_triggers_from_what_any_writer_puts_in_generations(
    database: SqlDatabase,
) -> None:
    """The server's writes, and plain SQL as an import or a repair would send it (several rows in
    one statement, an update of another column, a delete of many), all keep them right."""
    database.upgrade_schema()
    repository = SqlGenerationRepository(database)
    first = await repository.add(make_generation(1, tags=("sunset", "beach")))
    second = await repository.add(make_generation(2, tags=("sunset",), favorite=True))
    await repository.update(second.id, GenerationPatch(tags=["night", "sunset"]))
    _, kept, made = _tag_tables(database)
    assert kept == made == {"sunset": 2, "beach": 1, "night": 1}
    assert _favourites(database) == ({"image": 1}, {"image": 1})

    rows = [
        _to_values(make_generation(i, tags=("bulk", f"only-{i % 2}"), favorite=i % 3 == 0))
        for i in range(10, 16)
    ]
    with database.engine.begin() as connection:
        connection.execute(insert(GENERATIONS), rows)  # one statement, many rows
        connection.execute(text("UPDATE generations SET type = 'video' WHERE id = :id"), {"id": first.id})
        connection.execute(text("UPDATE generations SET type = 'video' WHERE id = :id"), {"id": second.id})
        connection.execute(
            text('UPDATE generations SET tags = \'["beach", "beach"]\' WHERE id = :id'), {"id": first.id}
        )
    _, kept, made = _tag_tables(database)
    assert kept == made
    assert kept["bulk"] == 6
    assert kept["beach"] == 1
    assert "sunset" in kept  # the second still has it
    assert _favourites(database) == ({"image": 2, "video": 1}, {"image": 2, "video": 1})
    page = await repository.list(HistoryQuery(type="video"))
    assert [g.id for g in page.items] == [second.id, first.id]
    assert page.total == 2
    assert (await repository.list(HistoryQuery(type="image"))).total == 6
    assert (await repository.list(HistoryQuery(type="video", favorite=True))).total == 1
    assert (await repository.list(HistoryQuery(type="video", favorite=False))).total == 1
    assert (await repository.list(HistoryQuery(favorite=False))).total == 5

    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM generations WHERE task_id LIKE 'task-1_'"))
        connection.execute(text("UPDATE generations SET favorite = NOT favorite"))
    _, kept, made = _tag_tables(database)
    assert kept == made == {"beach": 1, "night": 1, "sunset": 1}
    assert _favourites(database) == ({"video": 1}, {"video": 1})
    assert (await repository.list(HistoryQuery(tags=("bulk",)))).total == 0


async def test_favourites_tags_and_notes_go_with_a_downgrade_and_come_back_empty(
    database: SqlDatabase,
) -> None:
    database.upgrade_schema()
    repository = SqlGenerationRepository(database)
    kept = await repository.add(make_generation(1, favorite=True, tags=("sunset",), notes="mine"))
    with database.migration_transaction() as connection:
        migrations.downgrade(connection, "0004")
    with database.engine.connect() as connection:
        found = inspect(connection)
        assert not {"generation_tags", "tag_counts", "favorite_counts"} & set(found.get_table_names())
        assert not {"favorite", "tags", "notes"} & {c["name"] for c in found.get_columns("generations")}
    assert database.upgrade_schema() == migrations.head_revision()
    again = await repository.get(kept.id)
    assert again == replace(kept, favorite=False, tags=(), notes=None)
    assert await repository.count_tags(TagQuery()) == []
    assert (await repository.list(HistoryQuery(favorite=True))).total == 0


@pytest.mark.postgres
async def test_on_postgresql_a_favourite_or_tag_change_leaves_the_type_counts_unwritten(
    request: pytest.FixtureRequest,
) -> None:
    """Every update of ``generations`` runs the type-count trigger; since 0005 it writes nothing
    when no type changes, so a change of favourite or tags never waits on the row of its type that
    every new generation writes too (the row's ``xmin``, the transaction that last wrote it, stays)."""
    server: PostgresServer = request.getfixturevalue("postgres")
    with server.schema() as url:
        db = SqlDatabase(url)
        try:
            db.upgrade_schema()
            repository = SqlGenerationRepository(db)
            generation = await repository.add(make_generation(1))

            def writer() -> str:
                with db.engine.connect() as connection:
                    return str(
                        connection.execute(
                            text("SELECT xmin::text FROM generation_counts WHERE type = 'image'")
                        ).scalar_one()
                    )

            before = writer()
            await repository.update(generation.id, GenerationPatch(favorite=True, tags=["sunset"]))
            assert writer() == before
            with db.engine.begin() as connection:
                connection.execute(text("UPDATE generations SET type = 'video'"))
            assert writer() != before
            assert (await repository.list(HistoryQuery(type="video"))).total == 1
            assert (await repository.list(HistoryQuery(type="image"))).total == 0
        finally:
            db.dispose()


def _lineage_columns(db: SqlDatabase) -> dict[int, tuple[int | None, int | None]]:
    """``(source_id, rerun_of)`` of every row, by id."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, source_id, rerun_of FROM generations"))
        return {row.id: (row.source_id, row.rerun_of) for row in rows}


async def test_lineage_columns_are_copied_from_existing_rows_and_go_with_a_downgrade(
    database: SqlDatabase,
) -> None:
    """0008 copies ``parameters.sourceId`` of the rows present into ``source_id``, so what was
    made from an image before it is found too; a downgrade drops the columns (and which rows were
    re-runs) and keeps every row and its JSON; upgrading again copies the sources again."""
    database.upgrade_schema()
    with database.migration_transaction() as connection:
        migrations.downgrade(connection, "0007")
    with database.engine.connect() as connection:
        assert not {"source_id", "rerun_of"} & {
            c["name"] for c in inspect(connection).get_columns("generations")
        }
    first = _add_without(database, make_generation(1), _SINCE_0008)
    made = _add_without(
        database, make_generation(2, operation=Operation.IMAGE_TO_IMAGE, source_id=first), _SINCE_0008
    )
    upscaled = _add_without(
        database, make_generation(3, operation=Operation.UPSCALE, source_id=made), _SINCE_0008
    )
    plain = _add_without(database, make_generation(4), _SINCE_0008)

    assert database.upgrade_schema() == migrations.head_revision()
    assert _lineage_columns(database) == {
        first: (None, None),
        made: (first, None),
        upscaled: (made, None),
        plain: (None, None),
    }
    repository = SqlGenerationRepository(database)
    rerun = await repository.add(make_generation(5, rerun_of=first))
    assert (await repository.get(rerun.id)) == rerun
    assert [g.id for g in (await repository.list(HistoryQuery(source_id=first))).items] == [rerun.id, made]
    assert [g.id for g in (await repository.list(HistoryQuery(source_id=made))).items] == [upscaled]
    with database.engine.connect() as connection:
        indexes = {index["name"] for index in inspect(connection).get_indexes("generations")}
    assert {"ix_generations_source_created", "ix_generations_rerun_created"} <= indexes

    with database.migration_transaction() as connection:
        migrations.downgrade(connection, "0007")
    with database.engine.connect() as connection:
        found = inspect(connection)
        assert not {"source_id", "rerun_of"} & {c["name"] for c in found.get_columns("generations")}
        assert not {"ix_generations_source_created", "ix_generations_rerun_created"} & {
            index["name"] for index in found.get_indexes("generations")
        }
        kept = dict(connection.execute(text("SELECT id, parameters FROM generations")).all())
    assert set(kept) == {first, made, upscaled, plain, rerun.id}
    sources = {
        ident: (value if isinstance(value, dict) else json.loads(value))["sourceId"]
        for ident, value in kept.items()
    }
    assert sources == {first: None, made: first, upscaled: made, plain: None, rerun.id: None}

    assert database.upgrade_schema() == migrations.head_revision()
    assert [g.id for g in (await repository.list(HistoryQuery(source_id=first))).items] == [made]
    assert (await repository.get(rerun.id)) == replace(rerun, rerun_of=None)  # forgotten, as documented


def _plan(db: SqlDatabase, query: HistoryQuery) -> str:
    """The database's plan of ``query``'s page statement, as text."""
    sqlite = db.dialect == "sqlite"
    page, _ = _statements(_shape(query, sqlite=sqlite))
    bound = page.params(**_parameters(query), limit=query.limit + 1, offset=query.offset)
    sql = str(bound.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as connection:
        if sqlite:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("ANALYZE generations")
        return "\n".join(str(row[0]) for row in connection.exec_driver_sql(f"EXPLAIN {sql}").all())


async def test_what_was_made_from_an_image_is_read_from_the_two_lineage_indexes(
    database: SqlDatabase,
) -> None:
    """``sourceId`` is an OR of two columns: the plan reads each one's partial index, not every row."""
    database.upgrade_schema()
    rows = [
        _to_values(
            make_generation(
                i,
                # as a gallery has it: most images made from nothing, a few from another each
                source_id=i // 20 + 1 if i % 20 == 0 else None,
                rerun_of=i // 30 + 1 if i % 30 == 0 else None,
            )
        )
        for i in range(1, 6001)
    ]
    with database.engine.begin() as connection:
        connection.execute(insert(GENERATIONS), rows)
    for query in (HistoryQuery(source_id=11), HistoryQuery(source_id=11, favorite=False, limit=5)):
        plan = _plan(database, query)
        assert "ix_generations_source_created" in plan, plan
        assert "ix_generations_rerun_created" in plan, plan
