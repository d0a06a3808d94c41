"""Batches over HTTP (``count``): the list answer, the task's generationIds, the WebSocket's
completed message, consecutive seeds, bounds, idempotency, and a cancel midway leaving nothing;
on the Runware engine (against the fake Runware server) one task with ``numberResults``."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from imagestudio.config import Config, Secret
from imagestudio.http.app import create_app
from imagestudio.testing.fake_runware import FakeRunware, Fault
from imagestudio.testing.fake_runware.oracle import violations
from tests.http.test_tasks import KEY, wait_for

Client = TestClient  # type: ignore[type-arg]
SMALL = {"width": 128, "height": 128, "steps": 2}
T2I = "/api/generate/text-to-image"


def _images(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".jpeg", ".webp")]


def _pixels(client: Client, path: str) -> bytes:
    with Image.open(io.BytesIO(client.get(path).content)) as image:
        return image.convert("RGB").tobytes()


def test_a_synchronous_batch_answers_the_list_of_generations_in_seed_order(
    client: Client, data_dir: Path
) -> None:
    response = client.post(T2I, json={"prompt": "a red fox", "seed": 10, "count": 3, "taskId": "b1", **SMALL})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert isinstance(data, list)
    assert [g["seed"] for g in data] == [10, 11, 12]
    assert [g["parameters"]["seed"] for g in data] == [10, 11, 12]
    assert len({g["filePath"] for g in data}) == 3
    assert {g["taskId"] for g in data} == {"b1"}
    for generation in data:
        assert client.get(generation["filePath"]).status_code == 200
        assert client.get(generation["thumbnailPath"]).status_code == 200
    assert client.get("/api/history").json()["total"] == 3
    task = client.get("/api/tasks/b1").json()["data"]
    assert task["generationIds"] == [g["id"] for g in data]
    assert task["generationId"] == data[0]["id"]

    # any image of the batch can be made again alone, with its own seed
    again = client.post(T2I, json={"prompt": "a red fox", "seed": data[1]["seed"], **SMALL}).json()["data"]
    assert again["seed"] == 11
    assert _pixels(client, again["filePath"]) == _pixels(
        client, data[1]["filePath"]
    )  # the file's metadata differs
    assert _pixels(client, again["filePath"]) != _pixels(client, data[0]["filePath"])


def test_count_1_or_absent_answers_the_single_generation(client: Client) -> None:
    for extra in ({}, {"count": 1}):
        data = client.post(T2I, json={"prompt": "a red fox", **SMALL, **extra}).json()["data"]
        assert isinstance(data, dict)
        assert data["operation"] == "text-to-image"


def test_a_drawn_seed_starts_the_batch(client: Client) -> None:
    data = client.post(T2I, json={"prompt": "a red fox", "count": 2, **SMALL}).json()["data"]
    assert data[1]["seed"] == data[0]["seed"] + 1 or data[1]["seed"] == 1


@pytest.mark.parametrize("count", [0, 9, "2", 2.5, None, True])
def test_count_out_of_bounds_or_not_an_integer_is_400_naming_count(client: Client, count: Any) -> None:
    for path, extra in (
        (T2I, {}),
        ("/api/generate/image-to-image", {"seedImage": "data:image/png;base64,AA"}),
    ):
        response = client.post(path, json={"prompt": "a red fox", "count": count, **extra})
        assert response.status_code == 400, (path, count, response.text)
        body = response.json()
        assert body["code"] == "INVALID_PARAMETERS"
        assert body["details"]["field"] == "count"
        assert "count" in body["error"]
    assert client.get("/api/history").json()["total"] == 0


def test_upscale_takes_no_count(client: Client) -> None:
    made = client.post(T2I, json={"prompt": "a red fox", **SMALL}).json()["data"]
    response = client.post("/api/generate/upscale", json={"imagePath": made["filePath"], "count": 2})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "count"


def test_image_to_image_makes_a_batch(client: Client) -> None:
    made = client.post(T2I, json={"prompt": "a red fox", **SMALL}).json()["data"]
    response = client.post(
        "/api/generate/image-to-image",
        json={"prompt": "a blue fox", "seedImage": made["filePath"], "seed": 5, "count": 2, **SMALL},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [g["seed"] for g in data] == [5, 6]
    assert {g["parameters"]["sourceId"] for g in data} == {made["id"]}


def test_an_async_batch_is_one_task_and_the_socket_completes_with_every_id(client: Client) -> None:
    with client.websocket_connect("/ws/generation?taskId=b-async") as socket:
        response = client.post(
            T2I,
            json={"prompt": "a red fox", "count": 3, "taskId": "b-async", **SMALL},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202
        messages = []
        while not messages or messages[-1]["status"] not in ("completed", "failed"):
            messages.append(socket.receive_json(timeout=30))
    task = wait_for(client, "b-async", ("completed", "failed"))
    assert task["status"] == "completed"
    ids = task["generationIds"]
    assert len(ids) == 3
    assert task["generationId"] == ids[0]
    assert [client.get(f"/api/history/{i}").json()["data"]["taskId"] for i in ids] == ["b-async"] * 3
    completed = messages[-1]
    assert completed["status"] == "completed"
    assert completed["generationIds"] == ids
    assert completed["generationId"] == ids[0]
    progresses = [m["progress"] for m in messages]
    assert progresses == sorted(progresses)
    assert any(0 < p < 99 for p in progresses)  # the progress runs across the batch
    assert [m["status"] for m in messages].count("completed") == 1


def test_an_idempotency_key_covers_the_batch_and_its_count(client: Client) -> None:
    body = {"prompt": "a red fox", "count": 2, **SMALL}
    first = client.post(T2I, json=body, headers={"Idempotency-Key": "batch-1"})
    again = client.post(T2I, json=body, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == again.status_code == 200
    assert [g["id"] for g in again.json()["data"]] == [g["id"] for g in first.json()["data"]]
    other = client.post(T2I, json={**body, "count": 3}, headers={"Idempotency-Key": "batch-1"})
    assert other.status_code == 409
    assert client.get("/api/history").json()["total"] == 2
    # count 1 and no count are one request (and the fingerprint of a request from before batches)
    single = client.post(T2I, json={"prompt": "a cat", **SMALL}, headers={"Idempotency-Key": "one"})
    same = client.post(T2I, json={"prompt": "a cat", "count": 1, **SMALL}, headers={"Idempotency-Key": "one"})
    assert same.status_code == 200
    assert same.json()["data"]["id"] == single.json()["data"]["id"]


@pytest.fixture
def slow_runware_client(tmp_path: Path) -> Iterator[tuple[Client, FakeRunware]]:
    """The Runware engine against the fake Runware server, one second per task."""
    with runware_app(tmp_path, latency=1.0, timeout=30) as running:
        yield running


@contextmanager
def runware_app(tmp_path: Path, *, latency: float, timeout: float) -> Iterator[tuple[Client, FakeRunware]]:
    with FakeRunware.running(api_key=KEY, latency=latency) as fake:
        config = Config(
            data_dir=tmp_path / "data",
            engine="runware",
            runware_api_key=Secret(KEY),
            runware_api_url=fake.url,
            runware_timeout=timeout,
        )
        with TestClient(create_app(config), base_url="http://127.0.0.1:8000") as client:
            yield client, fake


def _inference(fake: FakeRunware) -> list[dict[str, Any]]:
    return [t for t in fake.tasks if t.get("taskType") == "imageInference"]


def test_a_batch_cancelled_while_runware_makes_it_leaves_no_row_and_no_file(
    tmp_path: Path,
) -> None:
    with runware_app(tmp_path, latency=3.0, timeout=30) as (client, fake):
        response = client.post(
            T2I,
            json={"prompt": "a red fox", "count": 3, "taskId": "b-cancel"},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202
        deadline = time.monotonic() + 20
        while fake.polls < 1 and time.monotonic() < deadline:  # Runware took the task and is polled
            time.sleep(0.05)
        assert fake.polls >= 1, "the batch's task was never polled"
        assert wait_for(client, "b-cancel", ("generating",))["status"] == "generating"

        cancelled = client.delete("/api/tasks/b-cancel")

        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["data"]["status"] == "cancelled"
        assert cancelled.json()["data"]["generationIds"] == []
        time.sleep(3.5)  # past the moment Runware's results are ready: they are not fetched or kept
        assert client.get("/api/history").json()["total"] == 0
        assert _images(tmp_path / "data") == []
        assert len(_inference(fake)) == 1  # one task, never sent again
        assert fake.billed == 1
        assert fake.image_downloads == 0


def test_a_synchronous_batch_waits_for_all_its_images(
    slow_runware_client: tuple[Client, FakeRunware],
) -> None:
    client, _ = slow_runware_client
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(client.post(T2I, json={"prompt": "a red fox", "count": 2, "seed": 3}))
    )
    thread.start()
    thread.join(30)
    assert results, "the request did not finish"
    assert results[0].status_code == 200, results[0].text
    assert [g["seed"] for g in results[0].json()["data"]] == [3, 4]


def test_the_runware_engine_makes_a_batch_with_one_schema_valid_task_of_number_results_n(
    slow_runware_client: tuple[Client, FakeRunware], tmp_path: Path
) -> None:
    """The Runware path of a batch: one ``imageInference`` task with ``numberResults`` N and the
    seed of the first image, valid against the SDK's schema (the fake's oracle); N generations
    stored with seeds ``seed``, ``seed+1``, ..., each of them the image its seed makes alone."""
    client, fake = slow_runware_client
    fake.latency = 0.0
    response = client.post(T2I, json={"prompt": "a red fox", "count": 3, "seed": 70, "taskId": "rw-b"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [g["seed"] for g in data] == [70, 71, 72]
    assert [g["parameters"]["seed"] for g in data] == [70, 71, 72]
    [task] = _inference(fake)
    assert (task["numberResults"], task["seed"]) == (3, 70)
    assert violations(task) == []
    assert fake.billed == 1
    assert client.get("/api/history").json()["total"] == 3
    assert len(_images(tmp_path / "data")) == 6  # three images and their thumbnails
    assert client.get("/api/tasks/rw-b").json()["data"]["generationIds"] == [g["id"] for g in data]
    assert len({_pixels(client, g["filePath"]) for g in data}) == 3

    alone = client.post(T2I, json={"prompt": "a red fox", "seed": 71}).json()["data"]
    assert _pixels(client, alone["filePath"]) == _pixels(client, data[1]["filePath"])
    assert _inference(fake)[-1]["numberResults"] == 1


def test_a_runware_batch_missing_a_result_fails_whole_and_stores_nothing(tmp_path: Path) -> None:
    with runware_app(tmp_path, latency=0.0, timeout=2.0) as (client, fake):
        fake.inject(Fault.SHORT_BATCH, times=1)  # the third image never comes

        response = client.post(T2I, json={"prompt": "a red fox", "count": 3, "taskId": "b-short"})

        assert response.status_code == 500, response.text
        body = response.json()
        assert body["code"] == "API_TIMEOUT"
        assert "2 of the 3 images" in body["error"]
        task = client.get("/api/tasks/b-short").json()["data"]
        assert (task["status"], task["generationIds"]) == ("failed", [])
        assert client.get("/api/history").json()["total"] == 0
        assert _images(tmp_path / "data") == []
        assert len(_inference(fake)) == 1
        assert fake.billed == 1
