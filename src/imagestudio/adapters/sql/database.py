"""The database: ``SqlDatabase``, its engine and its transaction modes, on SQLite or PostgreSQL.

One database style everywhere: a synchronous SQLAlchemy engine whose sessions run in worker
threads (``anyio.to_thread``), so the event loop never waits on the database. PostgreSQL goes
through psycopg 3 (``postgresql+psycopg://``; ``postgresql://`` and ``postgres://`` mean that too).

The transaction modes: :meth:`SqlDatabase.run` (a session, committed), :meth:`SqlDatabase.write`
(a small write in a shared transaction, ``batch.py``), :meth:`SqlDatabase.read` (autocommit) and
:meth:`SqlDatabase.migration_transaction` (the schema upgrade, one process at a time). Database
errors become ``DatabaseUnavailable`` or ``DatabaseError``; a SQLite fault that sticks to its
connections is recovered from without a restart.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlmodel import Session, create_engine

from imagestudio.adapters import migrations
from imagestudio.adapters.sql.batch import GroupCommit
from imagestudio.domain.errors import DatabaseError, DatabaseUnavailable, StudioError

__all__ = ["MIGRATION_LOCK", "SqlDatabase", "database_url"]

T = TypeVar("T")

MIGRATION_LOCK = 0x1A6E_57D0
"""The PostgreSQL advisory lock key that serialises schema upgrades."""


def database_url(url: str) -> str:
    """``url`` with PostgreSQL routed through psycopg 3, the one PostgreSQL driver imagestudio ships."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class SqlDatabase:
    """The engine and the thread bridge shared by the repositories."""

    def __init__(self, url: str, *, echo: bool = False, max_threads: int = 8) -> None:
        self.url = database_url(url)
        try:
            backend = make_url(self.url).get_backend_name()
        except ArgumentError as error:
            raise DatabaseError("IMAGESTUDIO_DATABASE_URL is not a database URL") from error
        if backend not in ("sqlite", "postgresql"):
            raise DatabaseError(f"imagestudio runs on SQLite or PostgreSQL, not {backend}")
        self.is_sqlite = backend == "sqlite"
        self.safe_url = _safe(self.url)
        self.engine: Engine = create_engine(
            self.url, echo=echo, connect_args=self._connect_args(), pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "handle_error", self._reopen_after_sqlite_fault)
        self.faulted = False
        """True from a SQLite fault that sticks to connections (see :meth:`_reopen_after_sqlite_fault`)
        until a write commits again: meanwhile every call starts on freshly opened connections, and
        the change watch (``watch.py``) keeps none open."""
        self._max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None
        self._writes: GroupCommit | None = None

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self.is_sqlite else "postgresql"

    def _connect_args(self) -> dict[str, Any]:
        """Driver options. The URL may set the waits: ``?timeout=SECONDS`` on SQLite (how long a write
        waits for another connection's lock before the database counts as unavailable; default 15),
        ``?connect_timeout=SECONDS`` on PostgreSQL (default 10)."""
        query = make_url(self.url).query
        if self.is_sqlite:
            return {"check_same_thread": False, "timeout": _seconds(query.get("timeout"), 15.0)}
        return {} if "connect_timeout" in query else {"connect_timeout": 10}

    def upgrade_schema(self) -> str:
        """Apply the migrations this code ships (blocking; call at startup); return the revision.

        Raises ``IncompatibleDatabase`` for a database a newer imagestudio has upgraded.
        """

        def work() -> str:
            with self.migration_transaction() as connection:
                return migrations.upgrade(connection, database=self.safe_url)

        return self._guard(work)

    create_schema = upgrade_schema
    """The foundation's name for :meth:`upgrade_schema` (which replaced ``create_all``)."""

    def schema_state(self) -> migrations.SchemaState:
        """Where the database stands against the shipped migrations (changes nothing)."""

        def work() -> migrations.SchemaState:
            with self.engine.connect() as connection:
                return migrations.inspect_schema(connection)

        return self._guard(work)

    @contextmanager
    def migration_transaction(self) -> Iterator[Connection]:
        """A transaction that only one migrating process at a time can hold (blocking)."""
        if not self.is_sqlite:
            with self.engine.begin() as connection:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                yield connection
            return
        # pysqlite opens transactions lazily and never for DDL; this engine hands SQLite's own
        # BEGIN IMMEDIATE (the write lock, waited for up to the busy timeout) to every transaction.
        engine = create_engine(self.url, connect_args=self._connect_args(), poolclass=NullPool)
        event.listen(engine, "connect", _sqlite_autocommit)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        try:
            with engine.begin() as connection:
                yield connection
        finally:
            engine.dispose()

    def dispose(self) -> None:
        self.engine.dispose()

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` with a session in a worker thread; commit on success."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_threads)
        return await anyio.to_thread.run_sync(self._run_sync, work, limiter=self._limiter)

    def _run_sync(self, work: Callable[[Session], T]) -> T:
        def transaction() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                result = work(session)
                wrote = self.faulted and _sqlite_changes(session) > 0
                session.commit()
            if wrote:  # this connection, opened since the fault, could write: so can the next ones
                self.faulted = False
            return result

        return self._guard(transaction)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run a small write in a transaction shared with the writes that concurrent requests make
        meanwhile (group commit, see ``batch.py``); its result once that has committed.

        ``work`` may refuse with a ``StudioError`` only before it has written anything."""
        if self._writes is None:
            self._writes = GroupCommit(self)
        return await self._writes.run(work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run read-only ``work`` on a connection in autocommit mode, in a worker thread.

        No transaction to open and commit: on PostgreSQL that saves two round trips per read,
        a good part of a 50-item page. Each statement sees the data committed when it starts.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_threads)
        return await anyio.to_thread.run_sync(self._read_sync, work, limiter=self._limiter)

    def _read_sync(self, work: Callable[[Connection], T]) -> T:
        def autocommit() -> T:
            with self.engine.connect() as connection:
                return work(connection.execution_options(isolation_level="AUTOCOMMIT"))

        return self._guard(autocommit)

    def _reopen_after_sqlite_fault(self, context: ExceptionContext) -> None:
        """Treat a SQLite fault that sticks to its connection as a lost connection.

        SQLAlchemy then closes that connection, and the pool the ones it opened before it, so
        that a database that was read-only for a while (or whose disk failed for a moment) works
        again as soon as it is writable, without a restart. Three things make that hold:

        - the failed statement's cursor is closed here: SQLAlchemy leaves it open on a lost
          connection, and SQLite keeps a connection with an unfinished statement (and its files)
          open after it is closed, until the cursor is garbage collected;
        - SQLite shares one wal-index (the ``-shm`` file's mapping) between all the connections of
          a process to a file, read-only for good if the first of them could only open it
          read-only: until every connection opened before is closed, a new one is no better. So
          :attr:`faulted` is set, and until a write commits again every call first closes the
          pool's idle connections (the pool alone would close them one checkout at a time) and
          the change watch closes its own.
        """
        original = context.original_exception
        name = getattr(original, "sqlite_errorname", None)
        if isinstance(name, str):
            sticky = "_".join(name.split("_")[:2]) in _SQLITE_STICKY  # SQLITE_READONLY_DBMOVED: READONLY
        else:
            sticky = any(words in str(original).lower() for words in _SQLITE_STICKY_TEXT)
        if not sticky:
            return
        context.is_disconnect = True
        self.faulted = True
        # ``context.cursor`` is declared but never set (SQLAlchemy 2.1): the execution context has it
        cursor = getattr(context.execution_context, "cursor", None) or getattr(context, "cursor", None)
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()

    def _guard(self, work: Callable[[], T]) -> T:
        if self.faulted:
            # the pool recycles the connections opened before the fault only as each is checked out,
            # and one opened next to them would share their read-only wal-index (see below)
            self.engine.pool.dispose()
        try:
            return work()
        except StudioError:
            raise
        except OperationalError as error:
            raise DatabaseUnavailable(f"The database is unavailable: {_reason(error)}") from error
        except DBAPIError as error:
            if error.connection_invalidated:
                raise DatabaseUnavailable("The database connection was lost") from error
            raise DatabaseError(f"Database error: {_reason(error)}") from error
        except SQLAlchemyError as error:
            raise DatabaseError(f"Database error: {type(error).__name__}") from error


def _sqlite_changes(session: Session) -> int:
    """Rows the session's SQLite connection has changed since it was opened (0 on PostgreSQL)."""
    dbapi = session.connection().connection.dbapi_connection
    return int(getattr(dbapi, "total_changes", 0))


def _reason(error: DBAPIError) -> str:
    original = getattr(error, "orig", None)
    text = str(original) if original is not None else type(error).__name__
    return text.splitlines()[0][:200] if text else type(error).__name__


def _seconds(raw: Any, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw if isinstance(raw, str) else raw[-1])
    except (TypeError, ValueError, IndexError):
        value = -1.0
    if not 0 <= value < 86400:
        raise DatabaseError("timeout in IMAGESTUDIO_DATABASE_URL must be a number of seconds")
    return value


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        _sqlite_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        # no busy_timeout pragma: the driver's ``timeout`` (see ``_connect_args``) already sets it
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


_WAL_SWITCH_WAIT = 15.0
"""Seconds a new connection keeps trying to turn a fresh database to WAL while another holds it."""


def _sqlite_wal(cursor: Any) -> None:
    """Put the database in WAL mode, once per file.

    The switch takes an exclusive lock and SQLite answers "database is locked" at once, without the
    busy handler, when another connection holds any lock: several servers opening one fresh file
    together would fail at start. So the mode is read first (WAL sticks to the file, so every
    later connection stops there) and the switch is retried for a bounded time.
    """
    deadline = time.monotonic() + _WAL_SWITCH_WAIT
    while True:
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


_SQLITE_STICKY = frozenset({"SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_NOTADB"})
"""Primary SQLite result codes after which a connection is not trusted again: it may have been
opened read-only (the file was not writable at that moment, and SQLite never reopens it for
writing), or its file handle may point at a file that was replaced or an I/O path that failed."""
_SQLITE_STICKY_TEXT = ("readonly database", "disk i/o error", "unable to open database file")


def _sqlite_autocommit(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
