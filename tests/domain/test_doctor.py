"""The consistency check and repair (``imagestudio doctor``) against fakes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from imagestudio.domain.doctor import CheckConsistency, Problem
from imagestudio.domain.errors import StorageError
from imagestudio.domain.model import SettingsPatch, StoredImage, TextToImage
from imagestudio.domain.ports import StoredFile, StoredStream
from tests.domain.world import World
from tests.fakes import FakeThumbnailMaker, InMemoryGenerationRepository, InMemoryImageStorage

pytestmark = pytest.mark.anyio

ROOT = "./generated"


def doctor(world: World, page_size: int = 500) -> CheckConsistency:
    return CheckConsistency(
        repository=world.repository,
        storage=world.storage,
        settings=world.settings,
        clock=world.clock,
        thumbnails=world.thumbnails,
        page_size=page_size,
    )


async def make(world: World, count: int) -> list[int]:
    ids = []
    for index in range(count):
        generation = await world.text_to_image()(TextToImage(prompt=f"picture {index}"))
        assert generation.id is not None
        ids.append(generation.id)
    return ids


async def test_a_history_whose_rows_and_files_agree_is_consistent() -> None:
    world = World()
    await make(world, 3)
    report = await doctor(world)()
    assert report.consistent
    assert report.findings == ()
    assert (report.rows, report.files) == (3, 3)
    assert report.roots == (ROOT,)


async def test_rows_are_read_page_by_page_and_each_is_checked_once() -> None:
    world = World()
    await make(world, 7)
    report = await doctor(world, page_size=2)()
    assert report.consistent
    assert (report.rows, report.files) == (7, 7)


async def test_a_row_whose_file_is_gone_is_reported_and_kept_without_prune() -> None:
    world = World()
    first, _ = await make(world, 2)
    gone = world.repository.rows[first].image
    await world.storage.delete(gone)

    report = await doctor(world)(repair=True)
    assert not report.consistent
    [finding] = report.remaining
    assert finding.problem is Problem.MISSING_FILE
    assert finding.generation_id == first
    assert finding.image == gone
    assert first in world.repository.rows


async def test_prune_missing_deletes_only_the_rows_whose_file_is_gone() -> None:
    world = World()
    first, second = await make(world, 2)
    await world.storage.delete(world.repository.rows[first].image)

    report = await doctor(world)(repair=True, prune_missing=True)
    assert report.consistent
    assert [f.generation_id for f in report.repaired] == [first]
    assert list(world.repository.rows) == [second]
    assert (await doctor(world)()).consistent


async def test_stale_temporaries_and_unreferenced_images_are_found_and_removed_by_a_repair() -> None:
    world = World()
    [kept] = await make(world, 1)
    temporary = StoredImage(key="day/.tmp-0123", root=ROOT)
    orphan = StoredImage(key="day/orphan.png", root=ROOT)
    world.storage.plant(temporary, b"half")
    world.storage.plant(orphan, b"whole image")

    checked = await doctor(world)()
    assert not checked.consistent
    assert {(f.problem, f.image) for f in checked.findings} == {
        (Problem.STALE_TEMPORARY, temporary),
        (Problem.UNREFERENCED_FILE, orphan),
    }
    assert (ROOT, orphan.key) in world.storage.files  # a check changes nothing

    repaired = await doctor(world)(repair=True)
    assert repaired.consistent
    assert len(repaired.repaired) == 2
    image = world.repository.rows[kept].image
    assert set(world.storage.files) == {(ROOT, image.key), (ROOT, image.thumbnail.key)}
    assert (await doctor(world)()).consistent


async def test_files_younger_than_the_minimum_age_are_neither_judged_nor_removed() -> None:
    world = World()
    young = StoredImage(key="day/young.png", root=ROOT)
    young_temporary = StoredImage(key="day/.tmp-young", root=ROOT)
    for image in (young, young_temporary):
        world.storage.plant(image, modified_at=world.clock.current)

    report = await doctor(world)(repair=True)
    assert report.consistent
    assert {f.image for f in report.recent} == {young, young_temporary}
    assert (ROOT, young.key) in world.storage.files
    assert (ROOT, young_temporary.key) in world.storage.files

    older = await doctor(world)(repair=True, min_age=timedelta(0))
    assert len(older.repaired) == 2
    assert world.storage.files == {}


async def test_every_root_in_use_is_scanned_the_current_one_first() -> None:
    world = World()
    await make(world, 1)
    await world.settings.update(SettingsPatch(storage_path="./elsewhere"))
    await make(world, 1)
    world.storage.plant(StoredImage(key="day/left-behind.jpg", root=ROOT))

    report = await doctor(world)()
    assert report.roots == ("./elsewhere", ROOT)
    assert [(f.problem, f.image.root) for f in report.findings] == [(Problem.UNREFERENCED_FILE, ROOT)]


async def test_a_folder_in_use_outside_the_storage_roots_is_reported_never_scanned_nor_repaired() -> None:
    world = World()
    await make(world, 1)
    await world.settings.update(SettingsPatch(storage_path="/backup/images"))
    [gone_id] = await make(world, 1)
    world.storage.outside.add("/backup/images")  # the roots no longer include it
    stray = StoredImage(key="day/" + "ab" * 16 + ".png", root="/backup/images")
    world.storage.plant(stray)
    gone = world.repository.rows[gone_id].image
    del world.storage.files[(gone.root, gone.key)]

    report = await doctor(world)(repair=True, prune_missing=True, min_age=timedelta(0))
    assert report.roots == (ROOT,)
    assert report.outside == ("/backup/images",)
    assert report.current == "/backup/images"
    assert (stray.root, stray.key) in world.storage.files
    assert [(f.problem, f.repaired) for f in report.findings] == [(Problem.MISSING_FILE, True)]
    assert gone_id not in world.repository.rows  # the row goes; nothing outside is touched


async def test_a_file_that_a_row_names_under_another_root_is_kept_and_its_row_is_not_pruned() -> None:
    world = World()
    [moved_id] = await make(world, 1)
    original = world.repository.rows[moved_id].image
    data = world.storage.files.pop((original.root, original.key))
    await world.settings.update(SettingsPatch(storage_path="./moved"))
    world.storage.plant(StoredImage(key=original.key, root="./moved"), data)

    report = await doctor(world)(repair=True, prune_missing=True)
    [finding] = report.findings
    assert finding.problem is Problem.MISSING_FILE
    assert not finding.repaired
    assert finding.note is not None
    assert "./moved" in finding.note
    assert moved_id in world.repository.rows
    assert ("./moved", original.key) in world.storage.files


class RecordsARowDuringTheScan(InMemoryImageStorage):
    """Storage whose scan lets a running server record ``late``'s row meanwhile."""

    def __init__(self, late: StoredImage) -> None:
        super().__init__()
        self.late = late
        self.repository: InMemoryGenerationRepository | None = None

    async def scan(self, root: str) -> list[StoredFile]:
        files = await super().scan(root)
        assert self.repository is not None
        template = next(iter(self.repository.rows.values()))
        await self.repository.add(replace(template, id=None, image=self.late))
        return files


async def test_an_image_recorded_while_the_check_runs_is_not_called_unreferenced() -> None:
    late = StoredImage(key="day/late.png", root=ROOT)
    storage = RecordsARowDuringTheScan(late)
    world = World(storage=storage)
    storage.repository = world.repository
    await make(world, 1)
    storage.plant(late)

    report = await doctor(world)(repair=True)
    assert report.consistent
    assert (ROOT, late.key) in storage.files


class UnreadableStorage(InMemoryImageStorage):
    """Storage in which the files of ``unreadable`` keys exist but cannot be read, and are not
    listed by a scan (as with names from an older layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.unreadable: set[str] = set()

    async def scan(self, root: str) -> list[StoredFile]:
        return [f for f in await super().scan(root) if f.image.key not in self.unreadable]

    async def open(self, image: StoredImage) -> StoredStream:
        if image.key in self.unreadable:
            raise StorageError("Could not read the image: permission denied")
        return await super().open(image)


async def test_a_row_whose_file_cannot_be_read_is_reported_and_never_pruned() -> None:
    storage = UnreadableStorage()
    world = World(storage=storage)
    [locked, _] = await make(world, 2)
    storage.unreadable.add(world.repository.rows[locked].image.key)

    report = await doctor(world)(repair=True, prune_missing=True)
    [finding] = report.findings
    assert finding.problem is Problem.UNREADABLE_FILE
    assert finding.generation_id == locked
    assert finding.note == "Could not read the image: permission denied"
    assert not finding.repaired
    assert not report.consistent
    assert locked in world.repository.rows


# --- thumbnails -------------------------------------------------------------------------------


async def test_a_row_without_its_thumbnail_is_reported_and_a_repair_makes_it_from_the_image() -> None:
    world = World()
    first, _ = await make(world, 2)
    image = world.repository.rows[first].image
    del world.storage.files[(image.root, image.thumbnail.key)]

    checked = await doctor(world)()
    assert not checked.consistent
    [finding] = checked.findings
    assert (finding.problem, finding.generation_id, finding.image) == (
        Problem.MISSING_THUMBNAIL,
        first,
        image.thumbnail,
    )
    assert (checked.files, checked.thumbnails) == (2, 1)
    assert (image.root, image.thumbnail.key) not in world.storage.files  # a check changes nothing

    repaired = await doctor(world)(repair=True)
    assert repaired.consistent
    assert [f.repaired for f in repaired.findings] == [True]
    assert world.storage.files[(image.root, image.thumbnail.key)] == FakeThumbnailMaker.thumbnail_of(
        world.storage.files[(image.root, image.key)]
    )
    assert (await doctor(world)()).thumbnails == 2


async def test_a_thumbnail_that_cannot_be_made_is_reported_with_the_reason() -> None:
    world = World()
    [only] = await make(world, 1)
    image = world.repository.rows[only].image
    del world.storage.files[(image.root, image.thumbnail.key)]
    world.storage.files[(image.root, image.key)] = b"no longer an image"

    report = await doctor(world)(repair=True)
    [finding] = report.remaining
    assert finding.problem is Problem.MISSING_THUMBNAIL
    assert finding.note == "not made: Could not make the thumbnail: the image could not be decoded"
    assert (image.root, image.thumbnail.key) not in world.storage.files


async def test_a_thumbnail_whose_image_no_row_names_is_unreferenced_and_removed_by_a_repair() -> None:
    world = World()
    [kept] = await make(world, 1)
    image = world.repository.rows[kept].image
    orphan = StoredImage(key="day/" + "cd" * 16 + ".png", root=ROOT).thumbnail  # its image is gone
    world.storage.plant(orphan, b"small")

    checked = await doctor(world)()
    assert [(f.problem, f.image) for f in checked.findings] == [(Problem.UNREFERENCED_FILE, orphan)]

    repaired = await doctor(world)(repair=True)
    assert repaired.consistent
    assert set(world.storage.files) == {(ROOT, image.key), (ROOT, image.thumbnail.key)}


async def test_an_unreferenced_image_goes_with_its_thumbnail() -> None:
    world = World()
    await make(world, 1)
    orphan = StoredImage(key="day/" + "ef" * 16 + ".png", root=ROOT)
    world.storage.plant(orphan, b"whole image")
    world.storage.plant(orphan.thumbnail, b"small")

    checked = await doctor(world)()
    assert {(f.problem, f.image) for f in checked.findings} == {
        (Problem.UNREFERENCED_FILE, orphan),
        (Problem.UNREFERENCED_FILE, orphan.thumbnail),
    }
    await doctor(world)(repair=True)
    assert (ROOT, orphan.key) not in world.storage.files
    assert (ROOT, orphan.thumbnail.key) not in world.storage.files


async def test_pruning_a_row_whose_image_is_gone_removes_its_thumbnail_too() -> None:
    world = World()
    [gone] = await make(world, 1)
    image = world.repository.rows[gone].image
    del world.storage.files[(image.root, image.key)]

    checked = await doctor(world)()
    assert [f.problem for f in checked.findings] == [Problem.MISSING_FILE]  # not also its thumbnail

    report = await doctor(world)(repair=True, prune_missing=True)
    assert report.consistent
    assert world.storage.files == {}
    assert world.repository.rows == {}


async def test_a_storage_that_cannot_be_written_is_a_problem_no_repair_fixes() -> None:
    world = World()
    await make(world, 2)
    world.storage.writable_check_fails = True
    report = await doctor(world)(repair=True)
    assert report.unwritable == "Storage folder cannot be created or written"
    assert report.findings == ()
    assert not report.consistent
    world.storage.writable_check_fails = False
    assert (await doctor(world)()).consistent


async def test_a_current_folder_outside_the_roots_is_not_probed() -> None:
    world = World(storage=InMemoryImageStorage(outside=("/elsewhere",)))
    await world.settings.update(SettingsPatch(storage_path="/elsewhere"))
    report = await doctor(world)()
    assert report.unwritable is None  # nothing is written there anyway: reported in outside
    assert report.outside == ("/elsewhere",)
