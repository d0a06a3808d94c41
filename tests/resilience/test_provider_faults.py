"""Runware misbehaving under load: a real server process, the fake Runware server, many concurrent
generations while it answers 503, 429, 500, hangs, breaks its protocol and refuses for credit.

Every answer is one the contract lists (200, 503 API_ERROR, 500 API_ERROR with Runware's code,
500 API_TIMEOUT), the history holds exactly the successes, each with its file, nothing is left
half-written, and no task is left running.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from imagestudio.testing.fake_runware import FakeRunware, Fault
from tests.resilience.servers import all_rows, image_files, temporaries
from tests.servers import start_server, stop_server

KEY = "rw-fault-load-key-0123456789"
CONCURRENCY = 64
REQUESTS = 160
RUNWARE_TIMEOUT = 4.0

# The fake hands out faults in this order, one per call (FLAKY fails every other call).
FAULTS = (
    (Fault.FLAKY, 40),
    (Fault.RATE_LIMITED, 30),
    (Fault.UNAVAILABLE, 30),
    (Fault.SERVER_ERROR, 20),
    (Fault.MALFORMED_JSON, 6),
    (Fault.INSUFFICIENT_CREDITS, 4),
    (Fault.HANG, 3),
    (Fault.NOT_AN_ARRAY, 4),
    (Fault.FLAKY, 40),
)


def contract_answer(response: httpx.Response) -> str:
    """The kind of answer, asserting it is one the contract allows for a generate request."""
    assert KEY not in response.text
    body = response.json()
    if response.status_code == 200:
        assert body["success"] is True
        assert body["data"]["parameters"]["engine"] == "runware"
        return "ok"
    assert body["success"] is False
    assert body["error"].startswith("Generation failed:"), body
    kind = (response.status_code, body["code"])
    assert kind in {(503, "API_ERROR"), (500, "API_ERROR"), (500, "API_TIMEOUT")}, body
    if kind == (500, "API_ERROR"):
        assert body["details"]["providerCode"] == "insufficientCredits", body
    return f"{kind[0]} {kind[1]}"


def test_concurrent_generations_while_runware_fails_give_only_contract_answers_and_an_exact_history(
    tmp_path: Path,
) -> None:
    with FakeRunware.running(api_key=KEY) as fake:
        for fault, times in FAULTS:
            fake.inject(fault, times=times)
        env = {
            "RUNWARE_API_KEY": KEY,
            "RUNWARE_API_URL": fake.url,
            "RUNWARE_TIMEOUT": str(RUNWARE_TIMEOUT),
            "IMAGESTUDIO_MAX_QUEUED": str(REQUESTS),
        }
        data_dir = tmp_path / "data"
        server = start_server(data_dir, env)
        try:
            answers = asyncio.run(_load(server.url))
            with httpx.Client(base_url=server.url, timeout=30) as client:
                rows = all_rows(client)
                active = [
                    t
                    for t in client.get("/api/tasks").json()["data"]
                    if t["status"] in ("queued", "generating")
                ]
                served = [client.get(row["filePath"]).status_code for row in rows]
        finally:
            stop_server(server)
        calls = fake.calls

    kinds = Counter(answers)
    print(f"answers: {dict(kinds)}; Runware calls: {calls}")
    assert sum(kinds.values()) == REQUESTS
    assert kinds["ok"] > 0
    assert len(kinds) > 1, "the faults should have failed some generations"
    assert len(rows) == kinds["ok"]
    assert served == [200] * len(rows)
    storage = data_dir / "generated"
    assert len(image_files(storage)) == kinds["ok"]
    assert temporaries(storage) == []
    assert active == []
    assert calls <= REQUESTS * 3  # three tries at most per generation


async def _load(url: str) -> list[str]:
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=2.0)  # below uvicorn's 5 s
    async with httpx.AsyncClient(base_url=url, timeout=RUNWARE_TIMEOUT * 4, limits=limits) as client:

        async def one(index: int) -> str:
            body: dict[str, Any] = {
                "prompt": f"fault load {index % 7}",
                "width": 128,
                "height": 128,
                "seed": index + 1,
            }
            return contract_answer(await client.post("/api/generate/text-to-image", json=body))

        gate = asyncio.Semaphore(CONCURRENCY)

        async def gated(index: int) -> str:
            async with gate:
                return await one(index)

        return await asyncio.gather(*(gated(i) for i in range(REQUESTS)))
