"""``SharedQueueTasks`` and ``WorkQueuedJob`` through the production wiring, on an in-memory queue.

The test plays the cluster: the use cases submit to the queue, and "the worker" takes the job and
runs it with ``services.worker``. What must hold wherever the work runs: the request's process keeps
no input bytes, a synchronous request gets the worker's generation, a queued task cancelled is never
run, a task whose worker died is ``INTERRUPTED`` with its unrecorded images removed, and an
idempotency key answers its first task.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from imagestudio.adapters.progress import InMemoryTaskEvents
from imagestudio.domain.errors import Conflict, QueueFull
from imagestudio.domain.history_query import HistoryQuery
from imagestudio.domain.model import TaskStatus, TextToImage
from imagestudio.domain.tasks import IdempotencyKey
from imagestudio.services import Services
from tests.fakes import (
    InMemoryIdempotencyStore,
    InMemoryImageStorage,
    InMemorySharedQueue,
    InMemoryTaskRepository,
    fake_services,
)

pytestmark = pytest.mark.anyio


def _team(max_queued: int = 10) -> tuple[Services, InMemorySharedQueue, InMemoryTaskRepository, Any]:
    rows, keys = InMemoryTaskRepository(), InMemoryIdempotencyStore()
    events = InMemoryTaskEvents()
    events.bind()
    queue = InMemorySharedQueue(rows, keys, events)
    storage = InMemoryImageStorage()
    services = fake_services(
        task_repository=rows,
        idempotency=keys,
        events=events,
        shared_queue=queue,
        max_queued=max_queued,
        storage=storage,
    )
    return services, queue, rows, storage


def _command(prompt: str = "a lighthouse at dusk") -> TextToImage:
    return TextToImage(prompt=prompt, width=256, height=256)


async def test_a_request_is_queued_and_its_generation_is_what_the_worker_made() -> None:
    services, queue, rows, _ = _team()
    assert services.worker is not None
    waiting = asyncio.ensure_future(services.text_to_image.batch(_command()))
    while not queue.todo:  # noqa: ASYNC110 - the fake queue has no event to wait on
        await asyncio.sleep(0)
    assert services.tasks.bytes.held == 0  # the input travels in the queue, not in this process
    job = queue.take()
    assert rows.rows[job.task_id].status is TaskStatus.QUEUED
    await services.worker(job)
    [generation] = await asyncio.wait_for(waiting, 5)
    task = await services.tasks.get(job.task_id)
    assert task.status is TaskStatus.COMPLETED
    assert task.generation_id == generation.id
    assert [status for _, status in rows.history if _ == job.task_id][-1] == "completed"


async def test_a_queued_task_cancelled_is_taken_out_and_never_run() -> None:
    services, queue, _, _ = _team()
    assert services.worker is not None
    task = await services.text_to_image.submit(_command())
    assert task.status is TaskStatus.QUEUED
    assert task.position == 1
    job = queue.todo[0]
    cancelled = await services.tasks.cancel(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    assert queue.todo == []
    await services.worker(job)  # a worker that took it anyway (a race) does not run it
    assert (await services.tasks.get(task.id)).status is TaskStatus.CANCELLED
    assert (await services.list_history(HistoryQuery.parse())).total == 0
    with pytest.raises(Conflict):
        await services.tasks.cancel(task.id)


async def test_a_job_aborted_before_its_worker_started_it_is_marked_cancelled() -> None:
    services, queue, rows, _ = _team()
    assert services.worker is not None
    task = await services.text_to_image.submit(_command())
    queue.take()
    await services.worker.stop(task.id)
    assert rows.rows[task.id].status is TaskStatus.CANCELLED


async def test_a_task_whose_worker_died_is_interrupted_and_its_unrecorded_images_removed() -> None:
    services, queue, rows, storage = _team()
    task = await services.text_to_image.submit(_command())
    queue.take()
    image = await storage.save(b"\x89PNG half a batch", "png", "./generated")
    rows.rows[task.id] = replace(rows.rows[task.id], status=TaskStatus.GENERATING, images=(image,))
    queue.stalled_ids = [task.id]
    interrupted = await services.tasks.recover()
    assert [t.id for t in interrupted] == [task.id]
    after = await services.tasks.get(task.id)
    assert after.status is TaskStatus.FAILED
    assert after.error_code == "INTERRUPTED"
    assert (image.root, image.key) not in storage.files
    assert await services.tasks.recover() == []  # reported once


async def test_an_idempotency_key_answers_its_first_task_and_refuses_another_request() -> None:
    services, queue, _, _ = _team()
    key = IdempotencyKey(key="k1", fingerprint="f1")
    first = await services.tasks.submit(await services.text_to_image.prepare(_command()), key)
    again = await services.tasks.submit(await services.text_to_image.prepare(_command()), key)
    assert again.id == first.id
    assert len(queue.todo) == 1
    with pytest.raises(Conflict):
        await services.tasks.submit(
            await services.text_to_image.prepare(_command()), IdempotencyKey(key="k1", fingerprint="f2")
        )


async def test_the_queue_limit_refuses_and_releases_the_hold() -> None:
    services, _, _, _ = _team(max_queued=1)
    await services.text_to_image.submit(_command())
    with pytest.raises(QueueFull):
        await services.text_to_image.submit(_command())
    assert services.tasks.bytes.held == 0
