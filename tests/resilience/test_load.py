"""Load: a few thousand mixed requests at concurrency 64 against a real server process on loopback.

Sixty-four clients each generate, list, read and delete their own generations and read and change
the settings (including the storage folder, so images land in two roots). Every answer must be a
success: each client deletes and reads only generations it made and has not deleted, so no 404 is
expected. ``IMAGESTUDIO_MAX_QUEUED`` is sized so that 64 concurrent generations wait in the queue
instead of being refused with 503 ``QUEUE_FULL`` (the right answer to overload, but not this test's
subject). At the end the history holds exactly the generations made minus those deleted, each
row's file is served, and ``imagestudio doctor`` finds nothing amiss.
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

from tests.resilience.servers import all_rows, image_files, log_problems, temporaries
from tests.servers import start_server, stop_server

pytestmark = pytest.mark.slow

CONCURRENCY = 64
REQUESTS = 3000
TIME_LIMIT = 300.0
ENV = {
    "IMAGESTUDIO_MAX_QUEUED": str(2 * CONCURRENCY),  # every client may have a generation waiting
    "IMAGESTUDIO_LOG_LEVEL": "warning",
}
ROOTS = ("./generated", "./generated-b")
KEEPALIVE = 2.0
"""Seconds the client keeps an idle connection: below uvicorn's 5, so it never reuses one the server
is closing at that very moment (a race of HTTP keep-alive, not of the server)."""


def test_thousands_of_mixed_requests_at_concurrency_64_all_succeed_and_the_history_adds_up(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, ENV)
    try:
        began = time.monotonic()
        outcome = asyncio.run(asyncio.wait_for(_load(server.url), TIME_LIMIT))
        elapsed = time.monotonic() - began
        print(
            f"{REQUESTS} requests in {elapsed:.1f} s ({REQUESTS / elapsed:.0f}/s): {dict(outcome.operations)}"
        )
        with httpx.Client(base_url=server.url, timeout=60) as client:
            rows = all_rows(client)
            total = client.get("/api/history", params={"limit": 1}).json()["total"]
            served = asyncio.run(_status_of_files(server.url, [row["filePath"] for row in rows]))
        problems = log_problems(server)
    finally:
        stop_server(server)

    assert outcome.failures == [], (
        f"{len(outcome.failures)} failures, e.g. {outcome.failures[:5]}\n{problems}"
    )
    assert sum(outcome.operations.values()) == REQUESTS
    assert total == len(rows) == outcome.generated - outcome.deleted
    assert {row["id"] for row in rows} == outcome.alive
    assert served == Counter({200: len(rows)})
    files = [p for root in ROOTS for p in image_files(data_dir / root)]
    assert len(files) == len(rows)
    assert [p for root in ROOTS for p in temporaries(data_dir / root)] == []
    doctor = subprocess.run(
        [sys.executable, "-m", "imagestudio", "doctor", "--data-dir", str(data_dir), "--min-age", "0"],
        env={k: v for k, v in os.environ.items() if not k.startswith(("RUNWARE_", "IMAGESTUDIO_"))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


class Outcome:
    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()
        self.failures: list[str] = []
        self.generated = 0
        self.deleted = 0
        self.alive: set[int] = set()


async def _load(url: str) -> Outcome:
    outcome = Outcome()
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=KEEPALIVE)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        per_client = [
            REQUESTS // CONCURRENCY + (1 if n < REQUESTS % CONCURRENCY else 0) for n in range(CONCURRENCY)
        ]
        await asyncio.gather(*(_client(client, n, count, outcome) for n, count in enumerate(per_client)))
    return outcome


async def _client(client: httpx.AsyncClient, number: int, count: int, outcome: Outcome) -> None:
    rng = random.Random(number)  # noqa: S311 - a replayable request mix, not a secret
    mine: list[int] = []
    for _ in range(count):
        roll = rng.random()
        victim = None
        if roll < 0.35 or not mine:
            name, method, path = "generate", "POST", "/api/generate/text-to-image"
            side = rng.choice((128, 128, 128, 256))
            options: dict[str, Any] = {
                "json": {
                    "prompt": f"load {number} {rng.randrange(1000)}",
                    "width": side,
                    "height": side,
                    "steps": 1,
                }
            }
        elif roll < 0.55:
            name, method, path = "list", "GET", "/api/history"
            options = {"params": {"limit": rng.choice((10, 50, 100))}}
        elif roll < 0.70:
            name, method, path, options = "get", "GET", f"/api/history/{rng.choice(mine)}", {}
        elif roll < 0.80:
            victim = mine.pop(rng.randrange(len(mine)))
            name, method, path, options = "delete", "DELETE", f"/api/history/{victim}", {}
        elif roll < 0.90:
            name, method, path, options = "settings get", "GET", "/api/settings", {}
        else:
            name, method, path = "settings put", "PUT", "/api/settings"
            options = {
                "json": rng.choice(
                    (
                        {"storagePath": rng.choice(ROOTS)},
                        {"defaultSteps": rng.randrange(1, 40)},
                        {"defaultCfgScale": rng.choice((5, 7.5, 9))},
                    )
                )
            }
        outcome.operations[name] += 1
        try:
            response = await client.request(method, path, **options)
        except httpx.TransportError as error:
            outcome.failures.append(f"{name}: {type(error).__name__} {error}")
            continue
        if response.status_code != 200:
            outcome.failures.append(f"{name}: {response.status_code} {response.text[:200]}")
        elif name == "generate":
            generation_id = response.json()["data"]["id"]
            mine.append(generation_id)
            outcome.alive.add(generation_id)
            outcome.generated += 1
        elif name == "delete":
            assert victim is not None
            outcome.alive.discard(victim)
            outcome.deleted += 1


async def _status_of_files(url: str, paths: list[str]) -> Counter[int]:
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=KEEPALIVE)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def status(path: str) -> int:
            async with gate:
                return (await client.get(path)).status_code

        return Counter(await asyncio.gather(*(status(path) for path in paths)))
