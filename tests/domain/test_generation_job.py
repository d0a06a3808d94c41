"""A generation job is a value (``GenerationJob``) that ``run_generation`` executes."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from imagestudio.domain.model import Operation, SourceImage, TextToImage, Upscale
from imagestudio.domain.pipeline import GenerationJob, PipelineJob
from tests.domain.world import World
from tests.fakes import tiny_png

pytestmark = pytest.mark.anyio


async def test_a_prepared_job_is_a_plain_value_that_survives_a_trip_through_pickle() -> None:
    """Two preparations of one request give equal values with no callables in them, and a copy
    made as another process would receive it runs to the same kind of row."""
    world = World()
    use_case = world.text_to_image(seed=11)
    command = TextToImage(prompt="a harbour at dusk", width=256, height=128, task_id="t-1")

    first, second = await use_case.prepare(command), await use_case.prepare(command)

    assert isinstance(first, PipelineJob)
    assert isinstance(second, PipelineJob)
    assert first.generation == second.generation  # closures would never compare equal
    assert not any(callable(getattr(first.generation, f.name)) for f in dataclasses.fields(GenerationJob))
    copy = pickle.loads(pickle.dumps(first.generation))  # noqa: S301 - our own value, just made
    assert copy == first.generation

    generation = await world.tasks.run(world.services.text_to_image.pipeline.job(copy))
    assert (generation.task_id, generation.prompt, generation.seed) == ("t-1", "a harbour at dusk", 11)
    assert (generation.width, generation.height) == (256, 128)
    assert world.storage.files[(generation.image.root, generation.image.key)]


async def test_a_hand_built_upscale_records_what_the_value_says() -> None:
    """The row of an upscale takes its prompt, seed, model and source id from the job, its size
    and scale from the engine's answer, and its file from storage."""
    world = World()
    source = SourceImage(data=tiny_png(32, 16), width=32, height=16, format="png")
    job = GenerationJob(
        operation=Operation.UPSCALE,
        task_id="up-1",
        prompt="a lighthouse",
        negative_prompt="fog",
        source=source,
        scale=2,
        seed=1234,
        model="civitai:1@2",
        source_id=41,
    )

    generation = await world.tasks.run(world.services.upscale.pipeline.job(job))

    assert generation.operation is Operation.UPSCALE
    assert (generation.prompt, generation.negative_prompt, generation.seed) == ("a lighthouse", "fog", 1234)
    assert (generation.width, generation.height) == (64, 32)
    assert generation.parameters.scale == 2
    assert generation.parameters.source_id == 41
    assert generation.parameters.model == "civitai:1@2"
    assert [call[0] for call in world.generator.calls] == ["upscale"]
    assert await world.repository.get(generation.id or 0) == generation


async def test_upscale_prepare_keeps_no_generation_inside_the_value() -> None:
    """The value carries the source generation's facts, not the generation itself."""
    world = World()
    first = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))

    job = await world.upscale().prepare(Upscale(source=first.file_path, scale=2))

    assert isinstance(job, PipelineJob)
    value = job.generation
    assert value.source is not None
    assert value.source.generation is None
    assert (value.prompt, value.seed, value.source_id) == ("a lighthouse", first.seed, first.id)
    if value.hold is not None:
        value.hold.release()
