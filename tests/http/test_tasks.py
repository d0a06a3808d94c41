"""Tasks over HTTP: asynchronous submit, status, cancel, idempotency, a bounded queue, replay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config, Secret
from imagestudio.http.app import create_app
from imagestudio.testing.fake_runware import FakeRunware

Client = TestClient  # type: ignore[type-arg]
KEY = "tasks-test-key"
SMALL = {"width": 128, "height": 128, "steps": 2}


def wait_for(client: Client, task_id: str, statuses: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/tasks/{task_id}")
        task: dict[str, Any] = response.json().get("data", {"status": None})
        if task["status"] in statuses or time.monotonic() > deadline:
            return task
        time.sleep(0.02)


def test_prefer_respond_async_answers_202_with_the_task_and_its_location(client: Client) -> None:
    response = client.post(
        "/api/generate/text-to-image",
        json={"prompt": "a red fox", "taskId": "async-1", **SMALL},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/api/tasks/async-1"
    task = response.json()["data"]
    assert task["taskId"] == "async-1"
    assert task["status"] in ("queued", "generating", "completed")
    assert task["operation"] == "text-to-image"

    done = wait_for(client, "async-1", ("completed", "failed"))
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert done["error"] is None
    assert done["generation"]["id"] == done["generationId"]
    assert done["generation"]["taskId"] == "async-1"
    assert client.get(done["generation"]["filePath"]).status_code == 200
    listed = client.get("/api/tasks").json()["data"]
    assert "async-1" in [t["taskId"] for t in listed]


def test_unknown_tasks_are_404_and_finished_ones_cannot_be_cancelled(client: Client) -> None:
    body = client.get("/api/tasks/nope").json()
    assert body["code"] == "NOT_FOUND"
    assert client.delete("/api/tasks/nope").status_code == 404
    client.post("/api/generate/text-to-image", json={"prompt": "a cat", "taskId": "done-1", **SMALL})
    response = client.delete("/api/tasks/done-1")
    assert response.status_code == 409
    assert response.json()["code"] == "CONFLICT"


def test_a_task_whose_generation_was_deleted_still_answers_without_it(client: Client) -> None:
    made = client.post("/api/generate/text-to-image", json={"prompt": "a cat", "taskId": "gone-1", **SMALL})
    generation_id = made.json()["data"]["id"]
    assert client.get("/api/tasks/gone-1").json()["data"]["generation"]["id"] == generation_id
    assert client.delete(f"/api/history/{generation_id}").status_code == 200
    response = client.get("/api/tasks/gone-1")
    assert response.status_code == 200, response.text
    task = response.json()["data"]
    assert task["status"] == "completed"
    assert task["generationId"] == generation_id
    assert "generation" not in task


def test_a_reused_task_id_is_409(client: Client) -> None:
    client.post("/api/generate/text-to-image", json={"prompt": "a cat", "taskId": "twice", **SMALL})
    again = client.post("/api/generate/text-to-image", json={"prompt": "a dog", "taskId": "twice", **SMALL})
    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"
    assert client.get("/api/history").json()["total"] == 1


def test_an_idempotency_key_repeats_without_generating_twice(client: Client) -> None:
    body = {"prompt": "a lighthouse", **SMALL}
    first = client.post("/api/generate/text-to-image", json=body, headers={"Idempotency-Key": "abc-123"})
    second = client.post("/api/generate/text-to-image", json=body, headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert client.get("/api/history").json()["total"] == 1

    other = client.post(
        "/api/generate/text-to-image",
        json={**body, "prompt": "a windmill"},
        headers={"Idempotency-Key": "abc-123"},
    )
    assert other.status_code == 409
    assert other.json()["code"] == "CONFLICT"
    async_repeat = client.post(
        "/api/generate/text-to-image",
        json=body,
        headers={"Idempotency-Key": "abc-123", "Prefer": "respond-async"},
    )
    assert async_repeat.status_code == 202
    assert async_repeat.json()["data"]["generationId"] == first.json()["data"]["id"]
    bad = client.post("/api/generate/text-to-image", json=body, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 400
    assert bad.json()["details"]["field"] == "Idempotency-Key"


@pytest.fixture
def slow_runware(tmp_path: Path) -> Iterator[tuple[Client, FakeRunware]]:
    with FakeRunware.running(api_key=KEY, latency=2.0) as fake:
        config = Config(
            data_dir=tmp_path / "data",
            engine="runware",
            runware_api_key=Secret(KEY),
            runware_api_url=fake.url,
            runware_timeout=30,
            max_running=1,
            max_queued=1,
        )
        with TestClient(create_app(config), base_url="http://127.0.0.1:8000") as client:
            yield client, fake


def test_the_queue_is_bounded_positions_are_reported_and_cancel_works(
    slow_runware: tuple[Client, FakeRunware], tmp_path: Path
) -> None:
    client, _ = slow_runware
    submit = {"headers": {"Prefer": "respond-async"}}
    running = client.post("/api/generate/text-to-image", json={"prompt": "first", "taskId": "q1"}, **submit)
    waiting = client.post("/api/generate/text-to-image", json={"prompt": "second", "taskId": "q2"}, **submit)
    refused = client.post("/api/generate/text-to-image", json={"prompt": "third", "taskId": "q3"}, **submit)
    assert running.status_code == waiting.status_code == 202
    assert refused.status_code == 503
    assert refused.json()["code"] == "QUEUE_FULL"
    assert waiting.json()["data"]["position"] == 1
    assert wait_for(client, "q1", ("generating",))["status"] == "generating"

    cancelled_queued = client.delete("/api/tasks/q2")
    assert cancelled_queued.status_code == 200
    assert cancelled_queued.json()["data"]["status"] == "cancelled"
    started = time.monotonic()
    cancelled_running = client.delete("/api/tasks/q1")
    assert cancelled_running.status_code == 200
    assert cancelled_running.json()["data"]["status"] == "cancelled"
    assert time.monotonic() - started < 1.5  # the provider call was abandoned, not awaited
    assert client.get("/api/history").json()["total"] == 0
    assert [p for p in (tmp_path / "data").rglob("*") if p.suffix in (".jpg", ".png")] == []
    tasks = {t["taskId"]: t["status"] for t in client.get("/api/tasks").json()["data"]}
    assert tasks["q1"] == tasks["q2"] == "cancelled"


def test_a_synchronous_request_whose_task_is_cancelled_answers_409(
    slow_runware: tuple[Client, FakeRunware],
) -> None:
    import threading

    client, _ = slow_runware
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(
            client.post("/api/generate/text-to-image", json={"prompt": "sync one", "taskId": "sync-c"})
        )
    )
    thread.start()
    wait_for(client, "sync-c", ("generating",))
    client.delete("/api/tasks/sync-c")
    thread.join(timeout=10)
    assert results[0].status_code == 409
    assert results[0].json()["code"] == "CANCELLED"


def test_a_reconnecting_socket_replays_what_it_missed_after_a_seq(client: Client) -> None:
    with client.websocket_connect("/ws/generation") as socket:
        client.post("/api/generate/text-to-image", json={"prompt": "first", "taskId": "r1", **SMALL})
        first_messages = []
        while not first_messages or first_messages[-1]["status"] != "completed":
            first_messages.append(socket.receive_json(timeout=10))
    last_seen = first_messages[-1]["seq"]
    # while disconnected, another task runs from start to end
    client.post("/api/generate/text-to-image", json={"prompt": "second", "taskId": "r2", **SMALL})
    with client.websocket_connect(f"/ws/generation?after={last_seen}") as socket:
        replayed = []
        while not replayed or replayed[-1]["status"] != "completed":
            replayed.append(socket.receive_json(timeout=10))
    assert {m["taskId"] for m in replayed} == {"r2"}
    assert replayed[0]["seq"] == last_seen + 1
    assert [m["seq"] for m in replayed] == list(range(last_seen + 1, last_seen + 1 + len(replayed)))
    assert [m["status"] for m in replayed].count("completed") == 1
    with client.websocket_connect(f"/ws/generation?taskId=r1&after={first_messages[0]['seq'] - 1}") as socket:
        again = []
        while not again or again[-1]["status"] != "completed":
            again.append(socket.receive_json(timeout=10))
    assert [m["seq"] for m in again] == [m["seq"] for m in first_messages]


def test_many_concurrent_tasks_each_end_exactly_once_with_monotone_progress(client: Client) -> None:
    ids = [f"many-{i}" for i in range(12)]
    with client.websocket_connect("/ws/generation") as socket:
        for task_id in ids:
            accepted = client.post(
                "/api/generate/text-to-image",
                json={"prompt": f"picture {task_id}", "taskId": task_id, **SMALL},
                headers={"Prefer": "respond-async"},
            )
            assert accepted.status_code == 202
        messages: list[dict[str, Any]] = []
        ended: set[str] = set()
        while ended != set(ids):
            message = socket.receive_json(timeout=30)
            messages.append(message)
            if message["status"] in ("completed", "failed", "cancelled"):
                ended.add(message["taskId"])
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs)
    for task_id in ids:
        mine = [m for m in messages if m["taskId"] == task_id]
        assert [m["status"] for m in mine].count("completed") == 1
        assert mine[-1]["status"] == "completed"
        progress = [m["progress"] for m in mine]
        assert progress == sorted(progress)
    assert client.get("/api/history").json()["total"] == len(ids)
