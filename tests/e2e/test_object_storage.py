"""Real ``imagestudio serve`` processes keep their images in an S3-compatible store (moto's server).

One server: an image it makes lies in the bucket (not in its data dir) and is streamed back byte
for byte, thumbnail too; image-to-image reads its input from the bucket; a delete removes both
objects. With ``IMAGESTUDIO_STORAGE_REDIRECT=true`` the image route answers 307 to a presigned URL
that serves the bytes. ``imagestudio doctor`` checks the bucket. Two servers on one PostgreSQL
database with separate data dirs: an image made on A is served, transformed and deleted from B.
"""

from __future__ import annotations

import mimetypes
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import PostgresServer
from tests.objectstore import MotoServer
from tests.servers import Server, free_port, scrubbed_environment, start_server, stop_server

pytestmark = pytest.mark.e2e

PREFIX = "team/images"
SMALL = {"width": 256, "height": 192, "steps": 3}


def storage_env(moto: MotoServer, bucket: str, **extra: str) -> dict[str, str]:
    return {"IMAGESTUDIO_STORAGE_URL": f"s3://{bucket}/{PREFIX}", **moto.environment(), **extra}


def objects(moto: MotoServer, bucket: str) -> dict[str, bytes]:
    return moto.objects(bucket, PREFIX + "/")


def generate(client: httpx.Client, prompt: str, **extra: Any) -> dict[str, Any]:
    made = client.post("/api/generate/text-to-image", json={"prompt": prompt, **SMALL, **extra})
    assert made.status_code == 200, made.text
    return dict(made.json()["data"])


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    return moto.new_bucket()


@pytest.fixture
def server(moto: MotoServer, bucket: str, tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "data", storage_env(moto, bucket))
    yield running
    stop_server(running)


def test_images_live_in_the_bucket_and_are_streamed_transformed_and_deleted_there(
    server: Server, moto: MotoServer, bucket: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        made = generate(client, "a harbour with boats at dawn", seed=5)
        image_key = f"{PREFIX}/generated/{made['filePath'].removeprefix('/generated/')}"
        thumbnail_key = f"{PREFIX}/generated/{made['thumbnailPath'].removeprefix('/generated/')}"
        stored = objects(moto, bucket)
        assert set(stored) == {image_key, thumbnail_key}
        assert not (server.data_dir / "generated").exists()  # nothing on this machine's disk

        image = client.get(made["filePath"])
        assert image.status_code == 200
        assert image.content == stored[image_key]
        assert image.headers["content-length"] == str(len(stored[image_key]))
        assert image.headers["content-type"] == mimetypes.guess_type(made["filePath"])[0]
        assert image.headers["etag"].startswith('"')
        assert "last-modified" in image.headers
        thumbnail = client.get(made["thumbnailPath"])
        assert (thumbnail.status_code, thumbnail.content) == (200, stored[thumbnail_key])
        assert thumbnail.headers["content-type"] == "image/webp"

        transformed = client.post(
            "/api/generate/image-to-image",
            json={
                "seedImage": made["filePath"],
                "prompt": "the same harbour at night",
                "strength": 0.5,
                "steps": 2,
            },
        )
        assert transformed.status_code == 200, transformed.text
        derived = transformed.json()["data"]
        assert derived["parameters"]["sourceId"] == made["id"]
        assert len(objects(moto, bucket)) == 4

        assert client.delete(f"/api/history/{made['id']}").status_code == 200
        left = objects(moto, bucket)
        assert image_key not in left
        assert thumbnail_key not in left
        assert len(left) == 2  # the derived image and its thumbnail
        gone = client.get(made["filePath"])
        assert gone.status_code == 404
        assert gone.json()["code"] == "NOT_FOUND"


def test_an_image_bigger_than_a_chunk_is_streamed_whole(
    server: Server, moto: MotoServer, bucket: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        made = generate(client, "a field of poppies")
        big = bytes(range(256)) * (12 * 1024 + 7)  # 3 MiB and a bit: several chunks
        moto.plant(bucket, f"{PREFIX}/generated/{made['filePath'].removeprefix('/generated/')}", big)
        received = bytearray()
        pieces = 0
        with client.stream("GET", made["filePath"]) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-length"] == str(len(big))
            for piece in answer.iter_raw():
                received += piece
                pieces += 1
        assert bytes(received) == big
        assert pieces > 1


def test_a_storage_path_outside_the_bucket_is_refused_on_its_field(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/srv/images", "../elsewhere"):
            refused = client.put("/api/settings", json={"storagePath": path})
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "INVALID_PARAMETERS"
            assert refused.json()["details"] == {"field": "storagePath"}
        moved = client.put("/api/settings", json={"storagePath": "./shared/pictures"})
        assert moved.status_code == 200, moved.text
        made = generate(client, "a red kite over the hills")
        assert client.get(made["filePath"]).status_code == 200


def test_redirect_mode_answers_307_to_a_presigned_url_that_serves_the_bytes(
    moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "data", storage_env(moto, bucket, IMAGESTUDIO_STORAGE_REDIRECT="true"))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            made = generate(client, "a windmill in a storm")
            stored = objects(moto, bucket)
            for path in (made["filePath"], made["thumbnailPath"]):
                answer = client.get(path)
                assert answer.status_code == 307, answer.text
                assert answer.headers["cache-control"] == "private, max-age=300"
                location = answer.headers["location"]
                assert location.startswith(f"{moto.endpoint}/{bucket}/{PREFIX}/generated/")
                assert "X-Amz-Signature=" in location
                fetched = httpx.get(location, timeout=30)  # the store itself, no server in between
                key = f"{PREFIX}/generated/{path.removeprefix('/generated/')}"
                assert (fetched.status_code, fetched.content) == (200, stored[key])
            followed = client.get(made["filePath"], follow_redirects=True)
            assert (
                followed.content
                == stored[f"{PREFIX}/generated/{made['filePath'].removeprefix('/generated/')}"]
            )

            image_key = f"{PREFIX}/generated/{made['filePath'].removeprefix('/generated/')}"
            moto.client().delete_object(Bucket=bucket, Key=image_key)
            missing = client.get(made["filePath"])
            assert missing.status_code == 404  # checked before redirecting: no error page of the store
            assert missing.json()["code"] == "NOT_FOUND"
    finally:
        stop_server(server)


def _doctor(data_dir: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagestudio", "doctor", "--data-dir", str(data_dir), *flags],
        env=scrubbed_environment(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_doctor_checks_the_bucket_and_repairs_what_no_row_names(
    server: Server, moto: MotoServer, bucket: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        generate(client, "a quiet lake")
    env = storage_env(moto, bucket)
    healthy = _doctor(server.data_dir, env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert f"s3://{bucket}/{PREFIX}/generated  (current storage folder)" in healthy.stdout

    orphan = f"{PREFIX}/generated/2026-01-01/{'cd' * 16}.png"
    moto.plant(bucket, orphan, b"no row names me")
    found = _doctor(server.data_dir, env, "--min-age", "0")
    assert found.returncode == 1, found.stdout + found.stderr
    assert "image no row names" in found.stdout
    assert f"s3://{bucket}/{orphan} (15 bytes)" in found.stdout
    assert orphan in objects(moto, bucket)
    repaired = _doctor(server.data_dir, env, "--min-age", "0", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert orphan not in objects(moto, bucket)
    assert len(objects(moto, bucket)) == 2  # the generation's image and thumbnail are kept

    unreachable = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    down = _doctor(server.data_dir, unreachable)
    assert down.returncode == 2, down.stdout + down.stderr
    assert "STORAGE_ERROR" in down.stderr
    assert "could not be reached" in down.stderr
    assert env["AWS_SECRET_ACCESS_KEY"] not in down.stdout + down.stderr


@pytest.mark.postgres
def test_an_image_made_on_one_server_is_served_transformed_and_deleted_from_another(
    postgres: PostgresServer, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    with postgres.schema() as url:
        env = {"IMAGESTUDIO_DATABASE_URL": url, **storage_env(moto, bucket)}
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(start_server, tmp_path / name / "data", env) for name in ("a", "b")]
            a, b = (future.result() for future in started)
        try:
            with (
                httpx.Client(base_url=a.url, timeout=60) as on_a,
                httpx.Client(base_url=b.url, timeout=60) as on_b,
            ):
                made = generate(on_a, "a lighthouse on a cliff")
                stored = objects(moto, bucket)
                image = on_b.get(made["filePath"])
                assert (image.status_code, image.content) == (200, on_a.get(made["filePath"]).content)
                assert image.content in stored.values()
                thumbnail = on_b.get(made["thumbnailPath"])
                assert thumbnail.status_code == 200
                assert thumbnail.content in stored.values()

                transformed = on_b.post(
                    "/api/generate/image-to-image",
                    json={"seedImage": made["filePath"], "prompt": "the lighthouse in fog", "steps": 2},
                )
                assert transformed.status_code == 200, transformed.text
                derived = transformed.json()["data"]
                assert derived["parameters"]["sourceId"] == made["id"]
                assert on_a.get(derived["filePath"]).status_code == 200  # and B's image is A's too

                assert on_b.delete(f"/api/history/{made['id']}").status_code == 200
                left = objects(moto, bucket)
                assert image.content not in left.values()
                assert thumbnail.content not in left.values()
                assert len(left) == 2
                assert on_a.get(made["filePath"]).status_code == 404
            for server in (a, b):
                assert not (server.data_dir / "generated").exists()
        finally:
            for server in (a, b):
                stop_server(server)
