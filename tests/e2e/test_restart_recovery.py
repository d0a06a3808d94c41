"""A real server process killed mid-task: after a restart the task is failed (INTERRUPTED), never
left running, and nothing it half-wrote remains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import start_server, stop_server

pytestmark = pytest.mark.e2e
KEY = "recovery-key"
BUSY_PROMPT = (
    "a neon city skyline at night over an ocean with waves, snowy mountains, a pine forest with"
    " cabins, stars, clouds, a blue sphere and a red cube, storm and fire"
)


def test_a_task_running_when_the_server_is_killed_is_interrupted_after_restart(tmp_path: Path) -> None:
    fake = subprocess.Popen(
        [sys.executable, "-m", "imagestudio.testing.fake_runware", "--port", "0", "--latency", "30"],
        env={**os.environ, "RUNWARE_API_KEY": KEY},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        line = fake.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        env = {"RUNWARE_API_KEY": KEY, "RUNWARE_API_URL": url}
        data_dir = tmp_path / "data"
        server = start_server(data_dir, env)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            accepted = client.post(
                "/api/generate/text-to-image",
                json={"prompt": "interrupted", "taskId": "doomed"},
                headers={"Prefer": "respond-async"},
            )
            assert accepted.status_code == 202
            deadline = time.monotonic() + 10
            while client.get("/api/tasks/doomed").json()["data"]["status"] != "generating":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()

        restarted = start_server(data_dir, env)
        try:
            with httpx.Client(base_url=restarted.url, timeout=10) as client:
                task = client.get("/api/tasks/doomed").json()["data"]
                assert task["status"] == "failed"
                assert task["error"]["code"] == "INTERRUPTED"
                assert client.get("/api/history").json()["total"] == 0
                active = [
                    t
                    for t in client.get("/api/tasks").json()["data"]
                    if t["status"] in ("queued", "generating")
                ]
                assert active == []
        finally:
            stop_server(restarted)
        assert [p for p in data_dir.rglob("*") if p.suffix in (".jpg", ".png", ".webp")] == []
    finally:
        fake.kill()
        fake.wait()


def test_a_batch_killed_midway_leaves_none_of_its_images_after_restart(tmp_path: Path) -> None:
    """The first image of a batch of three is stored (file and thumbnail, recorded on the task) when
    the server is killed: after a restart the task is INTERRUPTED and that image is gone too.

    The local engine makes a batch's images one after the other, each stored as it is ready; this
    scene at 2048 px and 100 steps takes a good half second, the moment the test needs to kill
    the server between two images. (On Runware a batch is one task whose images are all stored
    within milliseconds of their arrival.)"""
    data_dir = tmp_path / "data"
    server = start_server(data_dir, {"IMAGESTUDIO_ENGINE": "local"})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            accepted = client.post(
                "/api/generate/text-to-image",
                json={"prompt": BUSY_PROMPT, "taskId": "batch", "count": 3, "width": 2048, "height": 2048,
                      "steps": 100},
                headers={"Prefer": "respond-async"},
            )  # fmt: skip
            assert accepted.status_code == 202
            deadline = time.monotonic() + 60
            # a thumbnail is written after its image is recorded on the task: image 1 is stored
            while not list(data_dir.rglob("*.thumb.webp")):
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    assert len(list(data_dir.rglob("*.thumb.webp"))) == 1, "the kill came after the second image"

    restarted = start_server(data_dir, {"IMAGESTUDIO_ENGINE": "local"})
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as client:
            task = client.get("/api/tasks/batch").json()["data"]
            assert task["status"] == "failed"
            assert task["error"]["code"] == "INTERRUPTED"
            assert task["generationIds"] == []
            assert client.get("/api/history").json()["total"] == 0
    finally:
        stop_server(restarted)
    assert [p for p in data_dir.rglob("*") if p.suffix in (".jpg", ".png", ".webp")] == []
