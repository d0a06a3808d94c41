"""What the object store adapter does beyond the storage contract, on moto's S3 server.

``storagePath`` is a prefix inside the bucket (relative, never climbing); inputs are size-checked
before their body is read; the objects carry the media type and caching the image route sends;
presigned links serve the bytes and expire; only names the storage gives are listed; a store that
cannot be reached is a ``StorageError`` that says so without its endpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound, StorageError
from imagestudio.domain.model import StoredImage
from tests.adapters.test_storage_contract import object_storage
from tests.objectstore import MotoServer
from tests.servers import scrubbed_environment

if TYPE_CHECKING:
    from imagestudio.adapters.object_storage import ObjectImageStorage

pytestmark = pytest.mark.anyio

KEY = f"2026-01-02/{'ab' * 16}.png"


@pytest.fixture
def bucket_storage(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> ObjectImageStorage:
    return object_storage(moto, monkeypatch)


def _bucket(storage: ObjectImageStorage) -> str:
    return storage.url.removeprefix("s3://").split("/")[0]


async def test_storage_paths_are_prefixes_inside_the_bucket_under_the_url_prefix(
    bucket_storage: ObjectImageStorage, moto: MotoServer
) -> None:
    for path in ("./generated", "generated", "generated/", " ./generated//. "):
        assert await bucket_storage.root_of(path) == "generated"
    assert await bucket_storage.root_of(".") == "."
    image = await bucket_storage.save(b"the image", "png", "./team/a")
    top = await bucket_storage.save(b"at the prefix", "jpg", ".")
    objects = moto.objects(_bucket(bucket_storage))
    assert objects[f"studio/team/a/{image.key}"] == b"the image"
    assert objects[f"studio/{top.key}"] == b"at the prefix"
    assert bucket_storage.location(image.root) == f"{bucket_storage.url}/team/a"
    assert bucket_storage.location(".") == bucket_storage.url
    assert await bucket_storage.ensure_writable("./team/b") == f"{bucket_storage.url}/team/b"
    assert set(moto.objects(_bucket(bucket_storage))) == set(objects)  # the probe went again


@pytest.mark.parametrize(
    "path", ["/srv/images", "~/images", "../elsewhere", "a/../../b", "C:/images", "a\\b"]
)
async def test_a_storage_path_that_is_no_prefix_of_the_bucket_is_refused_before_anything_is_written(
    bucket_storage: ObjectImageStorage, moto: MotoServer, path: str
) -> None:
    with pytest.raises(InvalidParameters) as refused:
        await bucket_storage.ensure_writable(path)
    assert refused.value.details == {"field": "storagePath"}
    assert "relative path" in refused.value.message
    root = await bucket_storage.root_of(path)
    assert not await bucket_storage.confined(root)
    with pytest.raises(InvalidStoragePath):
        await bucket_storage.save(b"x", "png", path)
    with pytest.raises(InvalidStoragePath):
        await bucket_storage.scan(root)
    assert moto.objects(_bucket(bucket_storage)) == {}


async def test_a_row_of_a_local_folder_is_not_found_and_its_delete_touches_nothing(
    bucket_storage: ObjectImageStorage, moto: MotoServer
) -> None:
    kept = await bucket_storage.save(b"kept", "png", "generated")
    local = StoredImage(
        key=kept.key, root="/home/someone/.imagestudio/generated"
    )  # written before the bucket
    with pytest.raises(NotFound):
        await bucket_storage.open(local)
    with pytest.raises(NotFound):
        await bucket_storage.read(local)
    await bucket_storage.delete(local)
    assert moto.objects(_bucket(bucket_storage)) == {f"studio/generated/{kept.key}": b"kept"}


async def test_an_input_larger_than_the_limit_is_refused_from_its_size_alone(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = object_storage(moto, monkeypatch, max_read_bytes=1000)
    big = await storage.save(os.urandom(1001), "png", "generated")
    small = await storage.save(b"x" * 1000, "png", "generated")
    with pytest.raises(InvalidParameters, match="larger than"):
        await storage.read(big)
    with pytest.raises(InvalidParameters, match="larger than"):
        await storage.read_reference(big.key, "./generated")
    assert await storage.read(small) == b"x" * 1000
    assert await storage.read_reference(small.key, "generated") == b"x" * 1000
    stream = await storage.open(big)  # serving has no input limit
    assert stream.size == 1001
    await stream.chunks.aclose()


async def test_references_are_decided_on_the_name_before_the_store_is_asked(bucket_storage) -> None:
    for key in ("2026-01-02/holiday.png", f"../{KEY}", f"{KEY}.thumb.webp", "x/" + KEY):
        with pytest.raises(InvalidParameters):
            await bucket_storage.read_reference(key, "generated")
    with pytest.raises(NotFound):
        await bucket_storage.read_reference(KEY, "generated")
    with pytest.raises(InvalidStoragePath):
        await bucket_storage.read_reference(KEY, "/srv/images")


async def test_objects_carry_the_media_type_and_caching_the_image_route_sends(
    bucket_storage: ObjectImageStorage, moto: MotoServer
) -> None:
    image = await bucket_storage.save(b"jpeg bytes", "jpg", "generated")
    await bucket_storage.save_thumbnail(image, b"webp bytes")
    for key, media_type in ((image.key, "image/jpeg"), (image.thumbnail.key, "image/webp")):
        headers = moto.headers(_bucket(bucket_storage), f"studio/generated/{key}")
        assert headers["content-type"] == media_type
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
    stream = await bucket_storage.open(image)
    await stream.chunks.aclose()
    assert stream.etag is not None
    assert stream.etag.startswith('"')
    assert stream.etag.endswith('"')
    assert stream.modified_at is not None
    assert stream.modified_at.tzinfo is not None


async def test_links_only_when_told_and_only_to_what_is_there(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    streaming = object_storage(moto, monkeypatch)
    image = await streaming.save(b"streamed", "png", "generated")
    assert await streaming.link(image) is None

    redirecting = object_storage(moto, monkeypatch, redirect=True)
    image = await redirecting.save(b"fetched from the store", "png", "generated")
    url = await redirecting.link(image)
    assert url is not None
    assert url.startswith(moto.endpoint)
    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=600" in url  # LINK_LIFETIME (moto does not check expiry; S3 does)
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert (fetched.status_code, fetched.content) == (200, b"fetched from the store")
    assert fetched.headers["content-type"] == "image/png"
    await redirecting.delete(image)
    with pytest.raises(NotFound):
        await redirecting.link(image)


async def test_a_scan_lists_only_names_the_storage_gives_under_its_root(
    bucket_storage: ObjectImageStorage, moto: MotoServer
) -> None:
    image = await bucket_storage.save(b"ours", "png", "generated")
    await bucket_storage.save_thumbnail(image, b"small")
    elsewhere = await bucket_storage.save(b"another folder", "png", "generated/older")
    day = image.key.split("/")[0]
    for name in ("generated/notes.txt", f"generated/{day}/holiday.png", "generated/.tmp-probe-" + "0" * 32):
        moto.plant(_bucket(bucket_storage), f"studio/{name}")
    found = {(f.image.key, f.temporary) for f in await bucket_storage.scan("generated")}
    assert found == {(image.key, False), (image.thumbnail.key, False), (".tmp-probe-" + "0" * 32, True)}
    assert {f.image.key for f in await bucket_storage.scan("generated/older")} == {elsewhere.key}
    assert await bucket_storage.scan(".") == []  # nothing of ours lies at the prefix itself


async def test_a_bucket_that_does_not_exist_is_named_as_the_reason(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagestudio.adapters.object_storage import ObjectImageStorage

    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)
    storage = ObjectImageStorage.from_url("s3://never-created-bucket/studio")
    with pytest.raises(InvalidStoragePath, match="the bucket was not found"):
        await storage.ensure_writable("generated")
    with pytest.raises(StorageError, match="the bucket was not found"):
        await storage.scan("generated")
    with pytest.raises(StorageError, match="the bucket was not found"):
        await storage.save(b"x", "png", "generated")


async def test_a_store_that_cannot_be_reached_is_a_storage_error_without_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imagestudio.adapters.object_storage import ObjectImageStorage
    from tests.servers import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    for name, value in {
        "AWS_ENDPOINT_URL": closed,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    storage = ObjectImageStorage.from_url("s3://nowhere-bucket/studio")
    for attempt in (
        storage.save(b"x", "png", "generated"),
        storage.open(StoredImage(key=KEY, root="generated")),
        storage.scan("generated"),
    ):
        with pytest.raises(StorageError) as failed:
            await attempt
        assert "could not be reached" in failed.value.message
        assert "127.0.0.1" not in failed.value.message
    with pytest.raises(InvalidStoragePath, match="cannot be written"):
        await storage.ensure_writable("generated")


_SHORT_RUN = """
import anyio
from imagestudio.adapters.object_storage import ObjectImageStorage

storage = ObjectImageStorage.from_url({url!r})
anyio.run(storage.save, b"x" * 5000, "png", "generated")
print("saved")
"""


def test_a_short_process_that_wrote_to_the_store_exits_cleanly(moto: MotoServer, tmp_path: Path) -> None:
    """The interpreter shuts down right after the last answer (a CLI command) without aborting:
    before the wait at exit, about one run in three of exactly this died of SIGABRT."""
    bucket = moto.new_bucket()
    env = scrubbed_environment({**moto.environment(), "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
    code = _SHORT_RUN.format(url=f"s3://{bucket}/studio")
    for _ in range(12):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, done.stdout) == (0, "saved\n"), done.stderr
    assert len(moto.objects(bucket)) == 12
