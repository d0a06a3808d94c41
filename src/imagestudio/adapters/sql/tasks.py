"""SQLModel adapters for tasks and idempotency keys (same database and style as ``database.py``).

Each row records which process owns the task (``host:pid``). At startup a process marks as
interrupted only the unfinished tasks of processes that are gone: on this host, a pid that no
longer runs; elsewhere, a task untouched for an hour. Several servers can share one database.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Index, Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from imagestudio.adapters.sql.database import SqlDatabase
from imagestudio.domain.errors import Conflict
from imagestudio.domain.model import Operation, StoredImage, TaskStatus
from imagestudio.domain.ports import IdempotencyRecord
from imagestudio.domain.tasks import Task

__all__ = ["IdempotencyRow", "SqlIdempotencyStore", "SqlTaskRepository", "TaskRow", "process_owner"]

_FOREIGN_STALE_AFTER = timedelta(hours=1)
_UNFINISHED = (TaskStatus.QUEUED.value, TaskStatus.GENERATING.value)


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class TaskRow(SQLModel, table=True):
    """One task as stored."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status", "status"),
        Index("ix_tasks_finished_at", "finished_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    operation: str = Field(max_length=32)
    status: str = Field(max_length=16)
    progress: int = 0
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    updated_at: dt.datetime
    generation_id: int | None = None
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = None
    image_key: str | None = Field(default=None, max_length=255)
    image_root: str | None = None
    owner: str = Field(max_length=300)
    generation_ids: str | None = None
    """Every generation of a completed batch, as a JSON list of ids (``None`` for one image)."""
    images: str | None = None
    """Images of a batch written but not yet recorded, as a JSON list of ``[root, key]`` pairs
    (``image_key``/``image_root`` hold the first, as for a single image)."""


class IdempotencyRow(SQLModel, table=True):
    """One remembered ``Idempotency-Key``."""

    __tablename__ = "idempotency_keys"

    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=128)
    task_id: str = Field(max_length=64)
    created_at: dt.datetime = Field(index=True)


_TASKS: Table = TaskRow.__table__  # type: ignore[attr-defined]


def _task_statements(is_sqlite: bool) -> tuple[Any, Any]:
    """The two statements every task write uses, built once per database.

    Every transition of every task is written, so they are sent through the connection: the
    ORM's unit of work (``merge`` loads the row, diffs and flushes) cost about 2 ms of CPU per
    write, most of the server's own time per generation (BENCHMARKS.md). Neither can fail on an
    existing id, which would spoil a transaction shared with other writes (``batch.py``):

    - create: ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``, no row back when the id is taken;
    - write the current state: ``INSERT ... ON CONFLICT (id) DO UPDATE`` of every other column.
    """
    build = sqlite.insert if is_sqlite else postgresql.insert
    create = build(_TASKS).on_conflict_do_nothing(index_elements=["id"]).returning(_TASKS.c.id)
    upsert = build(_TASKS)
    upsert = upsert.on_conflict_do_update(
        index_elements=["id"],
        set_={column.name: upsert.excluded[column.name] for column in _TASKS.columns if column.name != "id"},
    )
    return create, upsert


class SqlTaskRepository:
    """``TaskRepository`` on SQLModel. Task writes are single prebuilt statements, and writes of
    concurrent tasks share transactions (``SqlDatabase.write``)."""

    def __init__(self, db: SqlDatabase, owner: str | None = None) -> None:
        self._db = db
        self.owner = owner or process_owner()
        self._create, self._upsert = _task_statements(db.is_sqlite)

    async def create(self, task: Task) -> None:
        values = _values(task, self.owner)

        def work(connection: Connection) -> None:
            if connection.execute(self._create, values).first() is None:
                raise Conflict(f"Task {task.id} already exists", details={"field": "taskId"})

        await self._db.write(work)

    async def update(self, task: Task) -> None:
        """Write the task's current state (inserting it if it was never created)."""
        values = _values(task, self.owner)

        def work(connection: Connection) -> None:
            connection.execute(self._upsert, values)

        await self._db.write(work)

    async def get(self, task_id: str) -> Task | None:
        def work(session: Session) -> Task | None:
            row = session.get(TaskRow, task_id)
            return _from_row(row) if row else None

        return await self._db.run(work)

    async def recent(self, limit: int) -> list[Task]:
        def work(session: Session) -> list[Task]:
            rows = session.exec(
                select(TaskRow)
                .where(col(TaskRow.finished_at).is_not(None))
                .order_by(col(TaskRow.finished_at).desc())
                .limit(limit)
            ).all()
            return [_from_row(row) for row in rows]

        return await self._db.run(work)

    async def interrupt_orphans(self, now: dt.datetime) -> list[Task]:
        host = socket.gethostname()

        def work(session: Session) -> list[Task]:
            rows = session.exec(select(TaskRow).where(col(TaskRow.status).in_(_UNFINISHED))).all()
            interrupted = []
            for row in rows:
                if not _is_orphan(row, host, now, self.owner):
                    continue
                interrupted.append(_from_row(row))
                row.status = TaskStatus.FAILED.value
                row.error_code = "INTERRUPTED"
                row.error_message = "The server stopped before this task finished"
                row.finished_at = now
                row.updated_at = now
                row.image_key = row.image_root = row.images = None
                session.add(row)
            return interrupted

        return await self._db.run(work)


def _is_orphan(row: TaskRow, host: str, now: dt.datetime, me: str) -> bool:
    if row.owner == me:
        return False
    owner_host, _, pid = row.owner.rpartition(":")
    if owner_host == host and pid.isdigit():
        return not _pid_alive(int(pid))
    updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=dt.UTC)
    return now - updated > _FOREIGN_STALE_AFTER


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SqlIdempotencyStore:
    """``IdempotencyStore`` on SQLModel; the primary key makes a claim atomic across processes."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def claim(
        self, key: str, fingerprint: str, task_id: str, now: dt.datetime, ttl: timedelta
    ) -> IdempotencyRecord | None:
        def work(session: Session) -> IdempotencyRecord | None:
            existing = session.get(IdempotencyRow, key)
            if existing is not None:
                created = (
                    existing.created_at
                    if existing.created_at.tzinfo
                    else existing.created_at.replace(tzinfo=dt.UTC)
                )
                if now - created <= ttl:
                    return IdempotencyRecord(
                        key=existing.key,
                        fingerprint=existing.fingerprint,
                        task_id=existing.task_id,
                        created_at=created,
                    )
                session.delete(existing)
                session.flush()
            session.add(IdempotencyRow(key=key, fingerprint=fingerprint, task_id=task_id, created_at=now))
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                raced = session.get(IdempotencyRow, key)
                if raced is None:  # pragma: no cover - vanished again; let the client retry
                    raise Conflict("This Idempotency-Key is being used by another request") from None
                return IdempotencyRecord(
                    key=raced.key,
                    fingerprint=raced.fingerprint,
                    task_id=raced.task_id,
                    created_at=raced.created_at,
                )
            # purge expired keys now and then (cheap with the created_at index)
            session.execute(delete(IdempotencyRow).where(col(IdempotencyRow.created_at) < now - ttl))
            return None

        return await self._db.run(work)

    async def release(self, key: str) -> None:
        def work(session: Session) -> None:
            row = session.get(IdempotencyRow, key)
            if row is not None:
                session.delete(row)

        await self._db.run(work)


def _values(task: Task, owner: str) -> dict[str, Any]:
    """A task as the column values of its row."""
    return {
        "id": task.id,
        "operation": task.operation.value,
        "status": task.status.value,
        "progress": task.progress,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "updated_at": task.finished_at or task.started_at or task.created_at,
        "generation_id": task.generation_id,
        "error_code": task.error_code,
        "error_message": task.error_message,
        "image_key": task.images[0].key if task.images else None,
        "image_root": task.images[0].root if task.images else None,
        "owner": owner,
        "generation_ids": json.dumps(list(task.generation_ids)) if len(task.generation_ids) > 1 else None,
        "images": json.dumps([[i.root, i.key] for i in task.images]) if len(task.images) > 1 else None,
    }


def _images(row: TaskRow) -> tuple[StoredImage, ...]:
    """The images a task row records: the JSON list of a batch, else the one image columns."""
    if row.images:
        return tuple(StoredImage(key=str(key), root=str(root)) for root, key in json.loads(row.images))
    if row.image_key and row.image_root:
        return (StoredImage(key=row.image_key, root=row.image_root),)
    return ()


def _generation_ids(row: TaskRow) -> tuple[int, ...]:
    if row.generation_ids:
        return tuple(int(i) for i in json.loads(row.generation_ids))
    return (row.generation_id,) if row.generation_id is not None else ()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _from_row(row: TaskRow) -> Task:
    created = _utc(row.created_at)
    assert created is not None
    return Task(
        id=row.id,
        operation=Operation(row.operation),
        status=TaskStatus(row.status),
        progress=row.progress,
        created_at=created,
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        generation_id=row.generation_id,
        generation_ids=_generation_ids(row),
        error_code=row.error_code,
        error_message=row.error_message,
        images=_images(row),
    )
