"""``SqliteChangeWatch``: its token moves with every commit by anyone, and only then; the settings
repository reads again only when it has moved."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event

from imagestudio.adapters.sql import SqlDatabase, SqliteChangeWatch, SqlSettingsRepository, change_watch
from imagestudio.domain.model import SettingsPatch


def _database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    return connection


def test_the_token_moves_with_each_commit_of_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "watched.db"
    writer = _database(path)
    watch = SqliteChangeWatch(path)
    try:
        before = watch.token()
        assert before is not None
        assert watch.token() == before  # nothing committed: the same token
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES (1)")
        assert watch.token() == before  # not committed yet
        writer.execute("COMMIT")
        committed = watch.token()
        assert committed not in (None, before)
        other = _database(path)  # a second writer, as another process would be
        other.execute("DELETE FROM t")
        assert watch.token() not in (None, before, committed)
        other.close()
    finally:
        watch.close()
        writer.close()


def test_an_unreadable_database_has_no_token_until_it_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    watch = SqliteChangeWatch(path)
    try:
        assert watch.token() is None  # no file (read-only: the watch never creates one)
        assert not path.exists()
        writer = _database(path)
        first = watch.token()
        assert first is not None
        writer.execute("INSERT INTO t VALUES (1)")
        assert watch.token() != first
        writer.close()
    finally:
        watch.close()


def test_a_reopened_watch_never_repeats_an_earlier_token(tmp_path: Path) -> None:
    path = tmp_path / "reopened.db"
    writer = _database(path)
    watch = SqliteChangeWatch(path)
    try:
        seen = {watch.token()}
        watch.close()  # as after an error: the next connection's counter starts afresh
        writer.execute("INSERT INTO t VALUES (1)")
        assert watch.token() not in seen
    finally:
        watch.close()
        writer.close()


def test_only_a_sqlite_file_gets_a_watch(tmp_path: Path) -> None:
    file_db = SqlDatabase(f"sqlite:///{tmp_path / 'a.db'}")
    memory_db = SqlDatabase("sqlite://")
    postgres_db = SqlDatabase("postgresql://nobody@127.0.0.1:1/none")
    try:
        watch = change_watch(file_db)
        assert isinstance(watch, SqliteChangeWatch)
        assert watch.path == tmp_path / "a.db"
        assert change_watch(memory_db) is None
        assert change_watch(postgres_db) is None
    finally:
        for db in (file_db, memory_db, postgres_db):
            db.dispose()


@pytest.mark.anyio
async def test_settings_are_read_again_only_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "settings.db"
    db = SqlDatabase(f"sqlite:///{path}")
    other_db = SqlDatabase(f"sqlite:///{path}")  # another server on the same file
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    watch = SqliteChangeWatch(path)
    try:
        db.upgrade_schema()
        settings = SqlSettingsRepository(db, watch=watch)
        first = await settings.get()
        reads = len(statements)
        assert await settings.get() == first
        assert await settings.get() == first
        assert len(statements) == reads  # unchanged database: no statement at all

        await SqlSettingsRepository(other_db).update(SettingsPatch(default_width=640))
        assert (await settings.get()).default_width == 640  # the other's commit shows at once
        await settings.update(SettingsPatch(default_steps=12))
        assert (await settings.get()).default_steps == 12
        # without a watch every call reads
        plain = SqlSettingsRepository(db)
        before = len(statements)
        await plain.get()
        await plain.get()
        assert len(statements) >= before + 2
    finally:
        watch.close()
        db.dispose()
        other_db.dispose()
