"""``ProcrastinateQueue``, the team's shared queue, on a real PostgreSQL database.

Admission is one transaction: the idempotency key, the cluster-wide limit, the task row and the
job go in together or not at all. A queued job can be taken out before a worker starts it, a
queued task knows its place, and a task nobody will finish (its worker went silent, or its row
lost its job) is swept exactly once, by one process at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from imagestudio.adapters.queue import QUEUE, ProcrastinateQueue, decode_job, encode_job, open_queue
from imagestudio.adapters.sql import SqlDatabase, SqlTaskRepository
from imagestudio.domain.errors import Conflict, QueueFull
from imagestudio.domain.lifecycle import TaskState
from imagestudio.domain.model import ImageSpec, Operation, SourceImage, Task, TaskStatus
from imagestudio.domain.pipeline import GenerationJob
from imagestudio.domain.tasks import IdempotencyKey
from tests.databases import PostgresServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def queue(postgres: PostgresServer) -> AsyncIterator[ProcrastinateQueue]:
    with postgres.schema() as url:
        db = SqlDatabase(url)
        db.upgrade_schema()
        try:
            async with open_queue(db) as opened:
                yield opened
        finally:
            db.dispose()


def _job(task_id: str, *, source: bytes | None = None) -> GenerationJob:
    spec = ImageSpec(
        prompt="a quiet harbour",
        negative_prompt=None,
        width=128,
        height=128,
        steps=4,
        cfg_scale=None,
        seed=11,
        model="local:procedural@1",
        accepts=frozenset({"steps", "seed"}),
    )
    if source is None:
        return GenerationJob.text_to_image(task_id=task_id, spec=spec, storage_path="./generated")
    image = SourceImage(data=source, width=1, height=1, format="png")
    return GenerationJob.image_to_image(
        task_id=task_id, spec=spec, source=image, strength=0.5, storage_path="./generated"
    )


async def _enqueue(
    queue: ProcrastinateQueue, task_id: str, *, key: IdempotencyKey | None = None, max_queued: int = 10
) -> object:
    task = TaskState(task_id, Operation.TEXT_TO_IMAGE, NOW).task
    return await queue.enqueue(_job(task_id), task, key, max_queued=max_queued, now=NOW)


async def _rows(queue: ProcrastinateQueue) -> dict[str, str]:
    tasks = await queue.active()
    return {task.id: task.status.value for task in tasks}


async def _jobs(queue: ProcrastinateQueue) -> list[str]:
    jobs = await queue.app.job_manager.list_jobs_async(queue=QUEUE)
    return sorted(str(job.queueing_lock) for job in jobs if job.status == "todo")


async def test_a_job_goes_in_with_its_row_and_comes_back_as_the_same_value(queue: ProcrastinateQueue) -> None:
    assert await _enqueue(queue, "t1") is None
    assert await _rows(queue) == {"t1": "queued"}
    assert await _jobs(queue) == ["t1"]
    [job] = await queue.app.job_manager.list_jobs_async(queueing_lock="t1")
    assert decode_job(str(job.task_kwargs["job"])) == _job("t1")
    with_source = _job("t2", source=b"\x89PNG\x00\xff")
    assert decode_job(encode_job(with_source)) == with_source


async def test_the_limit_counts_queued_tasks_and_a_refusal_writes_nothing(queue: ProcrastinateQueue) -> None:
    await _enqueue(queue, "t1", max_queued=2)
    await _enqueue(queue, "t2", max_queued=2)
    key = IdempotencyKey(key="k-refused", fingerprint="f1")
    with pytest.raises(QueueFull):
        await _enqueue(queue, "t3", key=key, max_queued=2)
    assert await _rows(queue) == {"t1": "queued", "t2": "queued"}
    assert await _jobs(queue) == ["t1", "t2"]
    assert await queue.dequeue("t1")
    rows = SqlTaskRepository(queue._db)
    cancelled = TaskState.resume(await rows.get("t1"))  # type: ignore[arg-type]
    cancelled.cancel(NOW)
    await rows.update(cancelled.task)  # as SharedQueueTasks.cancel does after a dequeue
    # the refused request did not keep its key: once there is room, the same key is admitted
    assert await _enqueue(queue, "t3", key=key, max_queued=2) is None
    assert await _rows(queue) == {"t2": "queued", "t3": "queued"}


async def test_an_idempotency_key_returns_the_first_task_and_queues_nothing_more(
    queue: ProcrastinateQueue,
) -> None:
    key = IdempotencyKey(key="k1", fingerprint="f1")
    assert await _enqueue(queue, "t1", key=key) is None
    record = await _enqueue(queue, "t2", key=key)
    assert getattr(record, "task_id", None) == "t1"
    assert getattr(record, "fingerprint", None) == "f1"
    assert await _jobs(queue) == ["t1"]
    assert "t2" not in await _rows(queue)


async def test_a_taken_task_id_is_a_conflict_and_releases_the_key(queue: ProcrastinateQueue) -> None:
    await _enqueue(queue, "t1")
    key = IdempotencyKey(key="k2", fingerprint="f2")
    with pytest.raises(Conflict):
        await _enqueue(queue, "t1", key=key)
    assert await _jobs(queue) == ["t1"]
    assert await _enqueue(queue, "t9", key=key) is None  # the key was not kept by the failed admission


async def test_positions_follow_the_queue_and_a_dequeued_job_is_gone(queue: ProcrastinateQueue) -> None:
    for task_id in ("t1", "t2", "t3"):
        await _enqueue(queue, task_id)
    assert [await queue.position(t) for t in ("t1", "t2", "t3")] == [1, 2, 3]
    assert [t.position for t in await queue.active()] == [1, 2, 3]
    assert await queue.dequeue("t2")
    assert not await queue.dequeue("t2")
    assert await _jobs(queue) == ["t1", "t3"]
    assert not await queue.abort("t1")  # not running anywhere


async def _found(task_ids: list[str]) -> list[Task]:
    return [TaskState(task_id, Operation.TEXT_TO_IMAGE, NOW).task for task_id in task_ids]


async def test_a_job_whose_worker_went_silent_is_swept_once(queue: ProcrastinateQueue) -> None:
    await _enqueue(queue, "t1")
    await _enqueue(queue, "t2")
    manager = queue.app.job_manager
    worker = await manager.register_worker()
    taken = await manager.fetch_job([QUEUE], worker_id=worker)
    assert taken is not None
    assert taken.queueing_lock == "t1"
    assert await queue.sweep(_found) == []  # its worker is alive
    async with queue.app.connector.pool.connection() as connection:  # type: ignore[attr-defined]
        await connection.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 minute' WHERE id = %s",
            (worker,),
        )
    assert [t.id for t in await queue.sweep(_found)] == ["t1"]
    assert await queue.sweep(_found) == []
    assert await _jobs(queue) == ["t2"]  # the queued job is not touched


async def test_an_unfinished_row_without_a_job_is_swept_once_it_is_old(queue: ProcrastinateQueue) -> None:
    rows = SqlTaskRepository(queue._db)
    old = TaskState("left-behind", Operation.TEXT_TO_IMAGE, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    fresh = TaskState("just-written", Operation.TEXT_TO_IMAGE, dt.datetime.now(dt.UTC))
    await rows.create(old.task)
    await rows.create(fresh.task)
    long_ago = TaskState("queued-long-ago", Operation.TEXT_TO_IMAGE, old.task.created_at).task
    await queue.enqueue(
        _job(long_ago.id), long_ago, None, max_queued=10, now=long_ago.created_at
    )  # has its job
    assert [t.id for t in await queue.sweep(_found)] == ["left-behind"]


async def test_one_sweep_at_a_time_across_the_cluster(queue: ProcrastinateQueue) -> None:
    rows = SqlTaskRepository(queue._db)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    await rows.create(TaskState("orphan", Operation.TEXT_TO_IMAGE, long_ago).task)
    inner: list[list[Task]] = []

    async def interrupt(task_ids: list[str]) -> list[Task]:
        inner.append(await queue.sweep(_found))  # another process sweeping meanwhile skips its turn
        return await _found(task_ids)

    assert [t.id for t in await queue.sweep(interrupt)] == ["orphan"]
    assert inner == [[]]


async def test_rows_written_by_the_queue_read_back_through_the_task_repository(
    queue: ProcrastinateQueue,
) -> None:
    await _enqueue(queue, "t1")
    task = await SqlTaskRepository(queue._db).get("t1")
    assert task is not None
    assert task.status is TaskStatus.QUEUED
    assert task.created_at == NOW
    assert task.operation is Operation.TEXT_TO_IMAGE
