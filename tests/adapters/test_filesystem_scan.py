"""What ``imagestudio doctor`` sees of storage (``scan``, on the filesystem and, as a contract, on the
fake too) and the filesystem storage's write failures."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagestudio.adapters.filesystem import TEMP_PREFIX, FilesystemImageStorage
from imagestudio.domain.errors import StorageError
from imagestudio.domain.model import StoredImage
from imagestudio.domain.ports import ImageStorage
from tests.fakes import InMemoryImageStorage

pytestmark = pytest.mark.anyio
HEX = "0123456789abcdef0123456789abcdef"


async def test_scan_lists_saved_images_and_leftover_temporaries_by_their_keys(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    saved = [await storage.save(b"image %d" % i, ext, "generated") for i, ext in enumerate(("jpg", "png"))]
    root = await storage.root_of("generated")
    assert root == saved[0].root == "generated"
    folder = tmp_path / "generated"
    day = saved[0].key.split("/")[0]
    (folder / day / f"{TEMP_PREFIX}{HEX}").write_bytes(b"half")
    (folder / f"{TEMP_PREFIX}probe-{HEX}").write_bytes(b"")

    found = await storage.scan(root)
    images = {f.image: f for f in found if not f.temporary}
    temporaries = {f.image.key for f in found if f.temporary}
    assert set(images) == set(saved)
    assert images[saved[0]].size == len(b"image 0")
    age = dt.datetime.now(dt.UTC) - images[saved[0]].modified_at
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=1)
    assert temporaries == {f"{day}/{TEMP_PREFIX}{HEX}", f"{TEMP_PREFIX}probe-{HEX}"}

    for stale in found:
        if stale.temporary:
            await storage.delete(stale.image)
    assert [f for f in await storage.scan(root) if f.temporary] == []


async def test_scan_ignores_files_it_did_not_name_and_never_follows_links(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    root = tmp_path / "generated"
    day = root / "2026-01-02"
    day.mkdir(parents=True)
    (root / "holiday.jpg").write_bytes(b"a user's own picture")
    (day / "holiday.jpg").write_bytes(b"another")
    (day / f"{HEX}.gif").write_bytes(b"not an extension we write")
    (root / "album").mkdir()
    (root / "album" / f"{HEX}.jpg").write_bytes(b"not in a day folder")
    outside = tmp_path / "outside"
    (outside / "2026-01-03").mkdir(parents=True)
    (outside / "2026-01-03" / f"{HEX}.jpg").write_bytes(b"outside")
    (root / "2026-01-03").symlink_to(outside / "2026-01-03")
    (day / f"{'f' * 32}.jpg").symlink_to(outside / "2026-01-03" / f"{HEX}.jpg")
    (day / f"{'e' * 32}.png").mkdir()

    assert await storage.scan(str(root)) == []


async def test_scanning_a_root_that_does_not_exist_finds_nothing(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    assert await storage.scan(str(tmp_path / "never-made")) == []
    (tmp_path / "a-file").write_bytes(b"")
    assert await storage.scan(str(tmp_path / "a-file")) == []


async def test_a_file_where_the_day_folder_belongs_fails_the_write_readably(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    root = tmp_path / "generated"
    root.mkdir()
    for day in _today_and_tomorrow():
        (root / day).write_bytes(b"in the way")

    with pytest.raises(StorageError, match="a file stands where a storage folder should be"):
        await storage.save(b"image", "jpg", "generated")
    assert sorted(p.name for p in root.iterdir()) == sorted(_today_and_tomorrow())


def test_a_file_size_limit_fails_the_write_readably_and_leaves_no_temporary(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel refuse to grow a file (EFBIG): a real limit, in a child process."""
    script = textwrap.dedent(
        """
        import json, resource, sys
        import anyio
        from imagestudio.adapters.filesystem import FilesystemImageStorage
        from imagestudio.domain.errors import StorageError

        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            anyio.run(FilesystemImageStorage(sys.argv[1]).save, b"x" * 65536, "jpg", "generated")
        except StorageError as error:
            print(json.dumps({"code": error.code, "message": error.message}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    error = json.loads(done.stdout)
    assert error["code"] == "STORAGE_ERROR"
    assert "larger than the file system or a file size limit allows" in error["message"]
    assert str(tmp_path) not in error["message"]
    assert [p for p in (tmp_path / "generated").rglob("*") if p.is_file()] == []


async def test_delete_of_a_scanned_temporary_removes_only_that_file(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    kept = await storage.save(b"kept", "jpg", "generated")
    day = kept.key.split("/")[0]
    temporary = StoredImage(key=f"{day}/{TEMP_PREFIX}{HEX}", root=kept.root)
    root = tmp_path / "generated"
    (root / temporary.key).write_bytes(b"half")
    await storage.delete(temporary)
    assert [f.image for f in await storage.scan(kept.root)] == [kept]
    assert (root / kept.key).is_file()


def _today_and_tomorrow() -> list[str]:
    today = dt.datetime.now(dt.UTC).date()
    return [str(today), str(today + dt.timedelta(days=1))]


@pytest.fixture(params=["in-memory", "filesystem"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStorage:
    if request.param == "in-memory":
        return InMemoryImageStorage()
    return FilesystemImageStorage(tmp_path)


async def test_every_storage_scans_what_it_saved_under_the_root_of_the_storage_path(
    any_storage: ImageStorage,
) -> None:
    saved = [await any_storage.save(b"image %d" % i, "png", "pictures") for i in range(3)]
    root = await any_storage.root_of("pictures")
    assert {s.root for s in saved} == {root}

    found = await any_storage.scan(root)
    assert {f.image for f in found} == set(saved)
    assert all(not f.temporary and f.size == len(b"image 0") for f in found)

    await any_storage.delete(saved[0])
    assert {f.image for f in await any_storage.scan(root)} == set(saved[1:])
    assert await any_storage.scan(await any_storage.root_of("never-used")) == []
