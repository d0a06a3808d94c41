"""The SQL task repository keeps every transition of a task, as the restart recovery reads them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from imagestudio.adapters.sql import SqlDatabase, SqlTaskRepository
from imagestudio.domain.errors import Conflict
from imagestudio.domain.model import Operation, StoredImage, TaskStatus
from imagestudio.domain.tasks import TaskState

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

pytestmark = pytest.mark.anyio


@pytest.fixture
def repository(tmp_path: Path) -> SqlTaskRepository:
    db = SqlDatabase(f"sqlite:///{tmp_path / 'tasks.db'}")
    db.create_schema()
    return SqlTaskRepository(db, owner="host:1")


async def test_each_transition_is_read_back_as_written(repository: SqlTaskRepository) -> None:
    state = TaskState("t-1", Operation.TEXT_TO_IMAGE, NOW)
    await repository.create(state.task)
    state.start(NOW + dt.timedelta(seconds=1))
    state.stored((StoredImage(key="2026-01-02/a.jpg", root="/data/generated"),))
    await repository.update(state.task)

    running = await repository.get("t-1")
    assert running == state.task

    state.complete((7,), NOW + dt.timedelta(seconds=2))
    await repository.update(state.task)

    done = await repository.get("t-1")
    assert done == state.task
    assert done is not None
    assert done.status is TaskStatus.COMPLETED
    assert done.images == ()
    assert await repository.recent(10) == [state.task]


async def test_creating_a_task_twice_is_a_conflict(repository: SqlTaskRepository) -> None:
    state = TaskState("t-2", Operation.UPSCALE, NOW)
    await repository.create(state.task)

    with pytest.raises(Conflict):
        await repository.create(state.task)


async def test_updating_a_task_that_was_never_created_records_it(repository: SqlTaskRepository) -> None:
    state = TaskState("t-3", Operation.IMAGE_TO_IMAGE, NOW)
    state.fail("API_ERROR", "Generation failed", NOW)

    await repository.update(state.task)

    assert await repository.get("t-3") == state.task


async def test_a_batch_task_keeps_every_image_and_every_generation_id(repository: SqlTaskRepository) -> None:
    state = TaskState("t-batch", Operation.TEXT_TO_IMAGE, NOW)
    await repository.create(state.task)
    state.start(NOW)
    images = tuple(StoredImage(key=f"2026-01-02/{i}.png", root="/data/generated") for i in range(3))
    state.stored(images)
    await repository.update(state.task)

    running = await repository.get("t-batch")
    assert running is not None
    assert running.images == images

    state.complete((4, 5, 6), NOW + dt.timedelta(seconds=3))
    await repository.update(state.task)
    done = await repository.get("t-batch")
    assert done is not None
    assert done.generation_ids == (4, 5, 6)
    assert done.generation_id == 4
    assert done.images == ()


async def test_orphaned_batch_tasks_report_all_their_images(
    repository: SqlTaskRepository, tmp_path: Path
) -> None:
    state = TaskState("t-orphan", Operation.IMAGE_TO_IMAGE, NOW)
    state.start(NOW)
    images = tuple(StoredImage(key=f"2026-01-02/{i}.png", root="/data/generated") for i in range(2))
    state.stored(images)
    dead = SqlTaskRepository(repository._db, owner="elsewhere:1")  # another host's process, long gone
    await dead.update(state.task)

    interrupted = await repository.interrupt_orphans(NOW + dt.timedelta(hours=2))

    assert [t.images for t in interrupted] == [images]
    after = await repository.get("t-orphan")
    assert after is not None
    assert after.images == ()
    assert after.error_code == "INTERRUPTED"
