"""Progress over the WebSocket /ws/generation (CONTRACT.md section 9)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

Client = TestClient  # type: ignore[type-arg]


def _post(client: Client, results: list[Any], **body: Any) -> threading.Thread:
    def run() -> None:
        results.append(client.post("/api/generate/text-to-image", json=body))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _until_terminal(socket: Any) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = socket.receive_json(timeout=30)
        messages.append(message)
        if message["status"] in ("completed", "failed"):
            return messages


def test_a_task_subscriber_sees_monotone_progress_and_one_completed(client: Client) -> None:
    with client.websocket_connect("/ws/generation?taskId=sunset-1") as socket:
        results: list[Any] = []
        thread = _post(
            client, results, prompt="a red sunset", taskId="sunset-1", steps=8, width=128, height=128
        )
        messages = _until_terminal(socket)
        thread.join()
    generation = results[0].json()["data"]
    assert generation["taskId"] == "sunset-1"
    assert all(m["type"] == "progress" and m["taskId"] == "sunset-1" for m in messages)
    assert messages[0]["status"] == "queued"
    assert "generating" in {m["status"] for m in messages}
    progresses = [m["progress"] for m in messages]
    assert progresses == sorted(progresses)
    assert len([m for m in messages if m["status"] in ("completed", "failed")]) == 1
    seqs = [m.pop("seq") for m in messages]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert messages[-1] == {
        "type": "progress",
        "taskId": "sunset-1",
        "progress": 100,
        "status": "completed",
        "generationId": generation["id"],
        "generationIds": [generation["id"]],
    }


def test_a_late_subscriber_gets_the_terminal_message_once(client: Client) -> None:
    made = client.post(
        "/api/generate/text-to-image",
        json={"prompt": "a cat", "taskId": "late-1", "steps": 1, "width": 128, "height": 128},
    ).json()["data"]
    with client.websocket_connect("/ws/generation?taskId=late-1") as socket:
        first = socket.receive_json(timeout=5)
        assert first["status"] == "completed"
        assert first["generationId"] == made["id"]
        # and nothing more for that task: a second, different task arrives next on an all-tasks socket
    with client.websocket_connect("/ws/generation?taskId=late-1") as again:
        assert again.receive_json(timeout=5)["status"] == "completed"


def test_a_failed_task_reports_its_error_and_code_and_leaves_nothing(client: Client, data_dir: Path) -> None:
    assert client.put("/api/settings", json={"storagePath": "./spot"}).status_code == 200
    (data_dir / "spot").rmdir()
    (data_dir / "spot").write_bytes(b"a file now stands where the folder was")
    with client.websocket_connect("/ws/generation?taskId=bad-1") as socket:
        results: list[Any] = []
        thread = _post(client, results, prompt="a cat", taskId="bad-1", steps=2, width=128, height=128)
        messages = _until_terminal(socket)
        thread.join()
    body = results[0].json()
    assert results[0].status_code == 500
    assert body["code"] == "STORAGE_ERROR"
    assert str(data_dir) not in body["error"]
    assert messages[-1]["status"] == "failed"
    assert messages[-1]["code"] == "STORAGE_ERROR"
    assert messages[-1]["error"]
    assert client.get("/api/history").json()["total"] == 0
    assert [p for p in data_dir.rglob("*") if p.suffix in (".jpg", ".png")] == []


def test_the_all_tasks_socket_receives_every_task_and_filters_are_respected(client: Client) -> None:
    with (
        client.websocket_connect("/ws/generation") as everything,
        client.websocket_connect("/ws/generation?taskId=only-b") as only_b,
    ):
        for task in ("only-a", "only-b"):
            client.post(
                "/api/generate/text-to-image",
                json={"prompt": "a cat", "taskId": task, "steps": 2, "width": 128, "height": 128},
            )
        seen = []
        while len([m for m in seen if m["status"] == "completed"]) < 2:
            seen.append(everything.receive_json(timeout=10))
        b_messages = _until_terminal(only_b)
    assert {m["taskId"] for m in seen} == {"only-a", "only-b"}
    assert {m["taskId"] for m in b_messages} == {"only-b"}


def test_an_invalid_task_id_is_refused_with_an_error_message(client: Client) -> None:
    with client.websocket_connect("/ws/generation?taskId=not%20valid") as socket:
        message = socket.receive_json(timeout=5)
    assert message["type"] == "error"
    assert message["code"] == "INVALID_PARAMETERS"
