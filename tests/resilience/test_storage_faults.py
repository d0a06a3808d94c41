"""Storage that cannot be written: 500 STORAGE_ERROR with a readable reason, nothing half-written
(no temporary file, no history row), and the next request works once the storage is back.

Every fault is a real condition the kernel reports, not a patched function: a file where the day
folder belongs (any user), a folder without write permission (root drops CAP_DAC_OVERRIDE for the
server with ``setpriv``), a read-only bind mount and a full tmpfs (both in a private mount
namespace of the server process; they skip where ``unshare`` may not mount), a file size limit
(RLIMIT_FSIZE, with the database on PostgreSQL so that only images grow), and an image file
that cannot be read.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from imagestudio.config import Config
from imagestudio.http.app import create_app
from tests.databases import PostgresServer
from tests.resilience.servers import (
    all_rows,
    drop_file_permission_override,
    image_files,
    in_private_mounts,
    private_mounts,
    temporaries,
)
from tests.servers import start_server, stop_server

SMALL = {"prompt": "a small red square", "width": 128, "height": 128, "steps": 1}
LARGE = {"prompt": "a large blue ocean", "width": 1024, "height": 1024, "steps": 1}


def assert_storage_error(response: httpx.Response, reason: str, data_dir: Path) -> None:
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "STORAGE_ERROR"
    assert body["error"] == f"Could not write the image: {reason}"
    assert str(data_dir) not in response.text  # no filesystem path goes back to the client


def days() -> list[str]:
    today = dt.datetime.now(dt.UTC).date()
    return [str(today), str(today + dt.timedelta(days=1))]  # the test may cross midnight (UTC)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    with TestClient(
        create_app(Config(data_dir=tmp_path / "data")), base_url="http://127.0.0.1:8000"
    ) as client:
        yield client


def test_a_file_where_the_day_folder_belongs_is_a_storage_error_that_leaves_nothing(
    client: TestClient[Any], tmp_path: Path
) -> None:
    storage = tmp_path / "data" / "generated"
    storage.mkdir(parents=True)
    for day in days():
        (storage / day).write_bytes(b"in the way")

    failed = client.post("/api/generate/text-to-image", json={**SMALL, "taskId": "blocked"})
    assert_storage_error(failed, "a file stands where a storage folder should be", tmp_path)
    task = client.get("/api/tasks/blocked").json()["data"]
    assert (task["status"], task["error"]["code"]) == ("failed", "STORAGE_ERROR")
    assert client.get("/api/history").json()["total"] == 0
    assert sorted(p.name for p in storage.iterdir()) == sorted(days())

    for day in days():
        (storage / day).unlink()
    recovered = client.post("/api/generate/text-to-image", json=SMALL)
    assert recovered.status_code == 200, recovered.text
    assert client.get("/api/history").json()["total"] == 1
    assert client.get(recovered.json()["data"]["filePath"]).status_code == 200


def test_a_storage_folder_without_write_permission_is_a_storage_error_until_it_is_writable(
    tmp_path: Path,
) -> None:
    wrap = drop_file_permission_override()
    if wrap is None:
        pytest.skip("running as root without setpriv: root would ignore the folder's permissions")
    data_dir = tmp_path / "data"
    server = start_server(data_dir, wrap=wrap)
    storage = data_dir / "generated"
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            first = client.post("/api/generate/text-to-image", json=SMALL)
            assert first.status_code == 200, first.text
            folders = [storage, *[p for p in storage.iterdir() if p.is_dir()]]
            for folder in folders:
                folder.chmod(0o555)
            try:
                for _ in range(3):
                    failed = client.post("/api/generate/text-to-image", json=SMALL)
                    assert_storage_error(failed, "permission denied", tmp_path)
                assert client.get(first.json()["data"]["filePath"]).status_code == 200  # reading still works
            finally:
                for folder in folders:
                    folder.chmod(0o755)
            assert temporaries(storage) == []
            assert len(image_files(storage)) == 1
            assert client.get("/api/history").json()["total"] == 1

            recovered = client.post("/api/generate/text-to-image", json=SMALL)
            assert recovered.status_code == 200, recovered.text
            assert client.get("/api/history").json()["total"] == 2
    finally:
        stop_server(server)


def test_an_image_that_cannot_be_read_is_a_storage_error_not_a_broken_response(tmp_path: Path) -> None:
    wrap = drop_file_permission_override()
    if wrap is None:
        pytest.skip("running as root without setpriv: root would ignore the file's permissions")
    data_dir = tmp_path / "data"
    server = start_server(data_dir, wrap=wrap)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            made = client.post("/api/generate/text-to-image", json=SMALL).json()["data"]
            [image] = image_files(data_dir / "generated")
            image.chmod(0)
            try:
                for response in (
                    client.get(made["filePath"]),
                    client.post("/api/generate/upscale", json={"imagePath": made["filePath"]}),
                ):
                    assert response.status_code == 500, response.text
                    assert response.json()["code"] == "STORAGE_ERROR"
                    assert response.json()["error"] == "Could not read the image: permission denied"
            finally:
                image.chmod(0o644)
            assert client.get(made["filePath"]).status_code == 200
            assert client.get("/api/history").json()["total"] == 1
    finally:
        stop_server(server)


needs_private_mounts = pytest.mark.skipif(
    private_mounts() is None, reason="unshare cannot give the server a private mount namespace here"
)


@needs_private_mounts
def test_a_read_only_file_system_under_storage_is_a_storage_error_and_old_images_stay_served(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    before = start_server(data_dir)
    with httpx.Client(base_url=before.url, timeout=60) as client:
        old = client.post("/api/generate/text-to-image", json=SMALL).json()["data"]
    stop_server(before)

    storage = data_dir / "generated"
    read_only = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"'
    server = start_server(data_dir, wrap=in_private_mounts(read_only, storage))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            failed = client.post("/api/generate/text-to-image", json={**SMALL, "taskId": "on-ro"})
            assert_storage_error(failed, "the file system is read-only", tmp_path)
            assert client.get("/api/tasks/on-ro").json()["data"]["error"]["code"] == "STORAGE_ERROR"
            assert client.get(old["filePath"]).status_code == 200
            assert [row["id"] for row in all_rows(client)] == [old["id"]]
    finally:
        stop_server(server)
    assert temporaries(storage) == []


@needs_private_mounts
def test_a_full_disk_is_a_storage_error_and_frees_what_the_failed_write_took(tmp_path: Path) -> None:
    """The storage folder is a 128 KiB tmpfs: a 128 px image (about 7 KB) fits, a 1024 px one (about
    340 KB) fills it and fails. Had the failed write left its partial temporary file behind, the disk
    would stay full and the next small image would fail too."""
    data_dir = tmp_path / "data"
    storage = data_dir / "generated"
    storage.mkdir(parents=True)
    server = start_server(data_dir, wrap=in_private_mounts('mount -t tmpfs -o size=128k tmpfs "$0"', storage))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/api/generate/text-to-image", json=SMALL).status_code == 200
            for attempt in range(3):
                failed = client.post(
                    "/api/generate/text-to-image", json={**LARGE, "taskId": f"big-{attempt}"}
                )
                assert_storage_error(failed, "the disk is full", tmp_path)
                after = client.post("/api/generate/text-to-image", json=SMALL)
                assert after.status_code == 200, after.text
            rows = all_rows(client)
            assert len(rows) == 4
            assert all(client.get(row["filePath"]).status_code == 200 for row in rows)
            tasks = {t["taskId"]: t for t in client.get("/api/tasks").json()["data"]}
            assert {tasks[f"big-{i}"]["error"]["code"] for i in range(3)} == {"STORAGE_ERROR"}
    finally:
        stop_server(server)
    assert not os.listdir(storage)  # the tmpfs was the server's alone; nothing leaked to the real disk


@pytest.mark.postgres
def test_a_file_size_limit_is_a_storage_error_and_smaller_images_still_work(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE (``prlimit --fsize``) makes the kernel refuse to grow any file past 64 KiB (EFBIG).
    The database is PostgreSQL, so the images are the only files the server writes that grow."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    data_dir = tmp_path / "data"
    with postgres.schema() as url:
        env = {"IMAGESTUDIO_DATABASE_URL": url, "IMAGESTUDIO_LOG_LEVEL": "warning"}
        server = start_server(data_dir, env, wrap=["prlimit", "--fsize=65536:65536", "--"])
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                large = {**SMALL, "width": 512, "height": 512}  # about 88 KB as JPEG
                failed = client.post("/api/generate/text-to-image", json=large)
                assert_storage_error(
                    failed, "the file is larger than the file system or a file size limit allows", tmp_path
                )
                assert client.post("/api/generate/text-to-image", json=SMALL).status_code == 200
                assert len(all_rows(client)) == 1
        finally:
            stop_server(server)
    storage = data_dir / "generated"
    assert temporaries(storage) == []
    assert len(image_files(storage)) == 1
