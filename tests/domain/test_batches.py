"""Batches (``count``): consecutive seeds, one task, all rows in one write, all or nothing."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt

import pytest

from imagestudio.domain.errors import InvalidParameters, ProviderUnavailable
from imagestudio.domain.model import (
    MAX_SEED,
    GeneratedImage,
    ImageSpec,
    ImageToImage,
    Operation,
    StoredImage,
    TaskStatus,
    TextToImage,
)
from imagestudio.domain.ports import ProgressCallback
from imagestudio.domain.rules import MAX_BATCH, batch_seed
from imagestudio.domain.tasks import IdempotencyKey, Task
from tests.domain.world import World
from tests.fakes import tiny_png

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PNG_URI = "data:image/png;base64," + base64.b64encode(tiny_png(128, 128)).decode()


def test_count_is_1_to_8_and_an_integer() -> None:
    assert MAX_BATCH == 8
    assert TextToImage(prompt="a cat").count == 1
    for bad in (0, 9, -1, "2", 2.5, True):
        with pytest.raises(InvalidParameters) as refused:
            TextToImage(prompt="a cat", count=bad)  # type: ignore[arg-type]
        assert refused.value.details == {"field": "count"}


def test_batch_seeds_are_consecutive_and_wrap_inside_the_seed_range() -> None:
    assert [batch_seed(41, i) for i in range(3)] == [41, 42, 43]
    assert [batch_seed(MAX_SEED - 1, i) for i in range(3)] == [MAX_SEED - 1, MAX_SEED, 1]


@pytest.mark.anyio
async def test_a_batch_is_one_task_with_consecutive_seeds_and_every_generation_id() -> None:
    world = World()
    made = await world.text_to_image(seed=100).batch(TextToImage(prompt="a fox", count=4, task_id="b"))

    assert [g.seed for g in made] == [100, 101, 102, 103]
    assert [spec.seed for _, spec in world.generator.calls] == [100, 101, 102, 103]  # type: ignore[attr-defined]
    assert len({g.image.key for g in made}) == 4
    assert {g.task_id for g in made} == {"b"}
    task = await world.tasks.get("b")
    assert task.status is TaskStatus.COMPLETED
    assert task.generation_ids == tuple(g.id for g in made)
    assert task.generation_id == made[0].id
    assert task.images == ()
    assert await world.tasks.wait_all("b") == made
    completed = world.events.for_task("b")[-1]
    assert completed.generation_ids == task.generation_ids
    assert completed.generation_id == made[0].id
    # progress covers the batch: monotone, through the images, never 100 before the end
    progress = [e.progress for e in world.events.for_task("b") if e.status is TaskStatus.GENERATING]
    assert progress == sorted(progress)
    assert max(progress) == 99
    assert any(25 <= p < 75 for p in progress)


@pytest.mark.anyio
async def test_an_image_of_a_batch_is_made_again_alone_with_its_own_seed() -> None:
    world = World()
    batch = await world.text_to_image(seed=7).batch(TextToImage(prompt="a fox", count=3))
    again = await world.text_to_image()(TextToImage(prompt="a fox", seed=batch[2].seed))
    assert again.seed == 9 == batch[2].seed
    assert again.parameters.seed == batch[2].parameters.seed


@pytest.mark.anyio
async def test_image_to_image_takes_a_count_too() -> None:
    world = World()
    made = await world.image_to_image().batch(ImageToImage(prompt="a fox", source=PNG_URI, seed=5, count=2))
    assert [g.seed for g in made] == [5, 6]
    assert {g.operation for g in made} == {Operation.IMAGE_TO_IMAGE}


@pytest.mark.anyio
async def test_a_batch_failing_midway_stores_none_of_its_images() -> None:
    world = World()
    runs = 0
    real = world.generator.text_to_image

    async def third_fails(spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        nonlocal runs
        runs += 1
        if runs == 3:
            raise ProviderUnavailable("the engine went away")
        return await real(spec, progress)

    world.generator.text_to_image = third_fails  # type: ignore[method-assign]
    with pytest.raises(ProviderUnavailable):
        await world.text_to_image().batch(TextToImage(prompt="a fox", count=4, task_id="f"))

    assert runs == 3
    assert world.repository.rows == {}
    assert world.storage.files == {}  # the two images stored before, and their thumbnails, are gone
    task = await world.tasks.get("f")
    assert task.status is TaskStatus.FAILED
    assert task.generation_ids == ()
    assert task.images == ()


@pytest.mark.anyio
async def test_a_batch_whose_rows_cannot_be_written_leaves_no_file() -> None:
    world = World()
    world.repository.fail_adds = ProviderUnavailable("database gone")
    with pytest.raises(ProviderUnavailable):
        await world.text_to_image().batch(TextToImage(prompt="a fox", count=3))
    assert world.storage.files == {}
    assert world.repository.rows == {}


@pytest.mark.anyio
async def test_a_batch_cancelled_midway_stores_nothing() -> None:
    world = World()
    second_started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def slow_second(spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        nonlocal runs
        runs += 1
        if runs == 2:
            second_started.set()
            await release.wait()  # like a provider call: abandoned by the cancel
        return GeneratedImage(
            data=tiny_png(spec.width, spec.height),
            extension="png",
            width=spec.width,
            height=spec.height,
            seed=spec.seed,
        )

    world.generator.text_to_image = slow_second  # type: ignore[method-assign]
    await world.text_to_image().submit(TextToImage(prompt="a fox", count=3, task_id="c"))
    await asyncio.wait_for(second_started.wait(), 5)
    assert len(world.storage.files) >= 1  # the first image is stored (with its thumbnail)
    assert len((await world.tasks.get("c")).images) == 1  # and recorded on the task for recovery

    task = await world.tasks.cancel("c")

    assert task.status is TaskStatus.CANCELLED
    assert runs == 2
    assert world.storage.files == {}
    assert world.repository.rows == {}


@pytest.mark.anyio
async def test_an_idempotency_key_repeats_the_whole_batch_and_counts_its_count() -> None:
    world = World()
    use_case = world.text_to_image()
    key = IdempotencyKey(key="k", fingerprint="count=3")
    first = await use_case.batch(TextToImage(prompt="a fox", count=3), key)
    again = await use_case.batch(TextToImage(prompt="a fox", count=3), key)
    assert again == first
    assert len(world.repository.rows) == 3


@pytest.mark.anyio
async def test_recovery_removes_every_unrecorded_image_of_a_crashed_batch() -> None:
    world = World()
    kept = await world.text_to_image()(TextToImage(prompt="kept"))
    written = [StoredImage(key=f"day/{i}.png", root="./generated") for i in range(3)]
    for image in written:
        world.storage.files[(image.root, image.key)] = b"partial"
    world.task_repository.rows["crashed"] = Task(
        id="crashed",
        operation=Operation.TEXT_TO_IMAGE,
        status=TaskStatus.GENERATING,
        progress=60,
        created_at=T0,
        images=(*written, kept.image),
    )

    await world.tasks.recover()

    assert all((i.root, i.key) not in world.storage.files for i in written)
    assert (kept.image.root, kept.image.key) in world.storage.files
    assert (await world.tasks.get("crashed")).error_code == "INTERRUPTED"
