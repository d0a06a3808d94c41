"""Metadata in every file, in the domain: the pipeline writes how an image was made into it before
storing it (unless ``embedMetadata`` is off), and ``InspectImage`` reads it back from an input
named as input images are."""

from __future__ import annotations

import base64

import pytest

from imagestudio.adapters.metadata import PillowImageAnnotator
from imagestudio.domain.errors import InvalidParameters, NotFound
from imagestudio.domain.model import (
    ImageToImage,
    MetadataSource,
    Operation,
    Provenance,
    SettingsPatch,
    TextToImage,
    Upscale,
)
from tests.domain.world import World
from tests.fakes import FakeImageAnnotator, tiny_png

pytestmark = pytest.mark.anyio


async def test_the_stored_file_is_the_annotators_output_for_what_the_row_records() -> None:
    world = World()
    made = await world.text_to_image(seed=21)(
        TextToImage(prompt="a harbour at dusk", negative_prompt="fog", width=256, height=128, task_id="t-7")
    )

    (provenance,) = world.annotator.annotated
    assert provenance == Provenance(
        operation=Operation.TEXT_TO_IMAGE,
        prompt=made.prompt,
        negative_prompt=made.negative_prompt,
        parameters=made.parameters,
        seed=made.seed,
        width=made.width,
        height=made.height,
        task_id="t-7",
    )
    stored = world.storage.files[(made.image.root, made.image.key)]
    assert stored == tiny_png(256, 128) + FakeImageAnnotator.MARK + b"t-7"


async def test_image_to_image_and_upscale_are_annotated_with_their_own_facts() -> None:
    world = World()
    first = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))
    changed = await world.image_to_image()(
        ImageToImage(prompt="a lighthouse in snow", source=first.file_path, strength=0.3)
    )
    bigger = await world.upscale()(Upscale(source=changed.file_path, scale=2))

    _, second, third = world.annotator.annotated
    assert (second.operation, second.parameters.strength, second.parameters.source_id) == (
        Operation.IMAGE_TO_IMAGE,
        0.3,
        first.id,
    )
    assert (third.operation, third.prompt, third.parameters.scale) == (Operation.UPSCALE, changed.prompt, 2)
    assert (third.width, third.height) == (bigger.width, bigger.height)


async def test_with_embed_metadata_off_the_engines_bytes_are_stored_as_they_came() -> None:
    world = World()
    await world.update_settings()(SettingsPatch(embed_metadata=False))

    made = await world.text_to_image()(TextToImage(prompt="a private garden", width=128, height=128))

    assert world.annotator.annotated == []
    assert world.storage.files[(made.image.root, made.image.key)] == tiny_png(128, 128)


async def test_the_setting_when_the_image_is_stored_counts_so_queued_work_is_covered() -> None:
    world = World()
    job = await world.text_to_image().prepare(
        TextToImage(prompt="queued before the switch", width=128, height=128)
    )
    await world.update_settings()(SettingsPatch(embed_metadata=False))

    made = await world.tasks.run(job)

    assert world.annotator.annotated == []
    assert b"#provenance:" not in world.storage.files[(made.image.root, made.image.key)]


async def test_with_the_real_annotator_no_prompt_byte_is_stored_when_it_is_off() -> None:
    world = World(annotator=PillowImageAnnotator())
    on = await world.text_to_image()(TextToImage(prompt="a glass orchard", width=128, height=128))
    await world.update_settings()(SettingsPatch(embed_metadata=False))
    off = await world.text_to_image()(TextToImage(prompt="a glass orchard", width=128, height=128))

    assert b"a glass orchard" in world.storage.files[(on.image.root, on.image.key)]
    assert world.storage.files[(off.image.root, off.image.key)] == tiny_png(128, 128)


async def test_inspect_reads_a_generation_by_its_file_path_and_a_data_uri() -> None:
    world = World(annotator=PillowImageAnnotator())
    made = await world.text_to_image(seed=8)(TextToImage(prompt="a red kite", width=128, height=128))
    stored = world.storage.files[(made.image.root, made.image.key)]

    by_path = await world.inspect_image()(made.file_path)
    by_uri = await world.inspect_image()("data:image/png;base64," + base64.b64encode(stored).decode())

    assert by_path == by_uri
    assert [record.source for record in by_path] == [MetadataSource.IMAGESTUDIO, MetadataSource.AUTOMATIC1111]
    ours = by_path[0].parameters
    assert (ours.prompt, ours.seed, ours.task_id, ours.width) == ("a red kite", 8, made.task_id, 128)
    assert world.tasks.bytes.held == 0  # the input's hold is released once it is read


@pytest.mark.parametrize("reference", ["/etc/passwd", "../x.png", "https://example.com/a.png", "   "])
async def test_inspect_refuses_what_is_not_one_of_our_images_naming_the_field(reference: str) -> None:
    world = World()
    with pytest.raises(InvalidParameters) as refused:
        await world.inspect_image()(reference)
    assert refused.value.field == "image"
    assert world.tasks.bytes.held == 0


async def test_inspect_refuses_a_data_uri_that_is_not_an_image_and_a_missing_file() -> None:
    world = World()
    with pytest.raises(InvalidParameters) as refused:
        await world.inspect_image()("data:image/png;base64," + base64.b64encode(b"hello").decode())
    assert refused.value.field == "image"
    with pytest.raises(NotFound):
        await world.inspect_image()(f"/generated/day/{'a' * 32}.png")
    assert world.tasks.bytes.held == 0


async def test_an_image_without_a_record_reads_as_none() -> None:
    world = World()
    plain = "data:image/png;base64," + base64.b64encode(tiny_png(16, 16)).decode()
    assert await world.inspect_image()(plain) == []
