"""Batches on the Runware adapter over loopback, against the fake Runware server: one
``imageInference`` task with ``numberResults`` N, every result collected once and put in seed
order, all or nothing, never billed twice."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from PIL import Image

from imagestudio.adapters.images import PillowImageInspector
from imagestudio.adapters.runware import RunwareImageGenerator, runware_client
from imagestudio.domain.errors import ProviderTimeout, ProviderUnavailable
from imagestudio.domain.model import MAX_SEED, ImageSpec, SourceImage
from imagestudio.domain.ports import BatchImageGenerator
from imagestudio.testing.fake_runware import FakeRunware, Fault
from imagestudio.testing.fake_runware.oracle import violations

pytestmark = pytest.mark.anyio

KEY = "rw-batch-key-5e61c0"


@asynccontextmanager
async def runware(fake: FakeRunware, **overrides: Any) -> AsyncIterator[RunwareImageGenerator]:
    options: dict[str, Any] = {
        "api_key": KEY, "api_url": fake.url, "timeout": 10.0, "inspector": PillowImageInspector(),
        "backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.0, "poll_first": 0.02,
        "output_format": "PNG",
    }  # fmt: skip
    options.update(overrides)
    async with runware_client() as client:
        yield RunwareImageGenerator(client, **options)


def spec(**changes: Any) -> ImageSpec:
    values: dict[str, Any] = {
        "prompt": "a lighthouse at dusk", "negative_prompt": None, "width": 256, "height": 192,
        "steps": 4, "cfg_scale": None, "seed": 1234, "model": "runware:100@1",
    }  # fmt: skip
    values.update(changes)
    return ImageSpec(**values)


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int, preview: object = None) -> None:
        self.calls.append((done, total))


def inference_tasks(fake: FakeRunware) -> list[dict[str, Any]]:
    return [task for task in fake.tasks if task.get("taskType") == "imageInference"]


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


async def source_image() -> SourceImage:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 150), (30, 120, 200)).save(buffer, format="PNG")
    return await PillowImageInspector().inspect(buffer.getvalue())


async def test_the_runware_engine_makes_batches_in_one_call() -> None:
    async with runware_client() as client:
        engine = RunwareImageGenerator(client, api_key=KEY, inspector=PillowImageInspector())
        assert isinstance(engine, BatchImageGenerator)


async def test_a_batch_is_one_task_with_number_results_and_the_seed_of_its_first_image(
    fake: FakeRunware,
) -> None:
    progress = Progress()
    async with runware(fake) as engine:
        images = await engine.text_to_image_batch(spec(seed=1234), 4, progress)

    [task] = inference_tasks(fake)
    assert (task["numberResults"], task["seed"]) == (4, 1234)
    assert violations(task) == []
    assert fake.billed == 1
    assert fake.image_downloads == 4
    assert [image.seed for image in images] == [1234, 1235, 1236, 1237]
    assert len({image.data for image in images}) == 4
    assert len({image.remote_url for image in images}) == 4
    assert all((image.width, image.height, image.extension) == (256, 192, "png") for image in images)
    assert all(image.cost is not None and image.cost > 0 for image in images)
    assert (progress.calls[0], progress.calls[-1]) == ((0, 1), (1, 1))

    # each image is the one its seed makes alone
    async with runware(fake) as engine:
        alone = await engine.text_to_image(spec(seed=1236), Progress())
    assert pixels(alone.data) == pixels(images[2].data)


async def test_results_that_arrive_one_by_one_in_any_order_are_kept_once_each_in_seed_order(
    fake: FakeRunware,
) -> None:
    fake.inject(Fault.STAGGERED, times=1)  # one more per poll, the last first, earlier ones repeated
    progress = Progress()
    async with runware(fake) as engine:
        images = await engine.text_to_image_batch(spec(seed=50), 3, progress)

    assert [image.seed for image in images] == [50, 51, 52]
    assert len({image.data for image in images}) == 3
    assert fake.polls >= 3
    assert fake.image_downloads == 3
    assert fake.billed == 1
    # the batch's progress counts the images in: 100 per image of 300
    batch = [done for done, total in progress.calls if total == 300]
    assert batch == sorted(batch)
    assert any(done >= 100 for done in batch)


async def test_results_already_received_survive_failing_polls_and_answers_without_them(
    fake: FakeRunware,
) -> None:
    fake.inject(Fault.STAGGERED_ONCE, times=1)  # each result in one answer only
    fake.inject(Fault.FLAKY, polls=True)  # every other poll fails with 503
    async with runware(fake) as engine:
        images = await engine.text_to_image_batch(spec(seed=60), 3, Progress())

    assert [image.seed for image in images] == [60, 61, 62]
    assert fake.submissions == 1
    assert fake.billed == 1


async def test_a_batch_missing_a_result_when_time_runs_out_fails_whole_and_is_never_resent(
    fake: FakeRunware,
) -> None:
    fake.inject(Fault.SHORT_BATCH, times=1)
    async with runware(fake, timeout=1.0) as engine:
        with pytest.raises(ProviderTimeout) as caught:
            await engine.text_to_image_batch(spec(seed=70), 3, Progress())

    assert "delivered 2 of the 3 images" in caught.value.message
    assert fake.submissions == 1
    assert fake.billed == 1
    assert fake.image_downloads == 0  # nothing of a failed batch is fetched


async def test_a_batch_task_that_failed_transiently_is_not_sent_again(fake: FakeRunware) -> None:
    """A single image's task that failed is run again (nothing of it was billed); a batch's is
    not: some of its images may have been made, and billed, before the failure."""
    fake.inject(Fault.TASK_TRANSIENT, times=1)
    async with runware(fake) as engine:
        with pytest.raises(ProviderUnavailable) as caught:
            await engine.text_to_image_batch(spec(), 2, Progress())

    assert caught.value.details["providerCode"] == "timeoutProvider"
    assert len(inference_tasks(fake)) == 1


async def test_an_image_to_image_batch_is_one_task_carrying_the_input_once(fake: FakeRunware) -> None:
    source = await source_image()
    async with runware(fake) as engine:
        images = await engine.image_to_image_batch(spec(seed=5), source, 0.6, 3, Progress())

    [task] = inference_tasks(fake)
    assert (task["numberResults"], task["seed"], task["strength"]) == (3, 5, 0.6)
    assert set(task["inputs"]) == {"seedImage"}
    assert violations(task) == []
    assert fake.billed_by_task_type == {"imageUpload": 1, "imageInference": 1}
    assert [image.seed for image in images] == [5, 6, 7]


async def test_a_batch_whose_seeds_wrap_is_two_tasks_one_each_side_of_the_wrap(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        images = await engine.text_to_image_batch(spec(seed=MAX_SEED - 1), 3, Progress())

    tasks = inference_tasks(fake)
    assert [(task["seed"], task["numberResults"]) for task in tasks] == [(MAX_SEED - 1, 2), (1, 1)]
    assert [image.seed for image in images] == [MAX_SEED - 1, MAX_SEED, 1]


async def test_a_model_that_takes_no_seed_gets_none_and_each_image_records_the_one_runware_reports(
    fake: FakeRunware,
) -> None:
    seedless = spec(model="openai:1@1", width=1024, height=1024, steps=None, accepts=frozenset())
    async with runware(fake) as engine:
        images = await engine.text_to_image_batch(seedless, 2, Progress())

    [task] = inference_tasks(fake)
    assert "seed" not in task
    assert task["numberResults"] == 2
    first = images[0].seed
    assert first is not None
    assert [image.seed for image in images] == [first, first + 1]
