"""What a real server writes on its console at the default level: a line per generation (however
it ended), per refused or failed request, and what a shutdown did with queued work."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

TOKEN = "console-test-token-0123456789"  # noqa: S105 (a test token)


def _lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for raw in server.log_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def _events(server: Server, event: str, *, timeout: float = 10, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in _lines(server) if line["event"] == event]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    running = start_server(
        tmp_path / "data",
        {"IMAGESTUDIO_LOG_FORMAT": "json", "IMAGESTUDIO_MAX_RUNNING": "1", "IMAGESTUDIO_API_TOKEN": TOKEN},
    )
    yield running
    stop_server(running)


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_a_completed_generation_is_one_line_with_what_was_made(server: Server) -> None:
    with _client(server) as client:
        made = client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a red sunset", "width": 192, "height": 128, "steps": 3, "taskId": "line-1"},
        ).json()["data"]
    [line] = _events(server, "generation completed")
    assert line["level"] == "info"
    assert line["task"] == "line-1"
    assert line["generation"] == made["id"]
    assert line["operation"] == "text-to-image"
    assert line["engine"] == "local"
    assert line["model"] == "local:procedural@1"
    assert line["size"] == "192x128"
    assert 0 <= line["seconds"] < 60
    assert line["waited"] >= 0
    assert "services ready" in server.log_text()  # start-up says where the data is, once
    assert "generations" not in line


def test_a_batch_is_one_line_naming_every_image(server: Server) -> None:
    with _client(server) as client:
        made = client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a batch", "width": 128, "height": 128, "steps": 2, "count": 3, "taskId": "b-1"},
        ).json()["data"]
    [line] = _events(server, "generation completed")
    assert line["task"] == "b-1"
    assert line["generations"] == [g["id"] for g in made]
    assert line["generation"] == made[0]["id"]


def test_a_failed_and_a_cancelled_generation_each_get_their_line(server: Server) -> None:
    with _client(server) as client:
        running = client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a slow one", "width": 1024, "height": 1024, "steps": 100, "taskId": "slow-1"},
            headers={"Prefer": "respond-async"},
        )
        assert running.status_code == 202
        assert client.delete("/api/tasks/slow-1").status_code == 200
        assert client.put("/api/settings", json={"storagePath": "./spot"}).status_code == 200
        spot = server.data_dir / "spot"
        spot.rmdir()
        spot.write_bytes(b"a file where the folder was")
        failed = client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a cat", "width": 128, "height": 128, "steps": 1, "taskId": "bad-1"},
        )
        assert failed.status_code == 500
    [cancelled] = _events(server, "generation cancelled")
    assert cancelled["task"] == "slow-1"
    assert cancelled["level"] == "info"
    [line] = _events(server, "generation failed")
    assert line["level"] == "warning"
    assert line["task"] == "bad-1"
    assert line["code"] == "STORAGE_ERROR"
    assert line["error"]
    assert str(server.data_dir) not in line["error"]
    [request] = [r for r in _events(server, "request failed") if r["path"] == "/api/generate/text-to-image"]
    assert request["status"] == 500
    assert request["code"] == "STORAGE_ERROR"


def test_refused_requests_are_one_line_each_and_never_show_the_token(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        assert anonymous.get("/api/history").status_code == 401
        assert anonymous.get(f"/api/history?token={TOKEN}&x=1").status_code in (200, 401)
        assert anonymous.get("/health", headers={"Host": "evil.example"}).status_code == 400
    with _client(server) as client:
        assert (
            client.post("/api/generate/text-to-image", json={"prompt": "a cat", "width": 7}).status_code
            == 400
        )
        assert client.get("/api/history/999999").status_code == 404
    refused = _events(server, "request refused", count=5)
    by_code = {line["code"]: line for line in refused}
    assert by_code["UNAUTHORIZED"]["status"] == 401
    assert by_code["UNAUTHORIZED"]["path"] == "/api/history"
    assert by_code["INVALID_HOST"]["status"] == 400
    assert by_code["INVALID_PARAMETERS"]["method"] == "POST"
    assert "width" in by_code["INVALID_PARAMETERS"]["error"]
    assert by_code["NOT_FOUND"]["path"] == "/api/history/999999"
    assert all(line["level"] == "info" and line["client"] == "127.0.0.1" for line in refused)
    assert TOKEN not in server.log_text()


def test_a_shutdown_says_how_many_queued_tasks_it_cancelled(server: Server) -> None:
    total = 8
    with _client(server) as client:
        for index in range(total):
            answer = client.post(
                "/api/generate/text-to-image",
                json={
                    "prompt": "a queue",
                    "width": 2048,
                    "height": 2048,
                    "steps": 100,
                    "taskId": f"q-{index}",
                },
                headers={"Prefer": "respond-async"},
            )
            assert answer.status_code == 202
        queued = [t for t in client.get("/api/tasks").json()["data"] if t["status"] == "queued"]
        assert len(queued) >= 3  # one runs at a time (IMAGESTUDIO_MAX_RUNNING=1)
    stop_server(server)
    [line] = _events(server, "task queue stopped", timeout=1)
    completed = _events(server, "generation completed", timeout=0)
    cancelled = _events(server, "generation cancelled", timeout=0)
    assert line["running"] == 1
    assert line["cancelled_queued"] >= 1
    assert line["stopped_after_grace"] == 0
    assert len(cancelled) == line["cancelled_queued"]  # one line per cancelled task, too
    assert len(completed) + len(cancelled) == total
