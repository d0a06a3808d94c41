"""The task use cases (get, list, cancel), against fakes."""

from __future__ import annotations

import pytest

from imagestudio.domain.errors import Conflict, NotFound
from imagestudio.domain.model import TaskStatus, TextToImage
from tests.domain.world import World


@pytest.mark.anyio
async def test_a_completed_task_comes_with_its_generation_until_that_is_deleted() -> None:
    world = World()
    generation = await world.text_to_image()(TextToImage(prompt="a red fox", task_id="fox-1"))
    detail = await world.get_task()("fox-1")
    assert detail.task.status is TaskStatus.COMPLETED
    assert detail.generation == generation
    assert generation.id is not None
    await world.delete_generation()(generation.id)
    after = await world.get_task()("fox-1")
    assert after.task.generation_id == generation.id
    assert after.generation is None


@pytest.mark.anyio
async def test_an_unknown_task_is_not_found_for_get_and_cancel() -> None:
    world = World()
    with pytest.raises(NotFound):
        await world.get_task()("nope")
    with pytest.raises(NotFound):
        await world.cancel_task()("nope")


@pytest.mark.anyio
async def test_a_finished_task_is_listed_and_cannot_be_cancelled() -> None:
    world = World()
    await world.text_to_image()(TextToImage(prompt="a lake", task_id="lake-1"))
    listed = await world.list_tasks()(10)
    assert [task.id for task in listed] == ["lake-1"]
    with pytest.raises(Conflict):
        await world.cancel_task()("lake-1")
    assert (await world.get_task()("lake-1")).task.status is TaskStatus.COMPLETED
