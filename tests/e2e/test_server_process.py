"""End to end: the real ``imagestudio serve`` process over real HTTP and a real WebSocket."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from PIL import Image

from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.e2e


def test_generate_watch_fetch_list_delete_over_real_http(server: Server) -> None:
    async def scenario() -> tuple[list[dict[str, object]], dict[str, object]]:
        uri = f"ws://127.0.0.1:{server.port}/ws/generation?taskId=e2e-1"
        async with (
            websockets.connect(uri) as socket,
            httpx.AsyncClient(base_url=server.url, timeout=60) as client,
        ):
            post = asyncio.create_task(
                client.post(
                    "/api/generate/text-to-image",
                    json={
                        "prompt": "blue ocean at night with stars",
                        "taskId": "e2e-1",
                        "steps": 10,
                        "seed": 3,
                    },
                )
            )
            messages: list[dict[str, object]] = []
            while not messages or messages[-1]["status"] not in ("completed", "failed"):
                messages.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=60)))
            response = await post
            assert response.status_code == 200, response.text
            return messages, response.json()["data"]

    messages, generation = asyncio.run(scenario())
    assert messages[-1]["status"] == "completed"
    assert messages[-1]["generationId"] == generation["id"]
    progresses = [m["progress"] for m in messages]
    assert progresses == sorted(progresses)

    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert generation["url"] == f"{server.url}{generation['filePath']}"
        image = client.get(str(generation["filePath"]))
        assert image.status_code == 200
        assert Image.open(io.BytesIO(image.content)).size == (512, 512)

        history = client.get("/api/history").json()
        assert history["total"] == 1
        assert history["data"][0]["id"] == generation["id"]

        assert client.delete(f"/api/history/{generation['id']}").json()["message"] == "Generation deleted"
        assert client.get(str(generation["filePath"])).status_code == 404
        missing = client.get("/api/history/1")
        assert missing.status_code == 404
        assert missing.json() == {"success": False, "error": "Generation not found", "code": "NOT_FOUND"}


def test_history_and_settings_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            made = client.post(
                "/api/generate/text-to-image", json={"prompt": "a red fox", "steps": 2}
            ).json()["data"]
            client.put("/api/settings", json={"defaultSteps": 12})
    finally:
        stop_server(first)
    second = start_server(data_dir)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as client:
            assert client.get(f"/api/history/{made['id']}").json()["data"]["prompt"] == "a red fox"
            assert client.get("/api/settings").json()["data"]["defaultSteps"] == 12
            assert client.get(made["filePath"]).status_code == 200
    finally:
        stop_server(second)


def test_the_cli_generates_an_image_in_process_with_a_progress_bar(tmp_path: Path) -> None:
    out = tmp_path / "picture.jpg"
    result = subprocess.run(
        [
            sys.executable, "-m", "imagestudio", "generate", "a green forest with a small cabin",
            "--seed", "11", "--width", "256", "--height", "192", "--steps", "5",
            "--out", str(out), "--data-dir", str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr
    assert "seed 11" in result.stdout
    assert Image.open(out).size == (256, 192)


def test_the_cli_reports_a_bad_prompt_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imagestudio", "generate", " ", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "INVALID_PROMPT: Prompt is required" in result.stderr
