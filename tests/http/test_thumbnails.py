"""Thumbnails through the real app (SQLite file, image folder, local engine): every Generation
names one, ``GET`` serves it as ``image/webp`` with the images' protections and long-lived caching,
and it is made, kept and removed with its image."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from imagestudio.adapters.filesystem import FilesystemImageStorage
from imagestudio.adapters.images import PillowImageInspector, PillowThumbnailMaker
from imagestudio.adapters.sql import (
    SqlDatabase,
    SqlGenerationRepository,
    SqlIdempotencyStore,
    SqlSettingsRepository,
    SqlTaskRepository,
)
from imagestudio.bootstrap import build_services
from imagestudio.config import Config, Secret
from imagestudio.domain.errors import StorageError
from imagestudio.domain.model import StoredImage
from imagestudio.http.app import create_app
from tests.assertions import assert_error
from tests.fakes import FakeImageGenerator

Client = TestClient  # type: ignore[type-arg]
BASE = "http://127.0.0.1:8000"


def generate(client: Client, **body: Any) -> dict[str, Any]:
    body.setdefault("prompt", "a lighthouse on a cliff at dusk")
    body.setdefault("width", 128)
    body.setdefault("height", 128)
    body.setdefault("steps", 1)
    response = client.post("/api/generate/text-to-image", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def on_disk(data_dir: Path, path: str) -> Path:
    return data_dir / "generated" / path.removeprefix("/generated/")


def files(data_dir: Path) -> set[str]:
    folder = data_dir / "generated"
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_a_generation_names_its_thumbnail_beside_its_image(client: Client, data_dir: Path) -> None:
    made = generate(client)
    assert made["thumbnailPath"] == made["filePath"] + ".thumb.webp"
    assert made["thumbnailUrl"] == BASE + made["thumbnailPath"]
    assert files(data_dir) == {
        made["filePath"].removeprefix("/generated/"),
        made["thumbnailPath"].removeprefix("/generated/"),
    }
    assert client.get(f"/api/history/{made['id']}").json()["data"]["thumbnailUrl"] == made["thumbnailUrl"]
    [listed] = client.get("/api/history").json()["data"]
    assert (listed["thumbnailPath"], listed["thumbnailUrl"]) == (made["thumbnailPath"], made["thumbnailUrl"])


def test_the_thumbnail_is_a_webp_of_at_most_256_px_served_like_an_image_and_cached_for_good(
    client: Client,
) -> None:
    made = generate(client, width=512, height=768)
    response = client.get(made["thumbnailPath"])
    assert response.status_code == 200
    headers = response.headers
    assert headers["content-type"] == "image/webp"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["etag"].startswith('"')
    assert headers["last-modified"].endswith(" GMT")
    assert headers["content-length"] == str(len(response.content))
    name = made["thumbnailPath"].rsplit("/", 1)[-1]
    assert headers["content-disposition"] == f'inline; filename="{name}"'
    image = client.get(made["filePath"])
    assert image.headers["cache-control"] == headers["cache-control"]  # the same rules as its image
    assert image.headers["etag"] != headers["etag"]

    thumbnail = Image.open(io.BytesIO(response.content))
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == (171, 256)  # 512x768: the long side is 256, the aspect kept
    assert len(response.content) < len(image.content)

    head = client.head(made["thumbnailPath"])
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == "image/webp"
    assert (head.headers["content-length"], head.headers["etag"]) == (
        headers["content-length"],
        headers["etag"],
    )


def test_a_small_image_keeps_its_size_in_its_thumbnail(client: Client) -> None:
    made = generate(client, width=128, height=192)
    thumbnail = Image.open(io.BytesIO(client.get(made["thumbnailUrl"]).content))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (128, 192))


def test_an_upscale_and_an_image_to_image_have_thumbnails_too(client: Client) -> None:
    source = generate(client, width=256, height=128)
    upscaled = client.post("/api/generate/upscale", json={"imagePath": source["filePath"], "scale": 2})
    assert upscaled.status_code == 200, upscaled.text
    transformed = client.post(
        "/api/generate/image-to-image",
        json={"seedImage": source["filePath"], "prompt": "the same at night", "steps": 1},
    )
    assert transformed.status_code == 200, transformed.text
    for made, size in ((upscaled.json()["data"], (256, 128)), (transformed.json()["data"], (256, 128))):
        thumbnail = Image.open(io.BytesIO(client.get(made["thumbnailPath"]).content))
        assert thumbnail.size == size


def test_deleting_a_generation_removes_its_thumbnail(client: Client, data_dir: Path) -> None:
    kept = generate(client)
    gone = generate(client)
    assert client.delete(f"/api/history/{gone['id']}").status_code == 200
    assert_error(client.get(gone["thumbnailPath"]), 404, "NOT_FOUND")
    assert files(data_dir) == {
        kept["filePath"].removeprefix("/generated/"),
        kept["thumbnailPath"].removeprefix("/generated/"),
    }


def test_a_missing_thumbnail_is_made_on_the_first_request_and_kept(client: Client, data_dir: Path) -> None:
    """A row from before thumbnails (or one whose thumbnail was removed by hand)."""
    made = generate(client, width=384, height=256)
    place = on_disk(data_dir, made["thumbnailPath"])
    place.unlink()

    first = client.get(made["thumbnailPath"])
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(first.content)).size == (256, 171)
    assert place.read_bytes() == first.content  # stored: no later request makes it again
    written = place.stat().st_mtime_ns
    second = client.get(made["thumbnailPath"])
    assert (second.content, second.headers["etag"]) == (first.content, first.headers["etag"])
    assert place.stat().st_mtime_ns == written


@pytest.mark.parametrize(
    "path",
    [
        "/generated/../imagestudio.db.thumb.webp",
        "/generated/%2e%2e/imagestudio.db.thumb.webp",
        "/generated/2026-01-05/" + "ab" * 16 + ".png.thumb.webp",
        "/generated/.thumb.webp",
        "/generated/2026-01-05/.thumb.webp",
    ],
)
def test_thumbnails_of_no_generation_are_not_found(client: Client, path: str) -> None:
    generate(client)
    assert_error(client.get(path), 404, "NOT_FOUND")


def test_a_thumbnail_file_no_row_names_is_never_served_even_when_it_is_there(
    client: Client, data_dir: Path
) -> None:
    made = generate(client)
    copied = on_disk(data_dir, made["filePath"]).with_name("cd" * 16 + ".jpg")  # an image copied in
    copied.write_bytes(on_disk(data_dir, made["filePath"]).read_bytes())
    copied.with_name(copied.name + ".thumb.webp").write_bytes(client.get(made["thumbnailPath"]).content)
    foreign = "/generated/" + str(copied.relative_to(data_dir / "generated"))
    assert_error(client.get(foreign + ".thumb.webp"), 404, "NOT_FOUND")
    assert_error(
        client.get(made["thumbnailPath"] + ".thumb.webp"), 404, "NOT_FOUND"
    )  # no thumbnail's thumbnail


def test_a_link_put_in_place_of_a_thumbnail_is_never_followed(
    client: Client, data_dir: Path, tmp_path: Path
) -> None:
    made = generate(client)
    secret = tmp_path / "secret.webp"
    secret.write_bytes(b"RIFF not for the web")
    place = on_disk(data_dir, made["thumbnailPath"])
    place.unlink()
    place.symlink_to(secret)

    response = client.get(made["thumbnailPath"])
    assert response.status_code == 200
    assert b"not for the web" not in response.content
    assert Image.open(io.BytesIO(response.content)).format == "WEBP"
    assert not place.is_symlink()  # replaced by the real thumbnail
    assert secret.read_bytes() == b"RIFF not for the web"


def test_a_thumbnail_is_not_an_input_image(client: Client) -> None:
    made = generate(client)
    for reference in (made["thumbnailPath"], made["thumbnailPath"].removeprefix("/generated/")):
        response = client.post("/api/generate/upscale", json={"imagePath": reference})
        assert_error(response, 400, "INVALID_PARAMETERS", "imagePath")


def test_with_a_token_a_thumbnail_needs_it_like_an_image(data_dir: Path) -> None:
    config = Config(data_dir=data_dir, api_token=Secret("t" * 32))
    with TestClient(create_app(config), base_url=BASE) as client:
        client.headers["Authorization"] = "Bearer " + "t" * 32
        made = generate(client)
        assert client.get(made["thumbnailPath"]).status_code == 200
        del client.headers["Authorization"]
        assert_error(client.get(made["thumbnailPath"]), 401, "UNAUTHORIZED")
        assert_error(client.get(made["filePath"]), 401, "UNAUTHORIZED")


class ThumbnailWritesFail(FilesystemImageStorage):
    """The real folder storage, whose thumbnail writes fail once the file is in place: the worst
    case, where there is a file to take away again."""

    async def save_thumbnail(self, image: StoredImage, data: bytes) -> StoredImage:
        await super().save_thumbnail(image, data)
        raise StorageError("Could not write the thumbnail: the disk is full")


@pytest.fixture
def failing(data_dir: Path) -> Iterator[Client]:
    data_dir.mkdir(parents=True)
    db = SqlDatabase(f"sqlite:///{data_dir / 'imagestudio.db'}")
    db.upgrade_schema()
    services = build_services(
        generator=FakeImageGenerator(),
        storage=ThumbnailWritesFail(data_dir),
        repository=SqlGenerationRepository(db),
        settings=SqlSettingsRepository(db),
        inspector=PillowImageInspector(),
        thumbnails=PillowThumbnailMaker(),
        task_repository=SqlTaskRepository(db),
        idempotency=SqlIdempotencyStore(db),
    )
    try:
        with TestClient(create_app(Config(data_dir=data_dir), services=services), base_url=BASE) as client:
            yield client
    finally:
        db.dispose()


def test_a_thumbnail_that_cannot_be_written_leaves_no_image_no_thumbnail_and_no_row(
    failing: Client, data_dir: Path
) -> None:
    response = failing.post(
        "/api/generate/text-to-image",
        json={"prompt": "a cat on a roof", "width": 128, "height": 128, "taskId": "t-1"},
    )
    body = assert_error(response, 500, "STORAGE_ERROR")
    assert body["error"] == "Could not write the thumbnail: the disk is full"
    assert files(data_dir) == set()
    assert failing.get("/api/history").json()["total"] == 0
    task = failing.get("/api/tasks/t-1").json()["data"]
    assert (task["status"], task["error"]["code"]) == ("failed", "STORAGE_ERROR")
