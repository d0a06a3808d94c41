"""The shared task queue of a team: procrastinate on the team's PostgreSQL database.

``ProcrastinateQueue`` implements ``SharedQueue`` (``domain/shared_queue.py``); ``run_worker``
works its jobs in this process. procrastinate owns the queue (its tables, ``LISTEN/NOTIFY`` wake-up,
worker heartbeats, aborts and graceful stops); imagestudio's own rows (``tasks``,
``idempotency_keys``) stay the record of what a task is.

- **One job per task**: a job's ``queueing_lock`` is its task id, and its one argument the
  ``GenerationJob`` as JSON (its input image base64 inside: the request's process keeps nothing).
- **Admission in one transaction** (:meth:`ProcrastinateQueue.enqueue`): an advisory lock
  (admissions of the cluster take turns, so the count below is exact), the idempotency key, the
  count of queued tasks against the limit, the task's row, the job and the task's ``queued``
  event on the shared stream, committed together or not at all.
- **Abort**: procrastinate tells the job's worker at once (a notification; a poll every second
  if one is lost), which cancels the job's coroutine; the worker then stops the task as a local
  cancel does.
- **Heartbeats**: every worker writes one every :data:`HEARTBEAT` seconds; a ``doing`` job whose
  worker has been silent for :data:`STALLED_AFTER` seconds is stalled (:meth:`stalled`).
- **Schema**: procrastinate's tables are created by :func:`ensure_schema` when missing (under the
  migration lock, so servers starting together create them once).

The ``job`` table rows are deleted once a job ends; the ``tasks`` rows keep the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, func, select

from imagestudio.adapters.sql import MIGRATION_LOCK, SqlDatabase, TaskRow, process_owner
from imagestudio.adapters.sql.events import CHANNEL, WRITE_LOCK
from imagestudio.adapters.sql.tasks import _from_row, _values
from imagestudio.domain.errors import Conflict, DatabaseUnavailable, QueueFull
from imagestudio.domain.lifecycle import TaskState
from imagestudio.domain.model import Task, TaskStatus
from imagestudio.domain.pipeline import GenerationJob
from imagestudio.domain.ports import IdempotencyRecord
from imagestudio.domain.tasks import IDEMPOTENCY_TTL, IdempotencyKey
from imagestudio.log import get_logger

if TYPE_CHECKING:
    import procrastinate
    from procrastinate.job_context import JobContext

__all__ = [
    "HEARTBEAT",
    "QUEUE",
    "STALLED_AFTER",
    "TASK_NAME",
    "ProcrastinateQueue",
    "decode_job",
    "encode_job",
    "open_queue",
    "run_worker",
]

log = get_logger(__name__)

QUEUE: Final = "imagestudio"
TASK_NAME: Final = "imagestudio.generate"
HEARTBEAT: Final = 2.0
"""Seconds between two heartbeats of a worker."""
STALLED_AFTER: Final = 10.0
"""Seconds without a heartbeat after which a worker's running jobs count as stalled: with the
sweep every :data:`SWEEP_EVERY` seconds, a dead worker's task is marked within about 15 s."""
SWEEP_EVERY: Final = 3.0
ORPHAN_AFTER: Final = 60.0
"""Seconds an unfinished task row without a job waits before it counts as orphaned (far longer
than the gap between a job's end and its row's last write)."""
ABORT_POLL: Final = 1.0
ADMISSION_LOCK: Final = 0x696D6773_0002
"""The advisory lock admissions take turns on (``MIGRATION_LOCK`` is ``..._0001``)."""
SWEEP_LOCK: Final = 0x696D6773_0003


def encode_job(job: GenerationJob) -> str:
    """The job as the queue carries it: no hold (this process's accounting), no source row."""
    source = job.source if job.source is None else replace(job.source, generation=None)
    return msgspec.json.encode(replace(job, hold=None, source=source)).decode()


def decode_job(text: str) -> GenerationJob:
    return msgspec.json.decode(text, type=GenerationJob)


class ProcrastinateQueue:
    """``SharedQueue`` on procrastinate (the jobs) and imagestudio's task rows, in one database."""

    def __init__(self, db: SqlDatabase, app: procrastinate.App) -> None:
        self._db = db
        self.app = app
        self.owner = process_owner()

    @property
    def _pool(self) -> Any:
        return self.app.connector.pool  # type: ignore[attr-defined]

    # --- admission ---------------------------------------------------------------------------

    async def enqueue(
        self,
        job: GenerationJob,
        task: Task,
        idempotency: IdempotencyKey | None,
        *,
        max_queued: int,
        now: datetime,
    ) -> IdempotencyRecord | None:
        values = _values(task, self.owner)
        insert = _insert_task(tuple(values))
        deferred = self.app.configure_task(TASK_NAME, queue=QUEUE, queueing_lock=task.id)
        try:
            async with self._pool.connection() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK,))
                if idempotency is not None:
                    existing = await _claim(connection, idempotency, task.id, now)
                    if existing is not None:
                        return existing
                row = await (
                    await connection.execute("SELECT count(*) FROM tasks WHERE status = %s", ("queued",))
                ).fetchone()
                waiting = int(row[0]) if row else 0
                if waiting >= max(max_queued, 1):
                    raise QueueFull(f"Too many generations are waiting ({waiting} queued); try again shortly")
                if await (await connection.execute(insert, values)).fetchone() is None:
                    raise Conflict(f"Task {task.id} already exists", details={"field": "taskId"})
                await self.app.job_manager.defer_job_async(
                    deferred.make_new_job(job=encode_job(job)), connection=connection
                )
                await _announce(connection, task, position=waiting + 1, now=now)
        except (QueueFull, Conflict):
            raise
        except Exception as error:
            if _is_database_error(error):
                raise DatabaseUnavailable(f"The task queue is unavailable: {type(error).__name__}") from error
            raise
        return None

    # --- cancelling --------------------------------------------------------------------------

    async def _job_id(self, task_id: str, status: str) -> int | None:
        jobs = await self.app.job_manager.list_jobs_async(queueing_lock=task_id, status=status)
        for job in jobs:
            if job.id is not None:
                return job.id
        return None

    async def dequeue(self, task_id: str) -> bool:
        job_id = await self._job_id(task_id, "todo")
        if job_id is None:
            return False
        return await self.app.job_manager.cancel_job_by_id_async(job_id, abort=False, delete_job=True)

    async def abort(self, task_id: str) -> bool:
        job_id = await self._job_id(task_id, "doing")
        if job_id is None:
            return False
        return await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)

    # --- questions ---------------------------------------------------------------------------

    async def active(self) -> list[Task]:
        def work(session: Session) -> list[Task]:
            rows = session.exec(
                select(TaskRow)
                .where(col(TaskRow.status).in_((TaskStatus.GENERATING.value, TaskStatus.QUEUED.value)))
                .order_by(col(TaskRow.status).desc(), col(TaskRow.created_at), col(TaskRow.id))
            ).all()
            tasks, waiting = [], 0
            for row in rows:
                task = _from_row(row)
                if task.status is TaskStatus.QUEUED:
                    waiting += 1
                    state = TaskState.resume(task)
                    state.queue_at(waiting)
                    task = state.task
                tasks.append(task)
            return tasks

        return await self._db.run(work)

    async def position(self, task_id: str) -> int | None:
        def work(session: Session) -> int | None:
            mine = session.get(TaskRow, task_id)
            if mine is None or mine.status != TaskStatus.QUEUED.value:
                return None
            ahead = session.exec(
                select(func.count())
                .select_from(TaskRow)
                .where(col(TaskRow.status) == TaskStatus.QUEUED.value)
                .where(
                    (col(TaskRow.created_at) < mine.created_at)
                    | ((col(TaskRow.created_at) == mine.created_at) & (col(TaskRow.id) < mine.id))
                )
            ).one()
            return int(ahead) + 1

        return await self._db.run(work)

    # --- crash safety ------------------------------------------------------------------------

    async def sweep(self, interrupt: Callable[[list[str]], Awaitable[list[Task]]]) -> list[Task]:
        """Find the tasks nobody will finish and hand their ids to ``interrupt``, all under one
        lock of the whole cluster (a process that finds another sweeping skips its turn), so each
        is interrupted once:

        - tasks whose job is ``doing`` on a worker silent for :data:`STALLED_AFTER` seconds (their
          jobs are marked failed and deleted first);
        - unfinished task rows without a live job, untouched for :data:`ORPHAN_AFTER` seconds (a
          row whose last write was lost, or left by a version that had no queue).
        """
        from procrastinate.jobs import Status

        manager = self.app.job_manager
        async with self._pool.connection() as connection, connection.transaction():
            locked = await (
                await connection.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK,))
            ).fetchone()
            if not locked or not locked[0]:
                return []  # another process is sweeping right now
            found: list[str] = []
            jobs = await manager.get_stalled_jobs(
                queue=QUEUE, task_name=TASK_NAME, seconds_since_heartbeat=STALLED_AFTER
            )
            for job in jobs:
                if job.id is None:
                    continue
                await manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=True)
                if job.queueing_lock:
                    found.append(job.queueing_lock)
            cursor = await connection.execute(_ORPHANS, (ORPHAN_AFTER,))
            found.extend(str(row[0]) for row in await cursor.fetchall() if str(row[0]) not in found)
            return await interrupt(found) if found else []


_ORPHANS: Final = """
SELECT t.id FROM tasks t
 WHERE t.status IN ('queued', 'generating')
   AND t.updated_at < now() - make_interval(secs => %s)
   AND NOT EXISTS (
       SELECT 1 FROM procrastinate_jobs j WHERE j.queueing_lock = t.id AND j.status IN ('todo', 'doing')
   )
"""
"""Unfinished task rows that no job will ever finish."""


def _insert_task(columns: tuple[str, ...]) -> str:
    """The statement that records a new task row (the column names are the row's own, never input)."""
    names, values = ", ".join(columns), ", ".join(f"%({name})s" for name in columns)
    return f"INSERT INTO tasks ({names}) VALUES ({values}) ON CONFLICT (id) DO NOTHING RETURNING id"  # noqa: S608


async def _announce(connection: Any, task: Task, *, position: int, now: datetime) -> None:
    """Write the task's ``queued`` event to the shared stream inside the admission's transaction
    (as ``PostgresTaskEvents`` writes, under its lock, then ``NOTIFY``): it is committed with the
    job, so its ``seq`` is below anything a worker publishes about the task."""
    await connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    cursor = await connection.execute(
        "INSERT INTO task_events (task_id, status, progress, position, created_at)"
        " VALUES (%s, %s, 0, %s, %s) RETURNING id",
        (task.id, TaskStatus.QUEUED.value, position, now),
    )
    row = await cursor.fetchone()
    await connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row[0])))


async def _claim(
    connection: Any, idempotency: IdempotencyKey, task_id: str, now: datetime
) -> IdempotencyRecord | None:
    """Take the key on ``connection`` (inside the admission's transaction); the live record that
    holds it, if another request took it within its lifetime."""
    cursor = await connection.execute(
        "SELECT key, fingerprint, task_id, created_at FROM idempotency_keys WHERE key = %s FOR UPDATE",
        (idempotency.key,),
    )
    row = await cursor.fetchone()
    if row is not None:
        created = row[3] if row[3].tzinfo else row[3].replace(tzinfo=now.tzinfo)
        if now - created <= IDEMPOTENCY_TTL:
            return IdempotencyRecord(key=row[0], fingerprint=row[1], task_id=row[2], created_at=created)
        await connection.execute("DELETE FROM idempotency_keys WHERE key = %s", (idempotency.key,))
    await connection.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, task_id, created_at) VALUES (%s, %s, %s, %s)",
        (idempotency.key, idempotency.fingerprint, task_id, now),
    )
    await connection.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (now - IDEMPOTENCY_TTL,))
    return None


def _is_database_error(error: BaseException) -> bool:
    import psycopg
    import psycopg_pool

    return isinstance(error, psycopg.OperationalError | psycopg_pool.PoolTimeout)


def _conninfo(db: SqlDatabase) -> str:
    url = make_url(db.url).set(drivername="postgresql")
    if "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": "10"})
    return url.render_as_string(hide_password=False)


def _app(db: SqlDatabase) -> procrastinate.App:
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=_conninfo(db), min_size=1, max_size=4, kwargs={"application_name": "imagestudio-queue"}
    )
    app = procrastinate.App(connector=connector)
    app.task(name=TASK_NAME, queue=QUEUE, pass_context=True)(_generate)
    return app


async def ensure_schema(app: procrastinate.App) -> None:
    """Create procrastinate's tables when the database has none (once, however many start)."""
    pool: Any = app.connector.pool  # type: ignore[attr-defined]
    async with pool.connection() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        row = await (await connection.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
        if row is not None and row[0] is not None:
            return
        await connection.execute(app.schema_manager.get_schema())
    log.info("task queue tables created")


@contextlib.asynccontextmanager
async def open_queue(db: SqlDatabase) -> AsyncIterator[ProcrastinateQueue]:
    """The queue on ``db`` (PostgreSQL), open for the life of the block."""
    app = _app(db)
    async with app.open_async():
        await ensure_schema(app)
        yield ProcrastinateQueue(db, app)


Runner = Callable[[GenerationJob], Awaitable[None]]
Stopper = Callable[[str], Awaitable[None]]


async def _generate(context: JobContext, job: str) -> None:
    """The procrastinate task: run one generation job on this worker."""
    run: Runner = context.additional_context["run"]
    stop: Stopper = context.additional_context["stop"]
    generation = decode_job(job)
    try:
        await run(generation)
    except asyncio.CancelledError:
        # the job was aborted (a cancel on some server, or the end of a stop's grace period)
        await stop(generation.task_id)
        raise


async def run_worker(
    queue: ProcrastinateQueue, *, run: Runner, stop: Stopper, concurrency: int, grace: float
) -> None:
    """Work the queue's jobs in this process until cancelled; then stop taking jobs, let running
    ones finish for ``grace`` seconds, abort the rest, and return (queued jobs stay queued)."""
    await queue.app.run_worker_async(
        queues=[QUEUE],
        concurrency=concurrency,
        name=f"imagestudio-{queue.owner}",
        wait=True,
        install_signal_handlers=False,
        delete_jobs="always",
        abort_job_polling_interval=ABORT_POLL,
        update_heartbeat_interval=HEARTBEAT,
        stalled_worker_timeout=STALLED_AFTER,
        shutdown_graceful_timeout=grace,
        additional_context={"run": run, "stop": stop},
    )
