"""SQLModel adapters for the history and the settings (SQLite by default, any SQLAlchemy URL).

One database style everywhere: a synchronous SQLAlchemy engine whose sessions run in worker
threads (``anyio.to_thread``), so the event loop never waits on the database. Table models
live only here; the mappers at the bottom turn rows into domain values and back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import JSON, BigInteger, Column, Index, event, func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from imagestudio.domain.errors import DatabaseError, DatabaseUnavailable, StudioError
from imagestudio.domain.model import (
    Generation,
    HistoryPage,
    HistoryQuery,
    Operation,
    Parameters,
    Settings,
    SettingsPatch,
    StoredImage,
)

__all__ = [
    "GenerationRow",
    "SettingRow",
    "SqlDatabase",
    "SqlGenerationRepository",
    "SqlSettingsRepository",
    "sqlite_url",
]

T = TypeVar("T")


class GenerationRow(SQLModel, table=True):
    """One generation as stored. Never leaves this module."""

    __tablename__ = "generations"
    __table_args__ = (Index("ix_generations_type_created", "type", "created_at", "id"),)

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
    created_at: dt.datetime = Field(index=True)


Index("ix_generations_created_id", GenerationRow.created_at, GenerationRow.id)  # type: ignore[arg-type]


class SettingRow(SQLModel, table=True):
    """One setting: a key and its JSON value (a row per key, so concurrent patches of
    different keys never overwrite each other)."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True, max_length=64)
    value: Any = Field(sa_column=Column(JSON, nullable=False))


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


class SqlDatabase:
    """The engine and the thread bridge shared by the repositories."""

    def __init__(self, url: str, *, echo: bool = False, max_threads: int = 8) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args = {"check_same_thread": False, "timeout": 15}
        self.engine: Engine = create_engine(
            url, echo=echo, connect_args=connect_args, pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None

    def create_schema(self) -> None:
        """Create missing tables (blocking; call at startup)."""
        self._guard(lambda: SQLModel.metadata.create_all(self.engine))

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
                session.commit()
                return result

        return self._guard(transaction)

    @staticmethod
    def _guard(work: Callable[[], T]) -> T:
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


def _reason(error: DBAPIError) -> str:
    original = getattr(error, "orig", None)
    text = str(original) if original is not None else type(error).__name__
    return text.splitlines()[0][:200] if text else type(error).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


class SqlGenerationRepository:
    """``GenerationRepository`` on SQLModel."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def add(self, generation: Generation) -> Generation:
        row = _to_row(generation)

        def work(session: Session) -> int:
            session.add(row)
            session.flush()
            assert row.id is not None
            return row.id

        new_id = await self._db.run(work)
        return generation.with_id(new_id)

    async def get(self, generation_id: int) -> Generation | None:
        def work(session: Session) -> Generation | None:
            row = session.get(GenerationRow, generation_id)
            return _from_row(row) if row else None

        return await self._db.run(work)

    async def get_by_key(self, key: str) -> Generation | None:
        def work(session: Session) -> Generation | None:
            row = session.exec(select(GenerationRow).where(GenerationRow.file_key == key)).first()
            return _from_row(row) if row else None

        return await self._db.run(work)

    async def list(self, query: HistoryQuery) -> HistoryPage:
        def work(session: Session) -> HistoryPage:
            items = select(GenerationRow)
            count = select(func.count()).select_from(GenerationRow)
            if query.type is not None:
                items = items.where(GenerationRow.type == query.type)
                count = count.where(GenerationRow.type == query.type)
            items = (
                items.order_by(col(GenerationRow.created_at).desc(), col(GenerationRow.id).desc())
                .offset(query.offset)
                .limit(query.limit)
            )
            rows = session.exec(items).all()
            total = session.exec(count).one()
            return HistoryPage(items=[_from_row(row) for row in rows], total=int(total))

        return await self._db.run(work)

    async def delete(self, generation_id: int) -> Generation | None:
        def work(session: Session) -> Generation | None:
            row = session.get(GenerationRow, generation_id)
            if row is None:
                return None
            generation = _from_row(row)
            session.delete(row)
            return generation

        return await self._db.run(work)


class SqlSettingsRepository:
    """``SettingsRepository`` on SQLModel: a row per key, defaults for missing keys."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def get(self) -> Settings:
        return await self._db.run(_load_settings)

    async def update(self, patch: SettingsPatch) -> Settings:
        def work(session: Session) -> Settings:
            merged = patch.apply(_load_settings(session))  # validates the whole result
            for name, value in patch.changes().items():
                row = session.get(SettingRow, name)
                if row is None:
                    session.add(SettingRow(key=name, value=value))
                else:
                    row.value = value
                    session.add(row)
            return merged

        return await self._db.run(work)


_SETTING_NAMES = ("storage_path", "default_width", "default_height", "default_steps", "default_cfg_scale")


def _load_settings(session: Session) -> Settings:
    stored = {row.key: row.value for row in session.exec(select(SettingRow)).all()}
    values = {name: stored[name] for name in _SETTING_NAMES if name in stored}
    return Settings(**values)


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
    )


def _to_row(generation: Generation) -> GenerationRow:
    return GenerationRow(
        id=generation.id,
        type=generation.type,
        operation=generation.operation.value,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        parameters=_parameters_to_json(generation.parameters),
        seed=generation.seed,
        width=generation.width,
        height=generation.height,
        file_key=generation.image.key,
        storage_root=generation.image.root,
        remote_url=generation.remote_url,
        task_id=generation.task_id,
        engine=generation.parameters.engine,
        model=generation.parameters.model,
        cost=generation.cost,
        created_at=generation.created_at.astimezone(dt.UTC),
    )


def _from_row(row: GenerationRow) -> Generation:
    assert row.id is not None
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return Generation(
        id=row.id,
        type="video" if row.type == "video" else "image",
        operation=Operation(row.operation),
        prompt=row.prompt,
        negative_prompt=row.negative_prompt,
        parameters=_parameters_from_json(row.parameters),
        seed=row.seed,
        width=row.width,
        height=row.height,
        image=StoredImage(key=row.file_key, root=row.storage_root),
        remote_url=row.remote_url,
        task_id=row.task_id,
        created_at=created.astimezone(dt.UTC),
        cost=row.cost,
    )
