"""Contract tests: the in-memory storage fake and the filesystem adapter answer the same way.

Images leave storage as bytes (``read``) or as an opened ``StoredStream`` (``open``), never only as
a path, so an object store can stand behind the same port: a new adapter joins ``storage`` below.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from imagestudio.adapters.filesystem import CHUNK_BYTES, FilesystemImageStorage
from imagestudio.domain.errors import NotFound
from imagestudio.domain.model import StoredImage
from imagestudio.domain.ports import ImageStorage, StoredStream
from tests.fakes import InMemoryImageStorage

pytestmark = pytest.mark.anyio

FOLDER = "./generated"


@pytest.fixture(params=["fake", "filesystem"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStorage:
    if request.param == "fake":
        return InMemoryImageStorage()
    return FilesystemImageStorage(tmp_path)


async def drain(stream: StoredStream) -> bytes:
    try:
        return b"".join([chunk async for chunk in stream.chunks])
    finally:
        await stream.chunks.aclose()


@pytest.mark.parametrize(
    ("extension", "media_type"), [("jpg", "image/jpeg"), ("png", "image/png"), ("webp", "image/webp")]
)
async def test_a_saved_image_opens_with_its_bytes_size_and_media_type(
    storage: ImageStorage, extension: str, media_type: str
) -> None:
    data = bytes(range(256)) * 40
    image = await storage.save(data, extension, FOLDER)
    stream = await storage.open(image)
    assert (stream.size, stream.media_type) == (len(data), media_type)
    assert await drain(stream) == data


async def test_an_image_larger_than_a_chunk_streams_whole_in_several_chunks(storage: ImageStorage) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 123)
    stream = await storage.open(await storage.save(data, "png", FOLDER))
    chunks = [chunk async for chunk in stream.chunks]
    await stream.chunks.aclose()
    assert len(chunks) > 1
    assert b"".join(chunks) == data
    assert stream.size == len(data)


async def test_a_stream_closed_unread_or_half_read_can_be_closed_again(storage: ImageStorage) -> None:
    image = await storage.save(os.urandom(2 * CHUNK_BYTES), "png", FOLDER)
    unread = await storage.open(image)
    await unread.chunks.aclose()
    await unread.chunks.aclose()
    half = await storage.open(image)
    assert await half.chunks.__anext__()
    await half.chunks.aclose()
    assert await drain(await storage.open(image)) == await storage.read(image)


async def test_a_deleted_image_is_not_found_on_open(storage: ImageStorage) -> None:
    image = await storage.save(b"soon gone", "jpg", FOLDER)
    await storage.delete(image)
    with pytest.raises(NotFound):
        await storage.open(image)
    with pytest.raises(NotFound):
        await storage.local_path(image)


async def test_an_image_never_saved_is_not_found_on_open(storage: ImageStorage) -> None:
    root = await storage.root_of(FOLDER)
    missing = StoredImage(key=f"2026-01-01/{'0' * 32}.png", root=root)
    with pytest.raises(NotFound):
        await storage.open(missing)


async def test_local_path_is_the_file_or_none(storage: ImageStorage) -> None:
    data = b"where am I"
    image = await storage.save(data, "jpg", FOLDER)
    path = await storage.local_path(image)
    if path is not None:  # a storage with local files: the file holds the bytes
        assert await anyio.Path(path).read_bytes() == data
    assert await drain(await storage.open(image)) == data


async def test_a_file_replaced_by_a_link_out_of_storage_is_not_found(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path / "data")
    image = await storage.save(b"mine", "png", FOLDER)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the web")
    file = Path(image.root) / image.key
    file.unlink()
    file.symlink_to(secret)
    with pytest.raises(NotFound):
        await storage.open(image)
    with pytest.raises(NotFound):
        await storage.local_path(image)


async def test_a_day_folder_replaced_by_a_link_out_of_storage_is_not_found(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path / "data")
    image = await storage.save(b"mine", "png", FOLDER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / Path(image.key).name).write_bytes(b"not for the web")
    day = (Path(image.root) / image.key).parent
    (day / Path(image.key).name).unlink()
    day.rmdir()
    day.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(NotFound):
        await storage.open(image)


async def test_the_filesystem_stream_never_sends_more_than_the_size_it_announced(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    image = await storage.save(b"0123456789", "png", FOLDER)
    stream = await storage.open(image)
    with (Path(image.root) / image.key).open("ab") as grow:  # written to after it was opened
        grow.write(b"more")
    assert await drain(stream) == b"0123456789"
    assert stream.size == 10
