"""Crash consistency: a real ``imagestudio serve`` killed with SIGKILL at random points while many
clients generate, upscale and delete, twenty times over one data folder.

After every restart: every history row has its file and its thumbnail, the kept total matches the
rows, no task is left queued or running, and whatever the kill left behind (temporary files of
unfinished writes, images and thumbnails no row names) is exactly what ``imagestudio doctor
--repair`` finds and removes.

The seed of the random kill points is printed; ``CRASH_SEED=<seed>`` replays a run.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagestudio.domain.model import THUMBNAIL_SUFFIX
from tests.resilience.servers import all_rows, image_files, temporaries, thumbnail_files
from tests.servers import Server, kill, start_server, stop_server

pytestmark = pytest.mark.slow

ROUNDS = 20
CLIENTS = 32
ENV = {"IMAGESTUDIO_MAX_QUEUED": "256", "IMAGESTUDIO_SHUTDOWN_GRACE": "1", "IMAGESTUDIO_LOG_LEVEL": "warning"}


def test_a_server_killed_at_random_points_never_leaves_a_row_without_its_file(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED") or time.time_ns() % 1_000_000)
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)  # noqa: S311 - a replayable schedule of kills, not a secret
    data_dir = tmp_path / "data"
    storage = data_dir / "generated"
    found: Counter[str] = Counter()
    server = start_server(data_dir, ENV)
    try:
        for round_ in range(ROUNDS):
            completed = asyncio.run(_work_until_killed(server, rng.uniform(0.3, 2.0), rng.randrange(2**32)))
            found["completed before the kill"] += completed
            server = start_server(data_dir, ENV)

            with httpx.Client(base_url=server.url, timeout=30) as client:
                rows = all_rows(client)
                history = client.get("/api/history", params={"limit": 1}).json()
                tasks = client.get("/api/tasks", params={"limit": 500}).json()["data"]
                sample = rng.sample(rows, min(5, len(rows)))
                assert all(client.get(row["filePath"]).status_code == 200 for row in sample)
            keys = {row["filePath"].removeprefix("/generated/") for row in rows}
            on_disk = {str(p.relative_to(storage)) for p in image_files(storage)}
            assert keys <= on_disk, f"round {round_}: rows without their file: {sorted(keys - on_disk)}"
            thumbnails = {str(p.relative_to(storage)) for p in thumbnail_files(storage)}
            wanted = {key + THUMBNAIL_SUFFIX for key in keys}
            assert wanted <= thumbnails, (
                f"round {round_}: rows without their thumbnail: {wanted - thumbnails}"
            )
            assert history["total"] == len(rows)
            assert [t for t in tasks if t["status"] in ("queued", "generating")] == []

            unreferenced = (on_disk - keys) | (thumbnails - wanted)
            leftovers = temporaries(storage)
            found["unreferenced images and thumbnails"] += len(unreferenced)
            found["temporary files"] += len(leftovers)

            repaired = _doctor(data_dir, "--repair")
            assert repaired.returncode == 0, repaired.stdout + repaired.stderr
            removed = [line for line in repaired.stdout.splitlines() if line.endswith("[removed]")]
            assert len(removed) == len(unreferenced) + len(leftovers), repaired.stdout
            for leftover in [*(storage / key for key in unreferenced), *leftovers]:
                assert any(str(leftover) in line for line in removed), repaired.stdout
            assert {str(p.relative_to(storage)) for p in image_files(storage)} == keys
            assert {str(p.relative_to(storage)) for p in thumbnail_files(storage)} == wanted
            assert temporaries(storage) == []
    finally:
        stop_server(server)
    print(f"after {ROUNDS} kills: {dict(found)}")
    assert found["completed before the kill"] > ROUNDS


async def _work_until_killed(server: Server, after: float, seed: int) -> int:
    """``CLIENTS`` clients generate, upscale and delete until the server is SIGKILLed ``after``
    seconds in; returns how many requests completed."""
    completed = 0
    limits = httpx.Limits(max_connections=CLIENTS, keepalive_expiry=2.0)  # below uvicorn's 5 s
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        known: list[dict[str, Any]] = (await client.get("/api/history", params={"limit": 50})).json()["data"]

        async def one_client(number: int) -> None:
            nonlocal completed
            mine = random.Random(seed + number)  # noqa: S311 - replayable client behaviour
            while True:
                roll = mine.random()
                try:
                    if roll < 0.15 and known:
                        victim = known.pop(mine.randrange(len(known)))
                        await client.delete(f"/api/history/{victim['id']}")
                    elif roll < 0.25 and known:
                        source = mine.choice(known)
                        await client.post(
                            "/api/generate/upscale", json={"imagePath": source["filePath"], "scale": 2}
                        )
                    else:
                        side = mine.choice((128, 128, 256, 512))
                        made = await client.post(
                            "/api/generate/text-to-image",
                            json={
                                "prompt": f"crash test {number}",
                                "width": side,
                                "height": side,
                                "steps": 1,
                            },
                        )
                        if made.status_code == 200 and made.json()["data"]["width"] <= 256:
                            known.append(made.json()["data"])
                except httpx.TransportError:
                    return
                completed += 1

        async def killer() -> None:
            await asyncio.sleep(after)
            await asyncio.to_thread(kill, server)

        await asyncio.gather(killer(), *(one_client(n) for n in range(CLIENTS)))
    return completed


def _doctor(data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWARE_", "IMAGESTUDIO_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "imagestudio",
            "doctor",
            "--data-dir",
            str(data_dir),
            "--min-age",
            "0",
            *flags,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
