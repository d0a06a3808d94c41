"""The filesystem storage against a real folder."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from imagestudio.adapters.filesystem import TEMP_PREFIX, FilesystemImageStorage
from imagestudio.config import Config
from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound, StorageError
from imagestudio.domain.model import StoredImage

pytestmark = pytest.mark.anyio


async def test_save_writes_atomically_under_a_unique_name(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    stored = [await storage.save(b"abc%d" % i, "jpg", "./generated") for i in range(20)]
    assert len({s.key for s in stored}) == 20
    root = tmp_path / "generated"
    assert all(s.root == "generated" for s in stored)  # relative to the data dir, as rows keep it
    assert storage.location("generated") == str(root)
    assert (root / stored[3].key).read_bytes() == b"abc3"
    leftovers = [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert leftovers == []
    assert await storage.read(stored[5]) == b"abc5"
    assert await storage.local_path(stored[0]) == str(root / stored[0].key)


async def test_concurrent_saves_never_share_a_name(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    keys: list[str] = []

    async def one() -> None:
        keys.append((await storage.save(b"x", "png", "out")).key)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert len(set(keys)) == 50


async def test_an_absolute_storage_path_inside_a_root_is_used_as_is(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path / "data", roots=[tmp_path / "data", tmp_path / "pictures"])
    stored = await storage.save(b"x", "png", str(tmp_path / "pictures" / "studio"))
    assert Path(stored.root) == tmp_path / "pictures" / "studio"  # outside the data dir: absolute
    assert (Path(stored.root) / stored.key).read_bytes() == b"x"


async def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    blocker = tmp_path / "blocked"
    blocker.write_bytes(b"a file where a folder should be")
    with pytest.raises(StorageError):
        await storage.save(b"x", "jpg", "blocked")
    assert blocker.read_bytes() == b"a file where a folder should be"


async def test_delete_is_idempotent(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    stored = await storage.save(b"x", "jpg", "g")
    await storage.delete(stored)
    await storage.delete(stored)
    assert not (Path(storage.location(stored.root)) / stored.key).exists()
    with pytest.raises(NotFound):
        await storage.read(stored)


KEY = "2026-01-02/0123456789abcdef0123456789abcdef.png"


async def test_references_of_our_naming_scheme_inside_storage_are_read(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    image = tmp_path / "generated" / KEY
    image.parent.mkdir(parents=True)
    image.write_bytes(b"inside")
    assert storage.owns(KEY)
    assert await storage.read_reference(KEY, "./generated") == b"inside"


@pytest.mark.parametrize(
    "reference",
    [
        "sub/a.png",
        "a.png",
        "2026-01-02/a.png",
        "../secret.png",
        "/etc/passwd",
        "a\x00b",
        KEY.upper(),
        KEY + "/x",
    ],
)
async def test_a_name_of_another_form_is_refused_even_when_the_file_is_there(
    tmp_path: Path, reference: str
) -> None:
    storage = FilesystemImageStorage(tmp_path)
    (tmp_path / "generated" / "sub").mkdir(parents=True)
    (tmp_path / "generated" / "sub" / "a.png").write_bytes(b"a user's own file")
    (tmp_path / "generated" / "a.png").write_bytes(b"a user's own file")
    assert not storage.owns(reference)
    with pytest.raises(InvalidParameters):
        await storage.read_reference(reference, "./generated")


async def test_a_link_of_our_naming_scheme_that_leaves_storage_is_not_found(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path / "data")
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"secret")
    day = tmp_path / "data" / "generated" / "2026-01-02"
    day.mkdir(parents=True)
    (day / KEY.split("/")[1]).symlink_to(secret)
    (tmp_path / "data" / "generated" / "2026-01-03").symlink_to(secret.parent)
    (secret.parent / KEY.split("/")[1]).write_bytes(b"secret too")
    for key in (KEY, KEY.replace("01-02", "01-03")):
        with pytest.raises(NotFound):
            await storage.read_reference(key, "./generated")


async def test_a_missing_reference_inside_storage_is_not_found(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    with pytest.raises(NotFound):
        await storage.read_reference(KEY, "./generated")


async def test_a_reference_into_a_folder_outside_the_roots_is_refused(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path / "data")
    image = tmp_path / "elsewhere" / KEY
    image.parent.mkdir(parents=True)
    image.write_bytes(b"written by an older version")
    with pytest.raises(InvalidStoragePath):
        await storage.read_reference(KEY, str(tmp_path / "elsewhere"))


async def test_a_file_larger_than_the_read_limit_is_refused_and_a_file_at_it_is_read(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path, max_read_bytes=1000)
    image = tmp_path / "generated" / KEY
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x" * 1000)
    assert len(await storage.read_reference(KEY, "./generated")) == 1000
    stored = StoredImage(key=KEY, root=str(tmp_path / "generated"))
    assert len(await storage.read(stored)) == 1000
    os.truncate(image, 2**33)  # a sparse file far larger than the limit
    with pytest.raises(InvalidParameters) as caught:
        await storage.read_reference(KEY, "./generated")
    assert "MiB" in caught.value.message
    with pytest.raises(InvalidParameters):
        await storage.read(stored)


async def test_the_default_read_limit_is_the_body_limit(tmp_path: Path) -> None:
    assert FilesystemImageStorage(tmp_path).max_read_bytes == Config().max_body_size


async def test_ensure_writable_creates_the_folder_or_refuses(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    assert await storage.ensure_writable("new/deep") == str(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InvalidStoragePath) as caught:
        await storage.ensure_writable("file/sub")
    assert caught.value.code == "STORAGE_ERROR"
    assert str(tmp_path) not in caught.value.message
