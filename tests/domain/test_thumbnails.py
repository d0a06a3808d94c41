"""Thumbnails through the domain (fakes): made when the image is stored, all or nothing, deleted
with it, served only for generations, made on demand for rows from before thumbnails."""

from __future__ import annotations

import pytest

from imagestudio.domain.errors import NotFound, StorageError
from imagestudio.domain.model import (
    SettingsPatch,
    StoredImage,
    TaskStatus,
    TextToImage,
    Upscale,
    thumbnail_owner,
)
from imagestudio.domain.ports import read_stream
from tests.domain.world import World
from tests.fakes import FakeThumbnailMaker, InMemoryImageStorage

pytestmark = pytest.mark.anyio

HEX = "ab" * 16


def test_a_thumbnail_is_named_after_its_image_and_tells_which_image_it_belongs_to() -> None:
    image = StoredImage(key=f"2026-01-02/{HEX}.png", root="/data/generated")
    assert image.thumbnail == StoredImage(key=f"2026-01-02/{HEX}.png.thumb.webp", root="/data/generated")
    assert image.thumbnail.file_path == f"/generated/2026-01-02/{HEX}.png.thumb.webp"
    assert thumbnail_owner(image.thumbnail.key) == image.key
    for key in (
        image.key,
        ".thumb.webp",
        "day/.thumb.webp",
        f"{image.thumbnail.key}.thumb.webp",
        "x.thumb.web",
    ):
        assert thumbnail_owner(key) is None, key


async def test_a_generation_stores_the_thumbnail_of_its_image_beside_it() -> None:
    world = World()
    generation = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=512, height=768))
    image = world.storage.files[(generation.image.root, generation.image.key)]
    thumbnail = world.storage.files[(generation.image.root, generation.image.thumbnail.key)]
    assert thumbnail == FakeThumbnailMaker.thumbnail_of(image)
    assert generation.thumbnail_path == f"/generated/{generation.image.key}.thumb.webp"


async def test_an_upscale_gets_the_thumbnail_of_its_own_image() -> None:
    world = World()
    source = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))
    upscaled = await world.upscale()(Upscale(source=source.file_path, scale=2))
    image = world.storage.files[(upscaled.image.root, upscaled.image.key)]
    assert world.storage.files[(upscaled.image.root, upscaled.image.thumbnail.key)] == (
        FakeThumbnailMaker.thumbnail_of(image)
    )


async def test_a_thumbnail_that_cannot_be_written_leaves_no_image_no_row_and_fails_the_task() -> None:
    world = World(storage=InMemoryImageStorage(fail_thumbnail_writes=True))
    with pytest.raises(StorageError, match="thumbnail"):
        await world.text_to_image()(TextToImage(prompt="a cat", task_id="t1"))
    assert world.storage.files == {}
    assert world.repository.rows == {}
    terminal = [e for e in world.events.for_task("t1") if e.status.is_terminal]
    assert [(e.status, e.code) for e in terminal] == [(TaskStatus.FAILED, "STORAGE_ERROR")]


async def test_a_thumbnail_that_cannot_be_made_stores_nothing() -> None:
    world = World(thumbnails=FakeThumbnailMaker(fail_with=StorageError("Could not make the thumbnail: boom")))
    with pytest.raises(StorageError, match="Could not make the thumbnail"):
        await world.text_to_image()(TextToImage(prompt="a cat", task_id="t2"))
    assert world.storage.files == {}
    assert world.repository.rows == {}
    assert world.events.for_task("t2")[-1].code == "STORAGE_ERROR"


async def test_a_row_that_cannot_be_written_takes_the_image_and_its_thumbnail_away() -> None:
    from imagestudio.domain.errors import DatabaseError

    world = World()
    world.repository.fail_adds = DatabaseError("Database error: disk I/O error")
    with pytest.raises(DatabaseError):
        await world.text_to_image()(TextToImage(prompt="a cat"))
    assert world.storage.files == {}


async def test_deleting_a_generation_deletes_its_image_and_its_thumbnail() -> None:
    world = World()
    kept = await world.text_to_image()(TextToImage(prompt="a cat"))
    gone = await world.text_to_image()(TextToImage(prompt="a dog"))
    assert gone.id is not None
    await world.delete_generation()(gone.id)
    assert set(world.storage.files) == {
        (kept.image.root, kept.image.key),
        (kept.image.root, kept.image.thumbnail.key),
    }


async def test_the_thumbnail_of_a_generation_opens_as_webp_and_nothing_else_does() -> None:
    world = World()
    generation = await world.text_to_image()(TextToImage(prompt="a cat"))
    opened, stream = await world.open_image()(generation.image.thumbnail.key)
    assert opened == generation
    assert stream.media_type == "image/webp"
    assert (
        await read_stream(stream)
        == world.storage.files[(generation.image.root, generation.image.thumbnail.key)]
    )

    stray = StoredImage(key=f"day/{HEX}.png", root=generation.image.root)  # a file no row names
    world.storage.plant(stray, b"copied in")
    world.storage.plant(stray.thumbnail, b"its thumbnail")
    for key in (
        stray.thumbnail.key,
        f"{generation.image.thumbnail.key}.thumb.webp",
        f"../{generation.image.thumbnail.key}",
        f"day/../{generation.image.thumbnail.key}",
        ".thumb.webp",
    ):
        with pytest.raises(NotFound):
            await world.open_image()(key)


async def test_a_missing_thumbnail_is_made_on_first_request_and_kept() -> None:
    """A row from before thumbnails: the first request makes it from the image, later ones read it."""
    world = World()
    generation = await world.text_to_image()(TextToImage(prompt="a cat"))
    place = (generation.image.root, generation.image.thumbnail.key)
    del world.storage.files[place]
    made_before = world.thumbnails.made

    _, first = await world.open_image()(generation.image.thumbnail.key)
    assert await read_stream(first) == FakeThumbnailMaker.thumbnail_of(
        world.storage.files[(generation.image.root, generation.image.key)]
    )
    assert place in world.storage.files
    _, second = await world.open_image()(generation.image.thumbnail.key)
    assert await read_stream(second) == world.storage.files[place]
    assert world.thumbnails.made == made_before + 1  # once


async def test_a_missing_thumbnail_of_a_missing_image_is_not_found() -> None:
    world = World()
    generation = await world.text_to_image()(TextToImage(prompt="a cat"))
    await world.storage.delete(generation.image)
    with pytest.raises(NotFound):
        await world.open_image()(generation.image.thumbnail.key)
    assert world.storage.files == {}


async def test_a_thumbnail_that_cannot_be_kept_is_still_sent() -> None:
    """Outside the storage roots (a folder an older version used) nothing is written: the thumbnail
    is made for the answer alone."""
    world = World()
    generation = await world.text_to_image()(TextToImage(prompt="a cat"))
    await world.settings.update(SettingsPatch(storage_path="./new"))
    del world.storage.files[(generation.image.root, generation.image.thumbnail.key)]
    world.storage.outside.add(generation.image.root)
    files = dict(world.storage.files)

    _, stream = await world.open_image()(generation.image.thumbnail.key)
    assert stream.media_type == "image/webp"
    assert await read_stream(stream) == FakeThumbnailMaker.thumbnail_of(
        files[(generation.image.root, generation.image.key)]
    )
    assert world.storage.files == files


async def test_serving_hands_out_the_storage_link_when_it_has_one_and_the_stream_otherwise() -> None:
    world = World(storage=InMemoryImageStorage(links=True))
    generation = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))
    image = generation.image
    _, served = await world.open_image().serve(image.key)
    assert served == f"{InMemoryImageStorage.LINK_BASE}{image.root}/{image.key}?signed"
    _, thumbnail = await world.open_image().serve(image.thumbnail.key)
    assert thumbnail == f"{InMemoryImageStorage.LINK_BASE}{image.root}/{image.thumbnail.key}?signed"

    world.storage.links = False
    _, stream = await world.open_image().serve(image.key)
    assert not isinstance(stream, str)
    assert await read_stream(stream) == world.storage.files[(image.root, image.key)]


async def test_serving_a_missing_thumbnail_with_links_makes_it_sends_it_once_then_links_it() -> None:
    world = World(storage=InMemoryImageStorage(links=True))
    generation = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))
    image = generation.image
    del world.storage.files[(image.root, image.thumbnail.key)]
    _, made = await world.open_image().serve(image.thumbnail.key)
    assert not isinstance(made, str)
    assert await read_stream(made) == FakeThumbnailMaker.thumbnail_of(
        world.storage.files[(image.root, image.key)]
    )
    _, linked = await world.open_image().serve(image.thumbnail.key)
    assert isinstance(linked, str)  # stored on the first request


async def test_serving_with_links_is_not_found_for_what_is_gone_or_no_generation_names() -> None:
    world = World(storage=InMemoryImageStorage(links=True))
    generation = await world.text_to_image()(TextToImage(prompt="a lighthouse", width=128, height=128))
    image = generation.image
    planted = StoredImage(key=world.storage.own_key(), root=image.root)
    world.storage.plant(planted)
    with pytest.raises(NotFound):
        await world.open_image().serve(planted.key)  # in storage, but no generation names it
    del world.storage.files[(image.root, image.key)]
    with pytest.raises(NotFound):
        await world.open_image().serve(image.key)
