"""Re-running a generation (``RerunGeneration``) against fakes of every port: what is kept, what
an override changes, seeds, batches, the input of image-to-image and upscale, what is refused,
and the lineage every new generation records."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest

from imagestudio.domain.errors import InvalidParameters, InvalidPrompt, NotFound, ProviderTimeout
from imagestudio.domain.model import (
    DEFAULT_MODEL,
    Generation,
    HistoryQuery,
    ImageSpec,
    ImageToImage,
    Operation,
    Rerun,
    SourceImage,
    TextToImage,
    Upscale,
)
from imagestudio.domain.values import UNCHANGED
from tests.domain.world import World
from tests.fakes import tiny_png

pytestmark = pytest.mark.anyio


def _data_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(tiny_png(width, height)).decode()


async def _text_to_image(world: World, **fields: Any) -> Generation:
    command = TextToImage(
        **{
            "prompt": "a red fox in the snow",
            "negative_prompt": "blurry",
            "width": 256,
            "height": 128,
            "steps": 9,
            "cfg_scale": 3.0,
            "model": "civitai:1@2",
            **fields,
        }
    )
    return await world.text_to_image(seed=99)(command)


def _last_spec(world: World) -> ImageSpec:
    operation, arguments = world.generator.calls[-1]
    spec = arguments if operation == "text-to-image" else arguments[0]  # type: ignore[index]
    assert isinstance(spec, ImageSpec)
    return spec


async def test_a_rerun_makes_the_text_to_image_again_with_a_new_seed_and_records_what_it_reran() -> None:
    world = World()
    original = await _text_to_image(world)

    again = await world.rerun(seed=5151)(Rerun(generation_id=original.id))

    assert again.id not in (None, original.id)
    assert again.rerun_of == original.id
    assert original.rerun_of is None
    assert again.operation is Operation.TEXT_TO_IMAGE
    assert (again.prompt, again.negative_prompt) == ("a red fox in the snow", "blurry")
    assert (again.width, again.height) == (256, 128)
    assert (again.parameters.steps, again.parameters.cfg_scale) == (9, 3.0)
    assert again.parameters.model == "civitai:1@2"
    assert again.seed == 5151  # a variation: a new seed
    spec = _last_spec(world)
    assert (spec.prompt, spec.negative_prompt, spec.width, spec.height) == (
        "a red fox in the snow",
        "blurry",
        256,
        128,
    )
    assert (spec.steps, spec.cfg_scale, spec.seed, spec.model) == (9, 3.0, 5151, "civitai:1@2")
    assert await world.repository.get(again.id) == again
    assert await world.repository.get(original.id) == original  # the original is untouched


async def test_the_same_seed_makes_the_same_request_and_count_makes_a_batch_from_it() -> None:
    world = World()
    original = await _text_to_image(world)

    same = await world.rerun()(Rerun(generation_id=original.id, seed="same"))
    batch = await world.rerun().batch(Rerun(generation_id=original.id, seed="same", count=3, task_id="b"))

    assert same.seed == 99
    assert [g.seed for g in batch] == [99, 100, 101]
    assert {g.rerun_of for g in batch} == {original.id}
    assert {g.task_id for g in batch} == {"b"}
    assert len(world.generator.calls) == 1 + 1 + 3
    task = await world.tasks.get("b")
    assert task.generation_ids == tuple(g.id for g in batch)


async def test_overrides_win_and_the_rest_stays_as_recorded() -> None:
    world = World()
    original = await _text_to_image(world)

    changed = await world.rerun()(
        Rerun(
            generation_id=original.id,
            prompt="  a blue fox  ",
            negative_prompt=None,
            width=128,
            steps=3,
            seed=7,
            model="runware:100@1",
            task_id="mine",
        )
    )

    assert (changed.prompt, changed.negative_prompt) == ("a blue fox", None)
    assert (changed.width, changed.height) == (128, 128)  # height as recorded
    assert (changed.parameters.steps, changed.parameters.cfg_scale) == (3, 3.0)
    assert (changed.seed, changed.parameters.model, changed.task_id) == (7, "runware:100@1", "mine")
    blank = await world.rerun()(Rerun(generation_id=original.id, negative_prompt="   "))
    assert blank.negative_prompt is None


async def test_a_generation_made_by_another_engine_reruns_with_this_engines_default_model() -> None:
    world = World()
    original = await _text_to_image(world)
    # as if a Runware server had made it: its model is not this engine's
    world.repository.rows[original.id] = replace(
        original, parameters=replace(original.parameters, engine="runware")
    )

    again = await world.rerun()(Rerun(generation_id=original.id))
    chosen = await world.rerun()(Rerun(generation_id=original.id, model="civitai:9@9"))

    assert again.parameters.model == DEFAULT_MODEL
    assert again.parameters.engine == "fake"
    assert chosen.parameters.model == "civitai:9@9"


async def test_a_rerun_of_a_rerun_records_the_one_it_reran() -> None:
    world = World()
    original = await _text_to_image(world)
    first = await world.rerun()(Rerun(generation_id=original.id))
    second = await world.rerun()(Rerun(generation_id=first.id, seed="same"))
    assert second.rerun_of == first.id
    assert second.seed == first.seed


async def test_an_image_to_image_reruns_on_its_source_with_its_strength_and_size() -> None:
    world = World()
    source = await _text_to_image(world, width=512, height=256)
    made = await world.image_to_image()(
        ImageToImage(source=source.file_path, prompt="a fox, oil painting", strength=0.35)
    )

    again = await world.rerun()(Rerun(generation_id=made.id, seed="same"))

    assert again.operation is Operation.IMAGE_TO_IMAGE
    assert again.parameters.source_id == source.id
    assert again.rerun_of == made.id
    assert again.parameters.strength == 0.35
    assert (again.width, again.height, again.seed) == (512, 256, made.seed)
    operation, (spec, input_image, strength) = world.generator.calls[-1]  # type: ignore[misc]
    assert operation == "image-to-image"
    assert isinstance(input_image, SourceImage)
    assert input_image.data == world.storage.files[(source.image.root, source.image.key)]
    assert strength == 0.35
    assert spec.prompt == "a fox, oil painting"


async def test_another_input_image_takes_its_own_size_unless_one_is_given() -> None:
    world = World()
    source = await _text_to_image(world, width=512, height=256)
    made = await world.image_to_image()(ImageToImage(source=source.file_path, prompt="a fox at night"))

    other = await world.rerun()(Rerun(generation_id=made.id, seed_image=_data_uri(128, 192)))
    sized = await world.rerun()(
        Rerun(generation_id=made.id, seed_image=_data_uri(128, 192), width=256, strength=0.9)
    )

    assert (other.width, other.height) == (128, 192)
    assert other.parameters.source_id is None  # a data URI is no generation
    assert other.rerun_of == made.id
    assert (sized.width, sized.height, sized.parameters.strength) == (256, 192, 0.9)


async def test_an_input_that_was_no_generation_needs_one_given_and_a_deleted_one_is_not_found() -> None:
    world = World()
    from_uri = await world.image_to_image()(ImageToImage(source=_data_uri(128, 128), prompt="a fox"))
    source = await _text_to_image(world)
    from_source = await world.image_to_image()(ImageToImage(source=source.file_path, prompt="a fox"))
    upscaled = await world.upscale()(Upscale(source=source.file_path))
    await world.delete_generation()(source.id)
    calls = len(world.generator.calls)
    rows = dict(world.repository.rows)

    with pytest.raises(InvalidParameters) as caught:
        await world.rerun()(Rerun(generation_id=from_uri.id))
    assert caught.value.details["field"] == "seedImage"
    assert "give seedImage" in caught.value.message
    for made, field in ((from_source, "seedImage"), (upscaled, "imagePath")):
        with pytest.raises(NotFound) as missing:
            await world.rerun()(Rerun(generation_id=made.id))
        assert missing.value.details["field"] == field
        assert f"generation {source.id}, which has been deleted" in missing.value.message
    assert len(world.generator.calls) == calls  # nothing ran
    assert world.repository.rows == rows  # nothing was written

    given = await world.rerun()(Rerun(generation_id=from_uri.id, seed_image=_data_uri(128, 128)))
    assert given.rerun_of == from_uri.id


async def test_an_upscale_reruns_on_the_same_source_at_its_scale_or_another() -> None:
    world = World()
    source = await _text_to_image(world, width=256, height=128)
    upscaled = await world.upscale()(Upscale(source=source.file_path, scale=2))

    again = await world.rerun()(Rerun(generation_id=upscaled.id))
    bigger = await world.rerun()(Rerun(generation_id=upscaled.id, scale=4, task_id="up"))

    assert (again.operation, again.width, again.height) == (Operation.UPSCALE, 512, 256)
    assert (again.parameters.source_id, again.rerun_of) == (source.id, upscaled.id)
    assert again.prompt == source.prompt
    assert (bigger.width, bigger.height, bigger.parameters.scale, bigger.task_id) == (1024, 512, 4, "up")
    operation, (input_image, scale) = world.generator.calls[-1]  # type: ignore[misc]
    assert (operation, scale) == ("upscale", 4)
    assert input_image.data == world.storage.files[(source.image.root, source.image.key)]


@pytest.mark.parametrize(
    ("operation", "override", "field"),
    [
        (Operation.TEXT_TO_IMAGE, {"strength": 0.5}, "strength"),
        (Operation.TEXT_TO_IMAGE, {"seed_image": "/generated/x.png"}, "seedImage"),
        (Operation.TEXT_TO_IMAGE, {"scale": 2}, "scale"),
        (Operation.IMAGE_TO_IMAGE, {"image_path": "/generated/x.png"}, "imagePath"),
        (Operation.IMAGE_TO_IMAGE, {"scale": 3}, "scale"),
        (Operation.UPSCALE, {"seed": "same"}, "seed"),
        (Operation.UPSCALE, {"count": 2}, "count"),
        (Operation.UPSCALE, {"prompt": "a fox"}, "prompt"),
        (Operation.UPSCALE, {"negative_prompt": None}, "negativePrompt"),
        (Operation.UPSCALE, {"seed_image": "/generated/x.png"}, "seedImage"),
    ],
)
async def test_an_override_the_operation_does_not_take_is_refused_naming_it(
    operation: Operation, override: dict[str, Any], field: str
) -> None:
    world = World()
    source = await _text_to_image(world)
    made = {
        Operation.TEXT_TO_IMAGE: source,
        Operation.IMAGE_TO_IMAGE: await world.image_to_image()(
            ImageToImage(source=source.file_path, prompt="a fox")
        ),
        Operation.UPSCALE: await world.upscale()(Upscale(source=source.file_path)),
    }[operation]
    calls, rows = len(world.generator.calls), dict(world.repository.rows)

    with pytest.raises(InvalidParameters) as caught:
        await world.rerun()(Rerun(generation_id=made.id, **override))

    assert caught.value.details["field"] == field
    assert f"re-run of a{'n' if operation is not Operation.TEXT_TO_IMAGE else ''} {operation.value}" in (
        caught.value.message
    )
    assert len(world.generator.calls) == calls
    assert world.repository.rows == rows


@pytest.mark.parametrize("generation_id", [0, -1, 2**63, 404])
async def test_an_unknown_id_is_not_found_and_runs_nothing(generation_id: int) -> None:
    world = World()
    await _text_to_image(world)
    with pytest.raises(NotFound) as caught:
        await world.rerun()(Rerun(generation_id=generation_id))
    assert caught.value.message == "Generation not found"
    assert len(world.generator.calls) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"seed": "other"}, "seed"),
        ({"seed": 0}, "seed"),
        ({"seed": True}, "seed"),
        ({"count": 9}, "count"),
        ({"count": 0}, "count"),
        ({"scale": 5}, "scale"),
        ({"width": 100}, "width"),
        ({"strength": 1.5}, "strength"),
        ({"prompt": " "}, "prompt"),
        ({"seed_image": "  "}, "seedImage"),
        ({"task_id": "no spaces"}, "taskId"),
        ({"generation_id": "7"}, "id"),
    ],
)
def test_a_rerun_with_a_bad_value_cannot_exist(fields: dict[str, Any], field: str) -> None:
    with pytest.raises((InvalidParameters, InvalidPrompt)) as caught:
        Rerun(**{"generation_id": 1, **fields})
    assert caught.value.details["field"] == field


def test_a_rerun_says_which_fields_it_overrides() -> None:
    assert Rerun(generation_id=1).overrides() == ()
    assert Rerun(generation_id=1).negative_prompt is UNCHANGED
    assert Rerun(generation_id=1, negative_prompt=None, seed="same", count=2).overrides() == (
        "negative_prompt",
        "seed",
        "count",
    )


async def test_a_failed_rerun_leaves_no_file_and_no_row() -> None:
    world = World()
    original = await _text_to_image(world)
    files, rows = dict(world.storage.files), dict(world.repository.rows)
    world.generator.fail_with = ProviderTimeout("Generation failed: API timeout")
    with pytest.raises(ProviderTimeout):
        await world.rerun()(Rerun(generation_id=original.id, count=2))
    assert world.storage.files == files
    assert world.repository.rows == rows


async def test_the_history_lists_what_was_made_from_an_image() -> None:
    world = World()
    source = await _text_to_image(world)
    other = await _text_to_image(world, prompt="a lake")
    made = await world.image_to_image()(ImageToImage(source=source.file_path, prompt="a fox"))
    upscaled = await world.upscale()(Upscale(source=source.file_path))
    reruns = await world.rerun().batch(Rerun(generation_id=source.id, count=2))
    of_made = await world.rerun()(Rerun(generation_id=made.id))
    await world.rerun()(Rerun(generation_id=other.id))

    page = await world.list_history()(HistoryQuery(source_id=source.id))
    expected = [of_made.id, *(g.id for g in reversed(reruns)), upscaled.id, made.id]
    assert [g.id for g in page.items] == expected  # the re-run of the image-to-image was made from it too
    assert page.total == 5
    assert [g.id for g in (await world.list_history()(HistoryQuery(source_id=made.id))).items] == [of_made.id]
    assert (await world.list_history()(HistoryQuery(source_id=of_made.id))).total == 0
    only = HistoryQuery(source_id=source.id, operation=Operation.UPSCALE)
    assert [g.id for g in (await world.list_history()(only)).items] == [upscaled.id]
