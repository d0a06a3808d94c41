"""The attacks of issue 12 on storage, against the real app (SQLite file, real folders, real links).

A page that can reach the API must not point ``storagePath`` at the user's files and then read
them back through an upscale, nor tell from the answers which files exist. A database whose
settings point outside the storage roots (left by an older version) keeps serving what it recorded
but gets nothing new written there.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from imagestudio.config import Config
from imagestudio.http.app import create_app
from tests.assertions import assert_error
from tests.hardening.conftest import BASE_URL
from tests.hardening.test_references import _watch

Client = TestClient  # type: ignore[type-arg]


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@contextmanager
def serving(data_dir: Path, **config: Any) -> Iterator[Client]:
    with TestClient(create_app(Config(data_dir=data_dir, **config)), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home folder outside the storage roots, holding a private picture."""
    folder = tmp_path / "home"
    (folder / "Pictures").mkdir(parents=True)
    (folder / "Pictures" / "private.png").write_bytes(_png())
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture
def client(tmp_path: Path, home: Path) -> Iterator[Client]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "to-home").symlink_to(home)
    with serving(data_dir) as opened:
        yield opened


@pytest.mark.parametrize(
    "storage_path",
    ["~", "~/Pictures", "/", "/etc", "../../..", "..", "../home", "to-home", "to-home/new", "/tmp/x"],
)
def test_a_storage_path_outside_the_roots_is_400_field_storage_path_and_changes_nothing(
    client: Client, tmp_path: Path, storage_path: str
) -> None:
    before = client.get("/api/settings").json()
    trees = {name: _tree(tmp_path / name) for name in ("data", "home")}
    body = assert_error(
        client.put("/api/settings", json={"storagePath": storage_path, "defaultWidth": 768}),
        400,
        "INVALID_PARAMETERS",
        "storagePath",
    )
    assert "storage root" in body["error"]
    assert client.get("/api/settings").json() == before
    assert {name: _tree(tmp_path / name) for name in ("data", "home")} == trees


def test_an_upscale_of_a_private_picture_gets_nothing_and_cannot_tell_it_exists(
    client: Client, home: Path
) -> None:
    assert_error(client.put("/api/settings", json={"storagePath": "~"}), 400, "INVALID_PARAMETERS")
    private = home / "Pictures" / "private.png"
    watch = _watch().watching(home)
    try:
        answers = {
            reference: client.post("/api/generate/upscale", json={"imagePath": reference})
            for reference in (
                "Pictures/private.png",
                "Pictures/missing.png",
                "../home/Pictures/private.png",
                "../home/Pictures/missing.png",
                "to-home/Pictures/private.png",
                "to-home/Pictures/missing.png",
                str(private),
                str(private.with_name("missing.png")),
                "~/Pictures/private.png",
                "~/Pictures/missing.png",
                "../imagestudio.db",
            )
        }
    finally:
        watch.stop()
    assert watch.seen == []
    bodies = {(a.status_code, a.text) for a in answers.values()}
    assert len(bodies) == 1, bodies
    [(status, _)] = bodies
    assert status == 400
    assert client.get("/api/history").json()["total"] == 0


def test_a_storage_root_lets_storage_point_outside_the_data_dir(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to(pictures)
    with serving(tmp_path / "data", storage_roots=(pictures,)) as client:
        for storage_path in (str(pictures / "studio"), "link/studio"):
            response = client.put("/api/settings", json={"storagePath": storage_path})
            assert response.status_code == 200, response.text
            made = client.post(
                "/api/generate/text-to-image",
                json={"prompt": "a red sunset", "width": 128, "height": 128, "steps": 1},
            )
            assert made.status_code == 200, made.text
        assert len(list((pictures / "studio").rglob("*.jpg"))) == 2


def test_an_input_file_larger_than_the_body_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    name = "2026-01-02/" + "cd" * 16 + ".png"
    big = tmp_path / "data" / "generated" / name
    big.parent.mkdir(parents=True)
    big.write_bytes(_png())
    os.truncate(big, 40 * 2**20)  # sparse: a valid PNG start, then 40 MiB of nothing
    with serving(tmp_path / "data") as client:
        body = assert_error(
            client.post("/api/generate/upscale", json={"imagePath": name}),
            400,
            "INVALID_PARAMETERS",
            "imagePath",
        )
    assert "larger than 32 MiB" in body["error"]


def test_a_database_whose_storage_path_lies_outside_the_roots_serves_its_images_but_writes_nothing(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old-images"
    data_dir = tmp_path / "data"
    with serving(data_dir, storage_roots=(tmp_path,)) as wide:  # how an older setup could write there
        assert wide.put("/api/settings", json={"storagePath": str(old)}).status_code == 200
        made = [
            wide.post(
                "/api/generate/text-to-image",
                json={"prompt": f"picture {i}", "width": 128, "height": 128, "steps": 1},
            ).json()["data"]
            for i in range(2)
        ]
    files = {p for p in old.rglob("*") if p.is_file()}
    assert len(files) == 4  # two images and their thumbnails
    no_thumbnail = old / made[0]["thumbnailPath"].removeprefix("/generated/")
    no_thumbnail.unlink()  # as for a row from before thumbnails
    files.remove(no_thumbnail)

    with serving(data_dir) as client:
        served = client.get(made[0]["filePath"])
        assert served.status_code == 200
        thumbnail = client.get(made[0]["thumbnailPath"])  # made for the answer, not kept out there
        assert (thumbnail.status_code, thumbnail.headers["content-type"]) == (200, "image/webp")
        assert {p for p in old.rglob("*") if p.is_file()} == files
        body = assert_error(
            client.post(
                "/api/generate/text-to-image",
                json={"prompt": "a new picture", "width": 128, "height": 128, "steps": 1},
            ),
            400,
            "STORAGE_ERROR",
            "storagePath",
        )
        assert "set storagePath" in body["error"]
        assert_error(
            client.post("/api/generate/upscale", json={"imagePath": made[0]["filePath"]}),
            400,
            "STORAGE_ERROR",
            "storagePath",
        )
        deleted = client.delete(f"/api/history/{made[1]['id']}")
        assert deleted.status_code == 200, deleted.text
        assert client.get(f"/api/history/{made[1]['id']}").status_code == 404
        assert {p for p in old.rglob("*") if p.is_file()} == files  # the row went, the file stayed

        assert client.put("/api/settings", json={"storagePath": "./generated"}).status_code == 200
        again = client.post("/api/generate/upscale", json={"imagePath": made[0]["filePath"]})
        assert again.status_code == 200, again.text
        assert client.get(again.json()["data"]["filePath"]).status_code == 200
    assert {p for p in old.rglob("*") if p.is_file()} == files
