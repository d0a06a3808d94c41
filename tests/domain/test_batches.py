"""Batches (``count``): consecutive seeds, one task, all rows in one write, all or nothing."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Callable

import pytest

from imagestudio.domain.errors import InvalidParameters, ProviderUnavailable
from imagestudio.domain.model import (
    MAX_SEED,
    GeneratedImage,
    ImageSpec,
    ImageToImage,
    Operation,
    Provenance,
    SourceImage,
    StoredImage,
    TaskStatus,
    TextToImage,
)
from imagestudio.domain.ports import BatchImageGenerator, ProgressCallback
from imagestudio.domain.rules import MAX_BATCH, batch_seed
from imagestudio.domain.tasks import IdempotencyKey, Task
from tests.domain.world import World
from tests.fakes import FakeImageGenerator, tiny_png

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


# --- an engine that makes a whole batch in one call (as Runware does with numberResults) ---------


class BatchingGenerator(FakeImageGenerator):
    """The domain's fake engine, plus :class:`BatchImageGenerator`: a batch in one call.

    ``reported(seed, index)`` is the seed it reports for image ``index`` (default ``seed + index``,
    as Runware counts up; ``None``: it reports none); ``made`` cuts the answer short."""

    def __init__(
        self, reported: Callable[[int | None, int], int | None] | None = None, made: int | None = None
    ) -> None:
        super().__init__()
        self.reported = reported or (lambda seed, index: None if seed is None else seed + index)
        self.made = made
        self.batches: list[tuple[str, ImageSpec, int]] = []

    def _images(self, spec: ImageSpec, count: int, progress: ProgressCallback) -> list[GeneratedImage]:
        for done in range(1, count + 1):
            progress(done, count)
        return [
            GeneratedImage(
                data=tiny_png(spec.width, spec.height, (index * 20, 100, 50)),
                extension="png",
                width=spec.width,
                height=spec.height,
                seed=self.reported(spec.seed, index),
            )
            for index in range(count if self.made is None else self.made)
        ]

    async def text_to_image_batch(
        self, spec: ImageSpec, count: int, progress: ProgressCallback
    ) -> list[GeneratedImage]:
        self.batches.append(("text-to-image", spec, count))
        return self._images(spec, count, progress)

    async def image_to_image_batch(
        self, spec: ImageSpec, source: SourceImage, strength: float, count: int, progress: ProgressCallback
    ) -> list[GeneratedImage]:
        self.batches.append(("image-to-image", spec, count))
        return self._images(spec, count, progress)


@pytest.mark.anyio
async def test_an_engine_that_makes_batches_is_called_once_for_the_whole_batch() -> None:
    generator = BatchingGenerator()
    assert isinstance(generator, BatchImageGenerator)
    assert not isinstance(FakeImageGenerator(), BatchImageGenerator)  # one call per image
    world = World(generator=generator)

    made = await world.text_to_image().batch(TextToImage(prompt="a fox", seed=100, count=4, task_id="one"))

    assert [(kind, spec.seed, count) for kind, spec, count in generator.batches] == [
        ("text-to-image", 100, 4)
    ]
    assert generator.calls == []  # no call per image
    assert [g.seed for g in made] == [100, 101, 102, 103]
    assert [g.parameters.seed for g in made] == [100, 101, 102, 103]
    assert len(world.storage.files) == 8  # four images and their thumbnails
    task = await world.tasks.get("one")
    assert task.generation_ids == tuple(g.id for g in made)
    progress = [e.progress for e in world.events.for_task("one") if e.status is TaskStatus.GENERATING]
    assert progress == sorted(progress)
    assert any(25 <= p < 75 for p in progress)  # the engine's progress is the batch's


@pytest.mark.anyio
async def test_a_single_image_on_a_batching_engine_is_the_ordinary_call() -> None:
    generator = BatchingGenerator()
    world = World(generator=generator)
    await world.text_to_image()(TextToImage(prompt="a fox", seed=3))
    assert generator.batches == []
    assert [kind for kind, _ in generator.calls] == ["text-to-image"]


@pytest.mark.anyio
async def test_each_image_records_the_seed_the_engine_reports_else_seed_plus_its_index() -> None:
    reported = World(generator=BatchingGenerator(reported=lambda seed, index: 1000 + index))
    made = await reported.text_to_image().batch(TextToImage(prompt="a fox", seed=7, count=3))
    assert [g.seed for g in made] == [1000, 1001, 1002]

    silent = World(generator=BatchingGenerator(reported=lambda seed, index: None))
    made = await silent.text_to_image().batch(TextToImage(prompt="a fox", seed=MAX_SEED - 1, count=3))
    assert [g.seed for g in made] == [MAX_SEED - 1, MAX_SEED, 1]


@pytest.mark.anyio
async def test_an_image_to_image_batch_is_one_call_too() -> None:
    generator = BatchingGenerator()
    world = World(generator=generator)
    made = await world.image_to_image().batch(ImageToImage(prompt="a fox", source=PNG_URI, seed=5, count=2))
    assert [(kind, count) for kind, _, count in generator.batches] == [("image-to-image", 2)]
    assert [g.seed for g in made] == [5, 6]


@pytest.mark.anyio
async def test_an_engine_answering_fewer_images_than_the_batch_fails_it_and_stores_nothing() -> None:
    world = World(generator=BatchingGenerator(made=2))
    with pytest.raises(ProviderUnavailable, match="2 of the batch's 3 images"):
        await world.text_to_image().batch(TextToImage(prompt="a fox", count=3, task_id="short"))
    assert world.storage.files == {}
    assert world.repository.rows == {}
    assert (await world.tasks.get("short")).status is TaskStatus.FAILED


@pytest.mark.anyio
async def test_a_batch_made_in_one_call_and_cancelled_while_it_is_stored_stores_nothing() -> None:
    world = World(generator=BatchingGenerator())
    second = asyncio.Event()
    release = asyncio.Event()
    real = world.annotator.annotate

    async def hold_the_second(data: bytes, provenance: Provenance) -> bytes:
        if len(world.annotator.annotated) == 1:
            second.set()
            await release.wait()
        return await real(data, provenance)

    world.annotator.annotate = hold_the_second  # type: ignore[method-assign]
    await world.text_to_image().submit(TextToImage(prompt="a fox", count=3, task_id="held"))
    await asyncio.wait_for(second.wait(), 5)
    assert len(world.storage.files) == 2  # the first image and its thumbnail

    cancelling = asyncio.ensure_future(world.tasks.cancel("held"))
    await asyncio.sleep(0)
    release.set()
    task = await asyncio.wait_for(cancelling, 5)

    assert task.status is TaskStatus.CANCELLED
    assert world.storage.files == {}
    assert world.repository.rows == {}
