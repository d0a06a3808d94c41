"""The filesystem storage keeps to its storage roots, on real folders and real symbolic links.

Nothing is created, written, scanned or deleted outside the roots; images an older version
recorded outside them are still read and located.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagestudio.adapters.filesystem import MIN_FREE_BYTES, FilesystemImageStorage
from imagestudio.bootstrap import storage_for
from imagestudio.config import Config
from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, StorageError
from imagestudio.domain.model import StoredImage

pytestmark = pytest.mark.anyio
KEY = "2026-01-02/0123456789abcdef0123456789abcdef.png"


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """``data`` (the data dir), ``pictures`` (a second root) and ``outside`` (neither)."""
    for name in ("data", "pictures", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "data" / "to-outside").symlink_to(tmp_path / "outside")
    (tmp_path / "data" / "to-pictures").symlink_to(tmp_path / "pictures")
    return tmp_path


def storage_in(world: Path, **options: int) -> FilesystemImageStorage:
    return FilesystemImageStorage(world / "data", roots=[world / "data", world / "pictures"], **options)


def is_folder(path: str) -> bool:
    return Path(path).is_dir()


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(
    "storage_path",
    [
        "/",
        "/etc",
        "/tmp",
        "~",
        "~/imagestudio",
        "..",
        "../../..",
        "../outside/new",
        "to-outside",
        "to-outside/new",
    ],
)
async def test_a_storage_path_outside_the_roots_is_refused_before_anything_is_created(
    world: Path, storage_path: str
) -> None:
    storage = storage_in(world)
    before = {name: listing(world / name) for name in ("data", "outside")}
    with pytest.raises(InvalidParameters) as caught:
        await storage.ensure_writable(storage_path)
    assert caught.value.code == "INVALID_PARAMETERS"
    assert caught.value.details == {"field": "storagePath"}
    assert {name: listing(world / name) for name in ("data", "outside")} == before


async def test_an_absolute_path_outside_the_roots_is_refused(world: Path) -> None:
    with pytest.raises(InvalidParameters):
        await storage_in(world).ensure_writable(str(world / "outside" / "new"))
    assert not (world / "outside" / "new").exists()


@pytest.mark.parametrize("storage_path", ["./generated", ".", "to-pictures/studio", "deep/er/folder"])
async def test_a_storage_path_inside_a_root_is_created_and_accepted(world: Path, storage_path: str) -> None:
    storage = storage_in(world)
    folder = await storage.ensure_writable(storage_path)
    assert is_folder(folder)
    assert await storage.confined(folder)
    assert is_folder(await storage.ensure_writable(str(world / "pictures" / "absolute")))


async def test_a_home_folder_inside_a_root_is_accepted(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(world / "pictures"))
    storage = storage_in(world)
    assert await storage.ensure_writable("~/studio") == str(world / "pictures" / "studio")


async def test_a_disk_without_room_is_refused_and_nothing_is_created(world: Path) -> None:
    free = os.statvfs(world).f_bavail * os.statvfs(world).f_frsize
    storage = storage_in(world, min_free_bytes=free + 2**40)
    with pytest.raises(InvalidStoragePath) as caught:
        await storage.ensure_writable("./generated")
    assert caught.value.code == "STORAGE_ERROR"
    assert caught.value.details == {"field": "storagePath"}
    assert "free" in caught.value.message
    assert not (world / "data" / "generated").exists()


def test_the_default_free_space_needed_is_64_mib(world: Path) -> None:
    assert MIN_FREE_BYTES == 64 * 2**20
    assert storage_in(world).min_free_bytes == MIN_FREE_BYTES


async def test_saving_into_a_folder_outside_the_roots_is_refused_and_writes_nothing(world: Path) -> None:
    storage = storage_in(world)
    for folder in (str(world / "outside"), "to-outside", "../outside"):
        with pytest.raises(InvalidStoragePath) as caught:
            await storage.save(b"x", "png", folder)
        assert caught.value.details == {"field": "storagePath"}
    assert listing(world / "outside") == set()


async def test_a_day_folder_that_links_out_of_storage_gets_no_image(world: Path) -> None:
    storage = storage_in(world)
    stored = await storage.save(b"x", "png", "generated")
    day = Path(storage.location(stored.root)) / stored.key.split("/")[0]
    (day / stored.key.split("/")[1]).unlink()
    day.rmdir()
    day.symlink_to(world / "outside")
    with pytest.raises(InvalidStoragePath):
        await storage.save(b"y", "png", "generated")
    assert listing(world / "outside") == set()


async def test_an_image_recorded_outside_the_roots_is_still_read_and_located_but_never_deleted(
    world: Path,
) -> None:
    storage = storage_in(world)
    file = world / "outside" / KEY
    file.parent.mkdir(parents=True)
    file.write_bytes(b"an older version wrote me here")
    image = StoredImage(key=KEY, root=str(world / "outside"))
    assert await storage.read(image) == b"an older version wrote me here"
    assert await storage.local_path(image) == str(file)
    assert not await storage.confined(image.root)
    await storage.delete(image)
    assert file.read_bytes() == b"an older version wrote me here"


async def test_delete_through_a_day_folder_swapped_for_a_link_leaves_the_target_alone(world: Path) -> None:
    storage = storage_in(world)
    target = world / "outside" / KEY.split("/")[1]
    target.write_bytes(b"not ours")
    (world / "data" / "generated").mkdir()
    (world / "data" / "generated" / KEY.split("/")[0]).symlink_to(world / "outside")
    await storage.delete(StoredImage(key=KEY, root=str(world / "data" / "generated")))
    assert target.read_bytes() == b"not ours"


async def test_scanning_a_folder_outside_the_roots_is_refused(world: Path) -> None:
    storage = storage_in(world)
    with pytest.raises(StorageError):
        await storage.scan(str(world / "outside"))
    with pytest.raises(StorageError):
        await storage.scan(str(world / "data" / "to-outside"))
    assert await storage.scan(str(world / "data" / "to-pictures")) == []


async def test_the_wired_storage_takes_its_roots_and_read_limit_from_the_config(world: Path) -> None:
    config = Config(data_dir=world / "data", storage_roots=(world / "pictures",), max_body_size=4096)
    storage = storage_for(config)
    assert storage.roots == (world / "data", world / "pictures")
    assert storage.max_read_bytes == 4096
    assert await storage.confined(str(world / "pictures" / "x"))
    assert not await storage.confined(str(world / "outside"))
