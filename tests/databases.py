"""Databases for tests: a SQLite file, or a schema of its own on the test PostgreSQL server.

PostgreSQL: ``IMAGESTUDIO_TEST_POSTGRES_URL`` names a server and a database to connect to
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test run creates a
database of its own there (``imagestudio_test_<pid>_<random>``) and drops it at the end; each
test gets a fresh schema in it, reached through ``search_path``, so runs and tests never meet.

Without a reachable server the PostgreSQL tests skip, saying so in the summary; with ``CI=true``
they fail instead, because CI must run them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from imagestudio.adapters.sql import SqlDatabase, database_url

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "POSTGRES_URL_ENV",
    "SQL_KINDS",
    "PostgresServer",
    "postgres_unavailable",
    "sql_database",
]

POSTGRES_URL_ENV = "IMAGESTUDIO_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SQL_KINDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))
"""Parameters for tests that run against each real database."""


def _libpq(url: URL) -> str:
    """The libpq form of a SQLAlchemy URL, for psycopg itself."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_unavailable(url: str, reason: str, environ: Mapping[str, str] | None = None) -> None:
    """Skip the PostgreSQL tests, or fail them under ``CI=true``: never returns."""
    environ = os.environ if environ is None else environ
    where = make_url(url).render_as_string(hide_password=True)
    if environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"PostgreSQL not reachable at {where} ({reason}); CI=true requires the PostgreSQL tests",
            pytrace=False,
        )
    pytest.skip(f"PostgreSQL not reachable at {where} ({reason}): PostgreSQL tests skipped")


class PostgresServer:
    """A database of this test run on the test server, with a fresh schema per test."""

    def __init__(self, admin_url: URL, database: str) -> None:
        self.admin_url = admin_url
        self.database = database
        self.url = admin_url.set(database=database)
        self._numbers = count(1)

    @classmethod
    def open(cls, environ: Mapping[str, str] | None = None) -> PostgresServer:
        """Create this run's database, or skip (fail under CI) when the server is not there."""
        environ = os.environ if environ is None else environ
        raw = environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
        admin = make_url(database_url(raw))
        database = f"imagestudio_test_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            with psycopg.connect(_libpq(admin), autocommit=True, connect_timeout=5) as connection:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.Error as error:
            postgres_unavailable(raw, str(error).strip().splitlines()[0] if str(error).strip() else "error")
        return cls(admin, database)

    def close(self) -> None:
        with psycopg.connect(_libpq(self.admin_url), autocommit=True, connect_timeout=5) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database))
            )

    def new_schema(self) -> tuple[str, str]:
        """Create an empty schema; return its name and a URL whose ``search_path`` is it."""
        name = f"t{next(self._numbers)}_{secrets.token_hex(3)}"
        with psycopg.connect(_libpq(self.url), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        url = self.url.update_query_dict({"options": f"-csearch_path={name}"})
        return name, url.render_as_string(hide_password=False)

    def drop_schema(self, name: str) -> None:
        with psycopg.connect(_libpq(self.url), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    @contextmanager
    def schema(self) -> Iterator[str]:
        """A URL of a fresh, empty schema, dropped afterwards."""
        name, url = self.new_schema()
        try:
            yield url
        finally:
            self.drop_schema(name)

    def terminate_connections(self) -> int:
        """End every other connection to this run's database, as a server restart would; how many."""
        with psycopg.connect(_libpq(self.url), autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row is not None else 0

    def execute(self, url: str, statement: str) -> None:
        """Run raw SQL against the schema of ``url`` (to build old or foreign schemas)."""
        with psycopg.connect(_libpq(make_url(url)), autocommit=True) as connection:
            connection.execute(statement.encode())


@contextmanager
def sql_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    """A migrated, empty ``SqlDatabase`` of ``kind`` (``sqlite`` or ``postgresql``), disposed afterwards."""
    if kind == "sqlite":
        db = SqlDatabase(f"sqlite:///{tmp_path / f'{secrets.token_hex(4)}.db'}")
        try:
            db.upgrade_schema()
            yield db
        finally:
            db.dispose()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    with server.schema() as url:
        db = SqlDatabase(url)
        try:
            db.upgrade_schema()
            yield db
        finally:
            db.dispose()
