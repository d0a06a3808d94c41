"""Generating use cases against fakes of every port."""

from __future__ import annotations

import base64

import pytest

from imagestudio.domain.errors import (
    DatabaseError,
    InvalidParameters,
    NotFound,
    ProviderTimeout,
    StorageError,
)
from imagestudio.domain.model import (
    ImageToImage,
    Operation,
    Settings,
    TaskStatus,
    TextToImage,
    Upscale,
)
from tests.domain.world import World
from tests.fakes import FakeImageGenerator, InMemoryImageStorage, tiny_png

pytestmark = pytest.mark.anyio


async def test_text_to_image_fills_unset_values_from_settings_and_records_the_seed() -> None:
    world = World()
    world.settings.settings = Settings(
        default_width=768, default_height=256, default_steps=9, default_cfg_scale=3.0
    )

    generation = await world.text_to_image(seed=99)(TextToImage(prompt="  a red fox  "))

    assert generation.id == 1
    assert generation.prompt == "a red fox"
    assert (generation.width, generation.height) == (768, 256)
    assert generation.parameters.steps == 9
    assert generation.parameters.cfg_scale == 3.0
    assert generation.seed == 99
    assert generation.parameters.engine == "fake"
    assert generation.operation is Operation.TEXT_TO_IMAGE
    spec = world.generator.calls[0][1]
    assert spec.seed == 99  # type: ignore[attr-defined]
    assert world.storage.files[(generation.image.root, generation.image.key)]
    assert await world.repository.get(1) == generation


async def test_explicit_values_win_over_settings() -> None:
    world = World()
    generation = await world.text_to_image()(
        TextToImage(prompt="a cat", width=128, height=192, steps=3, cfg_scale=0, seed=5, model="civitai:1@2")
    )
    assert (generation.width, generation.height, generation.seed) == (128, 192, 5)
    assert generation.parameters.model == "civitai:1@2"
    assert generation.parameters.cfg_scale == 0.0


async def test_progress_events_are_monotone_and_end_with_exactly_one_completed() -> None:
    world = World(generator=FakeImageGenerator(steps_reported=10))
    generation = await world.text_to_image()(TextToImage(prompt="a cat", task_id="mine-1"))

    events = world.events.for_task("mine-1")
    assert generation.task_id == "mine-1"
    assert events[0].status is TaskStatus.QUEUED
    progresses = [e.progress for e in events]
    assert progresses == sorted(progresses)
    terminal = [e for e in events if e.status.is_terminal]
    assert len(terminal) == 1
    assert terminal[0].status is TaskStatus.COMPLETED
    assert terminal[0].progress == 100
    assert terminal[0].generation_id == generation.id
    assert events[-1] is terminal[0]


async def test_an_engine_failure_leaves_no_file_no_row_and_one_failed_event() -> None:
    world = World(generator=FakeImageGenerator(fail_with=ProviderTimeout("Generation failed: API timeout")))

    with pytest.raises(ProviderTimeout):
        await world.text_to_image()(TextToImage(prompt="a cat", task_id="t1"))

    assert world.storage.files == {}
    assert world.repository.rows == {}
    terminal = [e for e in world.events.for_task("t1") if e.status.is_terminal]
    assert [(e.status, e.code) for e in terminal] == [(TaskStatus.FAILED, "API_TIMEOUT")]


async def test_a_database_failure_removes_the_file_that_was_written() -> None:
    world = World()
    world.repository.fail_adds = DatabaseError("Database error: disk I/O error")

    with pytest.raises(DatabaseError):
        await world.text_to_image()(TextToImage(prompt="a cat"))

    assert world.storage.files == {}
    assert world.events.events[-1].code == "DATABASE_ERROR"


async def test_a_storage_failure_writes_no_row() -> None:
    world = World(storage=InMemoryImageStorage(fail_writes=True))
    with pytest.raises(StorageError):
        await world.text_to_image()(TextToImage(prompt="a cat"))
    assert world.repository.rows == {}


async def test_unexpected_engine_errors_still_end_the_task() -> None:
    world = World(generator=FakeImageGenerator(fail_with=None))

    async def explode(*_args: object) -> object:
        raise RuntimeError("boom")

    world.generator.text_to_image = explode  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await world.text_to_image()(TextToImage(prompt="a cat", task_id="x"))
    assert world.events.for_task("x")[-1].status is TaskStatus.FAILED


async def test_image_to_image_uses_a_generation_as_source_and_snaps_its_size() -> None:
    world = World()
    first = await world.text_to_image()(TextToImage(prompt="a cat", width=512, height=512))
    # a stored source of an odd size, referenced by a path inside storage
    settings = await world.settings.get()
    odd = world.storage.own_key()
    world.storage.files[(settings.storage_path, odd)] = tiny_png(300, 500)

    from_generation = await world.image_to_image()(
        ImageToImage(source=first.file_path, prompt="a dog", strength=0.4)
    )
    from_path = await world.image_to_image()(ImageToImage(source=odd, prompt="a dog"))

    assert from_generation.parameters.source_id == first.id
    assert from_generation.parameters.strength == 0.4
    assert (from_generation.width, from_generation.height) == (512, 512)
    assert (from_path.width, from_path.height) == (320, 512)
    assert from_path.parameters.source_id is None
    assert from_path.parameters.strength == 0.7


async def test_image_to_image_accepts_a_data_uri() -> None:
    world = World()
    uri = "data:image/png;base64," + base64.b64encode(tiny_png(128, 128)).decode()
    generation = await world.image_to_image()(ImageToImage(source=uri, prompt="a dog", width=256, height=256))
    assert (generation.width, generation.height) == (256, 256)


@pytest.mark.parametrize(
    "reference",
    [
        "http://example.com/a.png",
        "https://example.com/a.png",
        "file:///etc/passwd",
        "/etc/passwd",
        "../outside.png",
        "/generated/../../etc/passwd",
        "/generated/",
        "/generated//x.png",
        "data:text/plain;base64,aGVsbG8=",
    ],
)
async def test_references_outside_storage_are_refused(reference: str) -> None:
    world = World()
    with pytest.raises(InvalidParameters) as caught:
        await world.image_to_image()(ImageToImage(source=reference, prompt="a dog"))
    assert caught.value.details["field"] == "seedImage"
    assert world.repository.rows == {}


async def test_a_missing_image_is_not_found() -> None:
    world = World()
    with pytest.raises(NotFound):
        await world.image_to_image()(
            ImageToImage(source="/generated/" + world.storage.own_key(), prompt="a dog")
        )
    with pytest.raises(NotFound):
        await world.upscale()(Upscale(source=world.storage.own_key()))


async def test_bytes_that_are_not_an_image_are_refused() -> None:
    world = World()
    settings = await world.settings.get()
    fake = world.storage.own_key()
    world.storage.files[(settings.storage_path, fake)] = b"definitely not a png"
    with pytest.raises(InvalidParameters) as caught:
        await world.upscale()(Upscale(source=fake))
    assert "not an image" in caught.value.message
    assert caught.value.details["field"] == "imagePath"


async def test_upscale_multiplies_the_size_and_keeps_the_source_prompt() -> None:
    world = World()
    first = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=256, height=128))
    bigger = await world.upscale()(Upscale(source=first.file_path, scale=3))
    assert (bigger.width, bigger.height) == (768, 384)
    assert bigger.operation is Operation.UPSCALE
    assert bigger.prompt == "a lighthouse"
    assert bigger.parameters.scale == 3
    assert bigger.parameters.source_id == first.id


async def test_upscale_beyond_4096_pixels_a_side_is_refused_before_any_work() -> None:
    world = World()
    first = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=2048, height=128))
    with pytest.raises(InvalidParameters) as caught:
        await world.upscale()(Upscale(source=first.file_path, scale=3))
    assert caught.value.details["field"] == "scale"
    assert [call[0] for call in world.generator.calls] == ["text-to-image"]
    assert len(world.repository.rows) == 1
