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
    found, path = await world.open_image()(generation.image.key)
    assert found.id == generation_id
    assert path.endswith(generation.image.key)
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
