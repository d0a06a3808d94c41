"""Shared fixtures: the anyio backend, and databases of each kind (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.databases import PostgresServer
from tests.objectstore import MotoServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Tests that run the CLI in-process configure logging; put structlog and the root logger back."""
    saved = structlog.get_config() if structlog.is_configured() else None
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    if saved is None:
        structlog.reset_defaults()  # "not configured" again, as imagestudio.log tells apart
    else:
        structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """This run's database on the test PostgreSQL server (skips, or fails under CI=true, without one)."""
    server = PostgresServer.open()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    with server.schema() as url:
        yield url


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server, a process on loopback for the whole run (skips, or fails under CI=true,
    without moto installed)."""
    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
