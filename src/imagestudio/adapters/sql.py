"""SQLModel adapters for the history and the settings, on SQLite (the default) or PostgreSQL.

One database style everywhere: a synchronous SQLAlchemy engine whose sessions run in worker
threads (``anyio.to_thread``), so the event loop never waits on the database. PostgreSQL goes
through psycopg 3 (``postgresql+psycopg://``; ``postgresql://`` and ``postgres://`` mean that too).

The schema belongs to the Alembic migrations in ``imagestudio.adapters.migrations``, applied by
:meth:`SqlDatabase.upgrade_schema`; the table models here must match what they build (a test
compares them). The mappers at the bottom turn rows into domain values and back.

How the history listing (``HistoryQuery``) is answered:

- order and keyset pagination ride on ``(created_at, id)`` indexes: a plain one, and one behind
  each equality filter (``type``, ``operation``, ``engine``, ``model``); a cursor is a row-value
  comparison ``(created_at, id) < (:at, :id)``, which both databases read as an index range;
- ``q`` is full-text, whole words ANDed: an FTS5 table on SQLite, a generated
  ``tsvector`` column with a GIN index on PostgreSQL (see migration ``0002``);
- ``total`` reads ``generation_counts`` (kept by triggers) when ``type`` is the only filter; for a
  search alone, SQLite counts in its FTS5 index and PostgreSQL reads the count of a one-word
  search from ``generation_words`` (kept by triggers, migration ``0004``); otherwise it counts the
  matching rows.

Several processes can share one database: ids come from the database (SQLite ``AUTOINCREMENT``
under its write lock, a PostgreSQL sequence), settings are written as upserts of one row per
key (the last writer of a key wins; patches of different keys both stay), and a delete reports
the generation only to the one caller whose statement removed the row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    Select,
    Table,
    bindparam,
    column,
    delete,
    event,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlmodel import Field, Session, SQLModel, create_engine

from imagestudio.adapters import migrations
from imagestudio.adapters.sql_batch import GroupCommit
from imagestudio.domain.errors import DatabaseError, DatabaseUnavailable, StudioError
from imagestudio.domain.model import (
    Generation,
    HistoryPage,
    HistoryQuery,
    HistorySort,
    Operation,
    Parameters,
    Settings,
    SettingsPatch,
    StoredImage,
)
from imagestudio.domain.ports import ChangeWatch

__all__ = [
    "GenerationCountRow",
    "GenerationRow",
    "SettingRow",
    "SqlDatabase",
    "SqlGenerationRepository",
    "SqlSettingsRepository",
    "database_url",
    "sqlite_url",
]

T = TypeVar("T")

MIGRATION_LOCK = 0x1A6E_57D0
"""The PostgreSQL advisory lock key that serialises schema upgrades."""


class GenerationRow(SQLModel, table=True):
    """One generation as stored. Never leaves this module."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_created_id", "created_at", "id"),
        Index("ix_generations_type_created", "type", "created_at", "id"),
        Index("ix_generations_operation_created", "operation", "created_at", "id"),
        Index("ix_generations_engine_created", "engine", "created_at", "id"),
        Index("ix_generations_model_created", "model", "created_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(default="image", max_length=16)
    operation: str = Field(max_length=32)
    prompt: str
    negative_prompt: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    width: int
    height: int
    file_key: str = Field(max_length=255, unique=True)
    storage_root: str
    remote_url: str | None = None
    task_id: str = Field(max_length=64, index=True)
    engine: str = Field(max_length=32)
    model: str | None = Field(default=None, max_length=200)
    cost: float | None = None
    created_at: dt.datetime


class GenerationCountRow(SQLModel, table=True):
    """How many generations there are of one ``type``; maintained by triggers, never written here."""

    __tablename__ = "generation_counts"

    type: str = Field(primary_key=True, max_length=16)
    total: int = Field(sa_column=Column(BigInteger, nullable=False))


class SettingRow(SQLModel, table=True):
    """One setting: a key and its JSON value (a row per key, so concurrent patches of
    different keys never overwrite each other)."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True, max_length=64)
    value: Any = Field(sa_column=Column(JSON, nullable=False))


GENERATIONS: Table = GenerationRow.__table__  # type: ignore[attr-defined]
COUNTS: Table = GenerationCountRow.__table__  # type: ignore[attr-defined]
SETTINGS: Table = SettingRow.__table__  # type: ignore[attr-defined]


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


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
        the change watch (``sql_watch.py``) keeps none open."""
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
        meanwhile (group commit, see ``sql_batch.py``); its result once that has committed.

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
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # no busy_timeout pragma: the driver's ``timeout`` (see ``_connect_args``) already sets it
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


_SQLITE_STICKY = frozenset({"SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_NOTADB"})
"""Primary SQLite result codes after which a connection is not trusted again: it may have been
opened read-only (the file was not writable at that moment, and SQLite never reopens it for
writing), or its file handle may point at a file that was replaced or an I/O path that failed."""
_SQLITE_STICKY_TEXT = ("readonly database", "disk i/o error", "unable to open database file")


def _sqlite_autocommit(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# --- the history ----------------------------------------------------------------------------


class SqlGenerationRepository:
    """``GenerationRepository`` on SQLite or PostgreSQL.

    ``sort_matches_up_to``: the SQLite search plan switch (see ``_SORT_MATCHES_UP_TO``); tests
    lower it to run both plans on small histories.
    """

    def __init__(self, db: SqlDatabase, *, sort_matches_up_to: int | None = None) -> None:
        self._db = db
        self._sort_matches_up_to = _SORT_MATCHES_UP_TO if sort_matches_up_to is None else sort_matches_up_to

    async def add(self, generation: Generation) -> Generation:
        values = _to_values(generation)

        def work(connection: Connection) -> int:
            return int(connection.execute(_INSERT_GENERATION, values).scalar_one())

        new_id = await self._db.write(work)
        return generation.with_id(new_id)

    async def get(self, generation_id: int) -> Generation | None:
        def work(connection: Connection) -> Generation | None:
            row = connection.execute(_BY_ID, {"id": generation_id}).first()
            return _from_record(row._mapping) if row else None

        return await self._db.read(work)

    async def get_by_key(self, key: str) -> Generation | None:
        def work(connection: Connection) -> Generation | None:
            row = connection.execute(_BY_KEY, {"key": key}).first()
            return _from_record(row._mapping) if row else None

        return await self._db.read(work)

    async def list(self, query: HistoryQuery) -> HistoryPage:
        sqlite = self._db.is_sqlite
        filters = _parameters(query)
        only_search = bool(query.terms) and not any(
            (query.type, query.operation, query.engine, query.model, query.created_from, query.created_to)
        )
        counted_word = (
            query.terms[0]
            if not sqlite and only_search and len(query.terms) == 1 and _PLAIN_WORD.fullmatch(query.terms[0])
            else None
        )

        def work(connection: Connection) -> HistoryPage:
            matches: int | None = None
            if counted_word is not None:
                # PostgreSQL would visit every matching row to count them; the kept count is exact.
                matches = int(connection.execute(_WORD_COUNT, {"word": counted_word}).scalar_one())
                if matches == 0:
                    return query.page([], 0)
            if sqlite and query.terms:
                # The full-text index alone counts its matches fast; how many there are decides the
                # plan: sort the few, or walk the date index past the many.
                matches = int(
                    connection.execute(_FTS_COUNT, {"fts_query": filters["fts_query"]}).scalar_one()
                )
                if matches == 0:
                    return query.page([], 0)
            walk = sqlite and matches is not None and matches > self._sort_matches_up_to
            # PostgreSQL counts a search by visiting every match: the page comes from that same pass.
            together = not sqlite and bool(query.terms) and matches is None
            page_statement, total_statement = _statements(
                _shape(query, sqlite=sqlite, walk=walk, together=together)
            )
            rows = connection.execute(
                page_statement, {**filters, "limit": query.limit + 1, "offset": query.offset}
            ).all()
            if matches is not None and only_search:
                total = matches
            elif together and rows:
                total = int(rows[0].matches_total)
            else:
                total = int(connection.execute(total_statement, filters).scalar_one())
            return query.page([_from_record(row._mapping) for row in rows], total)

        return await self._db.read(work)

    async def delete(self, generation_id: int) -> Generation | None:
        def work(session: Session) -> Generation | None:
            connection = session.connection()
            row = connection.execute(select(GENERATIONS).where(GENERATIONS.c.id == generation_id)).first()
            if row is None:
                return None
            removed = connection.execute(delete(GENERATIONS).where(GENERATIONS.c.id == generation_id))
            if removed.rowcount != 1:  # another process deleted it in between: its delete, not ours
                return None
            return _from_record(row._mapping)

        return await self._db.run(work)


# The statements of a listing depend only on which filters are set (its "shape"): they are built
# once per shape, with bound parameters for the values, since building SQLAlchemy expressions
# costs more than running these queries.
_Shape = tuple[bool, frozenset[str], HistorySort, bool, bool, bool, bool]

_SORT_MATCHES_UP_TO = 2000
"""SQLite search: up to this many matches, the page sorts them (a row lookup each); beyond, it
walks the ``(created_at, id)`` index from the top and keeps the rows whose id is among them,
which stops after ``limit`` hits (about ``limit * rows / matches`` steps)."""

_BY_ID = select(GENERATIONS).where(GENERATIONS.c.id == bindparam("id"))
_BY_KEY = select(GENERATIONS).where(GENERATIONS.c.file_key == bindparam("key"))
# built once: a statement built per call costs its cache key on every generation
_INSERT_GENERATION = insert(GENERATIONS).returning(GENERATIONS.c.id)
_FTS_COUNT = text("SELECT count(*) FROM generations_fts WHERE generations_fts MATCH :fts_query")
_WORD_COUNT = text("SELECT coalesce((SELECT total FROM generation_words WHERE word = :word), 0)")
_PLAIN_WORD = re.compile(r"[a-z0-9]+")
"""Search terms that PostgreSQL's parser takes as one token of the same text, so one word of
``generation_words``: lower-case ASCII letters and digits (other terms are counted row by row)."""


def _shape(query: HistoryQuery, *, sqlite: bool, walk: bool = False, together: bool = False) -> _Shape:
    present = {
        "type": query.type,
        "operation": query.operation,
        "engine": query.engine,
        "model": query.model,
        "created_from": query.created_from,
        "created_to": query.created_to,
        "search": query.terms or None,
    }
    names = frozenset(name for name, value in present.items() if value is not None)
    return sqlite, names, query.sort, query.cursor is not None, query.filters_only_by_type, walk, together


def _parameters(query: HistoryQuery) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": query.type,
        "operation": query.operation.value if query.operation else None,
        "engine": query.engine,
        "model": query.model,
        "created_from": query.created_from,
        "created_to": query.created_to,
    }
    if query.terms:
        values["fts_query"] = " AND ".join(f'"{term}"' for term in query.terms)
        values["ts_query"] = " & ".join(query.terms)
    if query.cursor is not None:
        values["cursor_at"] = query.cursor.created_at
        values["cursor_id"] = query.cursor.id
    return {name: value for name, value in values.items() if value is not None}


@functools.lru_cache(maxsize=512)
def _statements(shape: _Shape) -> tuple[Select[Any], Select[Any]]:
    """The page query and the total query of one shape of listing.

    ``together`` (PostgreSQL searches): the page query also counts, in a ``matches_total`` column.
    The matching rows' ``(id, created_at)`` are gathered once (GIN bitmap, then a visit of each
    row, which counting needs anyway), counted, and the page is the top of them; counting apart
    would evaluate the search twice. The total query stays for an empty page (no row to carry it).
    """
    sqlite, names, sort, has_cursor, kept_count, walk, together = shape
    g = GENERATIONS.c
    searching = sqlite and "search" in names
    # SQLite without statistics would drive a search through the index of an equality filter
    # (half the rows for engine=runware) and test each row against the matches; with the few
    # matches already counted, driving from them is far cheaper. A unary + keeps an index out.
    where = _plain_filters(names, unindexed=searching and not walk)
    counted = _plain_filters(names, unindexed=searching)
    if "search" in names:
        where.append(_search(sqlite=sqlite, walk=walk))
        counted.append(_search(sqlite=sqlite, walk=False))

    key = tuple_(g.created_at, g.id)
    mark = tuple_(bindparam("cursor_at", type_=g.created_at.type), bindparam("cursor_id", type_=Integer))
    after = [key < mark if sort is HistorySort.NEWEST else key > mark] if has_cursor else []
    order = (g.created_at.desc(), g.id.desc()) if sort is HistorySort.NEWEST else (g.created_at, g.id)
    page = (
        select(GENERATIONS)
        .where(*where, *after)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    if together:
        matches = select(g.id, g.created_at).where(*counted).cte("matches").prefix_with("MATERIALIZED")
        m = matches.c
        mark_m = tuple_(m.created_at, m.id)
        after_m = [mark_m < mark if sort is HistorySort.NEWEST else mark_m > mark] if has_cursor else []
        order_m = (m.created_at.desc(), m.id.desc()) if sort is HistorySort.NEWEST else (m.created_at, m.id)
        chosen = (
            select(m.id)
            .where(*after_m)
            .order_by(*order_m)
            .limit(bindparam("limit", type_=Integer))
            .offset(bindparam("offset", type_=Integer))
        )
        counting = select(func.count()).select_from(matches).scalar_subquery().label("matches_total")
        page = select(GENERATIONS, counting).where(g.id.in_(chosen)).order_by(*order)
    if kept_count:
        total = select(func.coalesce(func.sum(COUNTS.c.total), 0))
        if "type" in names:
            total = total.where(COUNTS.c.type == bindparam("type"))
    else:
        total = select(func.count()).select_from(GENERATIONS).where(*counted)
    return page, total


def _plain_filters(names: frozenset[str], *, unindexed: bool) -> list[ColumnElement[bool]]:
    g = GENERATIONS.c
    where: list[ColumnElement[bool]] = []
    comparisons = (
        ("type", g.type, "="),
        ("operation", g.operation, "="),
        ("engine", g.engine, "="),
        ("model", g.model, "="),
        ("created_from", g.created_at, ">="),
        ("created_to", g.created_at, "<"),
    )
    for name, column_, operator in comparisons:
        if name not in names:
            continue
        value = bindparam(name, type_=column_.type)
        if unindexed:
            clause = text(f"+generations.{column_.name} {operator} :{name}").bindparams(value)
            where.append(clause)  # type: ignore[arg-type]
        elif operator == "=":
            where.append(column_ == value)
        else:
            where.append(column_ >= value if operator == ">=" else column_ < value)
    return where


def _search(*, sqlite: bool, walk: bool) -> ColumnElement[bool]:
    """Every term is a word of the prompt or negative prompt (terms are letters and digits):
    ``"red" AND "sun"`` for FTS5, ``red & sun`` for ``to_tsquery``.

    ``walk`` (SQLite): the unary ``+`` keeps SQLite from driving the query by the matching ids,
    so that it walks the index of the ORDER BY and tests each row against them instead."""
    if sqlite:
        matching = "SELECT rowid FROM generations_fts WHERE generations_fts MATCH :fts_query"
        if walk:
            return text(f"+generations.id IN ({matching})")  # type: ignore[return-value]
        return GENERATIONS.c.id.in_(text(matching).columns(column("rowid", Integer)))
    return text("generations.search @@ to_tsquery('simple', :ts_query)")  # type: ignore[return-value]


# --- the settings ---------------------------------------------------------------------------


class SqlSettingsRepository:
    """``SettingsRepository`` on SQLModel: a row per key, defaults for missing keys.

    Every generation reads the settings. With a ``watch`` (``sql_watch.py``: on SQLite, a token
    that moves with any commit by anyone), the last settings read are returned again for as long
    as the token stays the one read before them, which saves a trip to a worker thread per
    generation; without one (PostgreSQL) every call reads.
    """

    def __init__(self, db: SqlDatabase, watch: ChangeWatch | None = None) -> None:
        self._db = db
        self._watch = watch
        self._kept: tuple[object, Settings] | None = None

    async def get(self) -> Settings:
        token = self._watch.token() if self._watch is not None else None
        if token is not None and self._kept is not None and self._kept[0] == token:
            return self._kept[1]
        settings = await self._db.run(lambda session: _load_settings(session.connection()))
        self._kept = None if token is None else (token, settings)
        return settings

    async def update(self, patch: SettingsPatch) -> Settings:
        upsert = _upsert_for(self._db.dialect)

        def work(session: Session) -> Settings:
            connection = session.connection()
            patch.apply(_load_settings(connection))  # validates the whole result before writing
            for name, value in sorted(patch.changes().items()):
                connection.execute(upsert(name, value))
            return _load_settings(connection)

        self._kept = None
        return await self._db.run(work)


_SETTING_NAMES = ("storage_path", "default_width", "default_height", "default_steps", "default_cfg_scale")


def _load_settings(connection: Connection) -> Settings:
    stored = {row.key: row.value for row in connection.execute(select(SETTINGS.c.key, SETTINGS.c.value))}
    values = {name: stored[name] for name in _SETTING_NAMES if name in stored}
    return Settings(**values)


def _upsert_for(dialect: str) -> Callable[[str, Any], Any]:
    """An ``INSERT ... ON CONFLICT (key) DO UPDATE``: one statement, so concurrent writers of one
    key cannot both insert, and the last one to commit wins."""
    build = sqlite.insert if dialect == "sqlite" else postgresql.insert

    def upsert(key: str, value: Any) -> Any:
        statement = build(SETTINGS).values(key=key, value=value)
        return statement.on_conflict_do_update(index_elements=[SETTINGS.c.key], set_={"value": value})

    return upsert


# --- mappers --------------------------------------------------------------------------------


def _parameters_to_json(parameters: Parameters) -> dict[str, Any]:
    return {
        "width": parameters.width,
        "height": parameters.height,
        "steps": parameters.steps,
        "cfgScale": parameters.cfg_scale,
        "seed": parameters.seed,
        "model": parameters.model,
        "engine": parameters.engine,
        "strength": parameters.strength,
        "scale": parameters.scale,
        "sourceId": parameters.source_id,
        **({"providerScale": parameters.provider_scale} if parameters.provider_scale is not None else {}),
    }


def _parameters_from_json(data: dict[str, Any]) -> Parameters:
    return Parameters(
        width=data["width"],
        height=data["height"],
        steps=data.get("steps"),
        cfg_scale=data.get("cfgScale"),
        seed=data.get("seed"),
        model=data.get("model"),
        engine=data.get("engine", "local"),
        strength=data.get("strength"),
        scale=data.get("scale"),
        source_id=data.get("sourceId"),
        provider_scale=data.get("providerScale"),
    )


def _to_values(generation: Generation) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": generation.type,
        "operation": generation.operation.value,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "parameters": _parameters_to_json(generation.parameters),
        "seed": generation.seed,
        "width": generation.width,
        "height": generation.height,
        "file_key": generation.image.key,
        "storage_root": generation.image.root,
        "remote_url": generation.remote_url,
        "task_id": generation.task_id,
        "engine": generation.parameters.engine,
        "model": generation.parameters.model,
        "cost": generation.cost,
        "created_at": generation.created_at.astimezone(dt.UTC),
    }
    if generation.id is not None:
        values["id"] = generation.id
    return values


def _from_record(record: Mapping[Any, Any]) -> Generation:
    created: dt.datetime = record["created_at"]
    created = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
    return Generation(
        id=record["id"],
        type="video" if record["type"] == "video" else "image",
        operation=Operation(record["operation"]),
        prompt=record["prompt"],
        negative_prompt=record["negative_prompt"],
        parameters=_parameters_from_json(record["parameters"]),
        seed=record["seed"],
        width=record["width"],
        height=record["height"],
        image=StoredImage(key=record["file_key"], root=record["storage_root"]),
        remote_url=record["remote_url"],
        task_id=record["task_id"],
        created_at=created.astimezone(dt.UTC),
        cost=record["cost"],
    )
