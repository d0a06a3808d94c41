"""Contract tests: the in-memory storage fake, the filesystem adapter and the object store
adapter (on moto's S3 server) answer the same way.

Images leave storage as bytes (``read``) or as an opened ``StoredStream`` (``open``), never only as
a path, so an object store stands behind the same port: a new adapter joins ``storage`` below.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from imagestudio.adapters.filesystem import CHUNK_BYTES, FilesystemImageStorage
from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound, StorageError
from imagestudio.domain.model import THUMBNAIL_SUFFIX, StoredImage
from imagestudio.domain.ports import ImageStorage, StoredStream
from tests.fakes import InMemoryImageStorage
from tests.objectstore import MotoServer, moto_unavailable

if TYPE_CHECKING:
    from imagestudio.adapters.object_storage import ObjectImageStorage

pytestmark = pytest.mark.anyio

FOLDER = "./generated"


def object_storage(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, **options: Any) -> ObjectImageStorage:
    """An object store adapter on a fresh bucket of ``moto``, under the prefix ``studio``."""
    if importlib.util.find_spec("obstore") is None:
        moto_unavailable("obstore is not installed (pip install -e '.[team]')")
    from imagestudio.adapters.object_storage import ObjectImageStorage

    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)  # read by obstore when the store is made
    bucket = moto.new_bucket()
    return ObjectImageStorage.from_url(f"s3://{bucket}/studio", **options)


@pytest.fixture(params=["fake", "filesystem", "s3"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ImageStorage]:
    if request.param == "fake":
        yield InMemoryImageStorage()
    elif request.param == "filesystem":
        yield FilesystemImageStorage(tmp_path)
    else:
        yield object_storage(request.getfixturevalue("moto"), monkeypatch)


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
    file = Path(storage.location(image.root)) / image.key
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
    day = (Path(storage.location(image.root)) / image.key).parent
    (day / Path(image.key).name).unlink()
    day.rmdir()
    day.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(NotFound):
        await storage.open(image)


async def test_the_filesystem_stream_never_sends_more_than_the_size_it_announced(tmp_path: Path) -> None:
    storage = FilesystemImageStorage(tmp_path)
    image = await storage.save(b"0123456789", "png", FOLDER)
    stream = await storage.open(image)
    with (Path(storage.location(image.root)) / image.key).open(
        "ab"
    ) as grow:  # written to after it was opened
        grow.write(b"more")
    assert await drain(stream) == b"0123456789"
    assert stream.size == 10


# --- thumbnails -----------------------------------------------------------------------------


async def test_a_thumbnail_is_saved_beside_its_image_and_opens_as_webp(storage: ImageStorage) -> None:
    image = await storage.save(b"the image", "png", FOLDER)
    thumbnail = await storage.save_thumbnail(image, b"the thumbnail")
    assert thumbnail == image.thumbnail
    assert (thumbnail.root, thumbnail.key) == (image.root, image.key + THUMBNAIL_SUFFIX)
    stream = await storage.open(thumbnail)
    assert stream.media_type == "image/webp"
    assert await drain(stream) == b"the thumbnail"
    assert await drain(await storage.open(image)) == b"the image"  # the image is untouched


async def test_a_thumbnail_saved_again_replaces_the_first(storage: ImageStorage) -> None:
    image = await storage.save(b"the image", "jpg", FOLDER)
    await storage.save_thumbnail(image, b"first")
    await storage.save_thumbnail(image, b"second")
    assert await drain(await storage.open(image.thumbnail)) == b"second"


async def test_deleting_an_image_deletes_its_thumbnail_and_a_thumbnail_goes_alone(
    storage: ImageStorage,
) -> None:
    image = await storage.save(b"the image", "webp", FOLDER)
    await storage.save_thumbnail(image, b"small")
    await storage.delete(image.thumbnail)
    with pytest.raises(NotFound):
        await storage.open(image.thumbnail)
    assert await drain(await storage.open(image)) == b"the image"

    await storage.save_thumbnail(image, b"small again")
    await storage.delete(image)
    for gone in (image, image.thumbnail):
        with pytest.raises(NotFound):
            await storage.open(gone)
    await storage.delete(image)  # nothing left: not an error


async def test_a_scan_lists_thumbnails_as_finished_files_beside_their_images(storage: ImageStorage) -> None:
    image = await storage.save(b"the image", "png", FOLDER)
    await storage.save_thumbnail(image, b"small")
    found = {f.image: f for f in await storage.scan(await storage.root_of(FOLDER))}
    assert set(found) == {image, image.thumbnail}
    assert not found[image.thumbnail].temporary
    assert found[image.thumbnail].size == len(b"small")


async def test_a_thumbnail_is_refused_for_a_name_the_storage_did_not_give(storage: ImageStorage) -> None:
    root = await storage.root_of(FOLDER)
    with pytest.raises(StorageError):
        await storage.save_thumbnail(StoredImage(key="2026-01-01/holiday.png", root=root), b"small")
    image = await storage.save(b"the image", "png", FOLDER)
    with pytest.raises(StorageError):  # no thumbnail of a thumbnail
        await storage.save_thumbnail(image.thumbnail, b"smaller")
    assert not storage.owns(image.thumbnail.key)
    with pytest.raises(InvalidParameters):  # a thumbnail is never an input image
        await storage.read_reference(image.thumbnail.key, FOLDER)


async def test_the_filesystem_writes_no_thumbnail_outside_the_roots_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    storage = FilesystemImageStorage(tmp_path / "data")
    stray = StoredImage(key=f"2026-01-01/{'ab' * 16}.png", root=str(outside))
    with pytest.raises(InvalidStoragePath):
        await storage.save_thumbnail(stray, b"small")
    assert not outside.exists()

    image = await storage.save(b"the image", "png", FOLDER)
    (
        Path(storage.location(image.root)) / image.thumbnail.key
    ).mkdir()  # a folder where the thumbnail should go
    with pytest.raises(StorageError):
        await storage.save_thumbnail(image, b"small")
    day = (Path(storage.location(image.root)) / image.key).parent
    assert sorted(p.name for p in day.iterdir()) == sorted(
        [Path(image.key).name, Path(image.thumbnail.key).name]
    )


async def test_the_filesystem_replaces_a_link_in_place_of_a_thumbnail_never_writing_through_it(
    tmp_path: Path,
) -> None:
    storage = FilesystemImageStorage(tmp_path / "data")
    image = await storage.save(b"the image", "png", FOLDER)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the web")
    link = Path(storage.location(image.root)) / image.thumbnail.key
    link.symlink_to(secret)
    with pytest.raises(NotFound):
        await storage.open(image.thumbnail)
    await storage.save_thumbnail(image, b"small")
    assert secret.read_bytes() == b"not for the web"
    assert not link.is_symlink()
    assert await drain(await storage.open(image.thumbnail)) == b"small"
