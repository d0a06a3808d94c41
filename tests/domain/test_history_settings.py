"""History and settings use cases against fakes."""

from __future__ import annotations

import pytest

from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound
from imagestudio.domain.model import HistoryQuery, Settings, SettingsPatch, TextToImage
from tests.domain.world import World

pytestmark = pytest.mark.anyio


async def _make(world: World, count: int) -> list[int]:
    ids = []
    for index in range(count):
        generation = await world.text_to_image()(TextToImage(prompt=f"picture {index}"))
        assert generation.id is not None
        ids.append(generation.id)
    return ids


async def test_history_is_newest_first_with_the_total() -> None:
    world = World()
    ids = await _make(world, 5)
    page = await world.list_history()(HistoryQuery(limit=2, offset=1))
    assert [g.id for g in page.items] == [ids[3], ids[2]]
    assert page.total == 5


async def test_getting_an_unknown_generation_is_not_found() -> None:
    world = World()
    with pytest.raises(NotFound, match="Generation not found"):
        await world.get_generation()(12345)


async def test_delete_removes_row_and_file_and_a_second_delete_is_not_found() -> None:
    world = World()
    [generation_id] = await _make(world, 1)
    generation = await world.get_generation()(generation_id)

    await world.delete_generation()(generation_id)

    assert world.repository.rows == {}
    assert (generation.image.root, generation.image.key) not in world.storage.files
    with pytest.raises(NotFound, match="Generation not found"):
        await world.delete_generation()(generation_id)


async def test_open_image_serves_only_images_of_generations() -> None:
    world = World()
    [generation_id] = await _make(world, 1)
    generation = await world.get_generation()(generation_id)
    found, stream = await world.open_image()(generation.image.key)
    assert found.id == generation_id
    data = b"".join([chunk async for chunk in stream.chunks])
    await stream.chunks.aclose()
    assert data == world.storage.files[(generation.image.root, generation.image.key)]
    assert stream.size == len(data)
    with pytest.raises(NotFound):
        await world.open_image()("day/unknown.png")


async def test_settings_update_is_partial_and_returns_everything() -> None:
    world = World()
    merged = await world.update_settings()(SettingsPatch(default_width=768))
    assert merged == Settings(default_width=768)
    assert await world.get_settings()() == merged


async def test_an_unwritable_storage_path_changes_nothing() -> None:
    world = World()
    world.storage.writable_check_fails = True
    with pytest.raises(InvalidStoragePath):
        await world.update_settings()(SettingsPatch(storage_path="/nope", default_width=768))
    assert await world.get_settings()() == Settings()


def test_history_query_limits() -> None:
    with pytest.raises(InvalidParameters):
        HistoryQuery(limit=0)
    with pytest.raises(InvalidParameters):
        HistoryQuery(limit=501)
    with pytest.raises(InvalidParameters):
        HistoryQuery(offset=-1)
    with pytest.raises(InvalidParameters):
        HistoryQuery(type="gif")  # type: ignore[arg-type]


async def test_a_storage_path_outside_the_roots_is_invalid_parameters_and_changes_nothing() -> None:
    world = World()
    world.storage.outside.add("/etc")
    with pytest.raises(InvalidParameters) as caught:
        await world.update_settings()(SettingsPatch(storage_path="/etc", default_width=768))
    assert caught.value.details == {"field": "storagePath"}
    assert await world.get_settings()() == Settings()


async def test_an_older_storage_folder_outside_the_roots_gets_no_image_and_the_engine_never_runs() -> None:
    world = World()
    [kept] = await _make(world, 1)
    await world.settings.update(SettingsPatch(storage_path="/old/outside"))
    world.storage.outside.add("/old/outside")
    before = dict(world.storage.files)
    with pytest.raises(InvalidStoragePath) as caught:
        await world.text_to_image()(TextToImage(prompt="a new picture"))
    assert caught.value.code == "STORAGE_ERROR"
    assert caught.value.details == {"field": "storagePath"}
    assert "set storagePath" in caught.value.message
    assert len(world.generator.calls) == 1  # only the first picture's
    assert world.storage.files == before
    assert list(world.repository.rows) == [kept]


async def test_deleting_a_generation_whose_file_lies_outside_the_roots_removes_the_row_only() -> None:
    world = World()
    await world.settings.update(SettingsPatch(storage_path="/old/outside"))
    [generation_id] = await _make(world, 1)
    generation = await world.get_generation()(generation_id)
    world.storage.outside.add("/old/outside")  # the roots were narrowed since it was made

    found, _ = await world.open_image()(generation.image.key)  # still served
    assert found.id == generation_id
    await world.delete_generation()(generation_id)

    assert world.repository.rows == {}
    assert (generation.image.root, generation.image.key) in world.storage.files
