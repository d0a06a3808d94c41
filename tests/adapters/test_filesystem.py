"""The filesystem storage against a real folder."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from imagestudio.adapters.filesystem import TEMP_PREFIX, FilesystemImageStorage
from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound, StorageError

pytestmark = pytest.mark.anyio


async def test_save_writes_atomically_under_a_unique_name(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    stored = [await storage.save(b"abc%d" % i, "jpg", "./generated") for i in range(20)]
    assert len({s.key for s in stored}) == 20
    root = tmp_path / "generated"
    assert all(s.root == str(root) for s in stored)
    assert (root / stored[3].key).read_bytes() == b"abc3"
    leftovers = [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert leftovers == []
    assert await storage.read(stored[5]) == b"abc5"
    assert await storage.locate(stored[0]) == str(root / stored[0].key)


async def test_concurrent_saves_never_share_a_name(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    keys: list[str] = []

    async def one() -> None:
        keys.append((await storage.save(b"x", "png", "out")).key)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert len(set(keys)) == 50


async def test_an_absolute_storage_path_is_used_as_is(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path / "data")
    stored = await storage.save(b"x", "png", str(tmp_path / "abs"))
    assert Path(stored.root) == tmp_path / "abs"


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
    assert not (Path(stored.root) / stored.key).exists()
    with pytest.raises(NotFound):
        await storage.read(stored)


async def test_references_inside_storage_are_read(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    root = tmp_path / "generated"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"inside")
    assert await storage.read_reference("sub/a.png", "./generated") == b"inside"
    assert await storage.read_reference("./sub/a.png", "./generated") == b"inside"
    assert await storage.read_reference(str(root / "sub" / "a.png"), "./generated") == b"inside"


async def test_references_that_leave_storage_are_refused_without_opening(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    root = tmp_path / "generated"
    root.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    (root / "link.png").symlink_to(secret)
    (root / "dirlink").symlink_to(tmp_path)
    for reference in [
        "../secret.png",
        str(secret),
        "link.png",
        "dirlink/secret.png",
        "/etc/passwd",
        "a\x00b",
    ]:
        with pytest.raises(InvalidParameters):
            await storage.read_reference(reference, "./generated")


async def test_a_missing_reference_inside_storage_is_not_found(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    with pytest.raises(NotFound):
        await storage.read_reference("nope.png", "./generated")


async def test_ensure_writable_creates_the_folder_or_refuses(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    assert await storage.ensure_writable("new/deep") == str(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InvalidStoragePath) as caught:
        await storage.ensure_writable("file/sub")
    assert caught.value.code == "STORAGE_ERROR"
    assert str(tmp_path) not in caught.value.message
