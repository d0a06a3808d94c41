"""A team: API servers and workers as real processes on one PostgreSQL database and one queue.

Two ``imagestudio serve --role api`` processes take requests; two ``imagestudio worker`` processes
(one job at a time each) run them from procrastinate's queue. Every process has a data dir of its
own (separate disks); images live in one S3 bucket (moto's server). Each case below broke when
live work lived in the memory of the server that took the request, or images on its disk:

- a task taken by A runs on a worker, and B reports its progress and its outcome;
- an image a worker made is served by B, transformed on A and deleted from B, objects and all;
- a cancel on B stops a task running on a worker, or a queued one before it starts, and nothing
  is stored;
- a repeated ``Idempotency-Key`` on B answers A's task; a synchronous repeat waits for it;
- the queue limit counts the queued tasks of the whole cluster;
- a worker killed mid-job: its task is ``failed`` ``INTERRUPTED`` within 30 s, never stuck;
- a worker stopped with SIGTERM finishes its job and leaves the queued ones to the next worker.

Runware is the fake, in a process of its own, answering after a few seconds (reporting progress
meanwhile), so that a task runs long enough to be watched, cancelled or killed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import PostgresServer
from tests.objectstore import MotoServer
from tests.servers import (
    FakeRunwareProcess,
    Server,
    Worker,
    start_fake_runware,
    start_server,
    start_worker,
    stop_server,
    stop_worker,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

LATENCY = 4.0
LONG = SMALL = {"width": 512, "height": 512}
MAX_QUEUED = 3


@dataclass
class Team:
    a: Server
    b: Server
    workers: list[Worker]
    root: Path
    env: dict[str, str]
    bucket: str
    moto: MotoServer
    runware: FakeRunwareProcess


@pytest.fixture(scope="module")
def runware() -> Iterator[FakeRunwareProcess]:
    fake = start_fake_runware(latency=LATENCY)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def team(
    postgres: PostgresServer,
    runware: FakeRunwareProcess,
    moto: MotoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Team]:
    """Two API servers and two one-job workers on a fresh schema, each with its own data dir, one
    bucket for the images."""
    root = tmp_path_factory.mktemp("team")
    bucket = moto.new_bucket()
    with postgres.schema() as url:
        env = {
            "IMAGESTUDIO_DATABASE_URL": url,
            "IMAGESTUDIO_MAX_QUEUED": str(MAX_QUEUED),
            "IMAGESTUDIO_STORAGE_URL": f"s3://{bucket}/team",
            **runware.env,
            **moto.environment(),
        }
        first = start_server(root / "a", env, args=("--role", "api"))  # creates the schema and the queue
        with ThreadPoolExecutor(3) as pool:
            second = pool.submit(start_server, root / "b", env, args=("--role", "api"))
            workers = [pool.submit(start_worker, root / f"w{n}", env, name=f"worker-{n}") for n in range(2)]
            team = Team(
                a=first,
                b=second.result(),
                workers=[w.result() for w in workers],
                root=root,
                env=env,
                bucket=bucket,
                moto=moto,
                runware=runware,
            )
        try:
            yield team
        finally:
            for worker in team.workers:
                stop_worker(worker)
            stop_server(team.a)
            stop_server(team.b)


def _submit(server: Server, prompt: str, size: dict[str, int], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/generate/text-to-image",
        json={"prompt": prompt, **size},
        headers={"Prefer": "respond-async", **headers},
        timeout=30,
    )


def _task(server: Server, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/tasks/{task_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def _until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _images(team: Team) -> set[str]:
    """Every object in the team's bucket; and no image on any process's own disk."""
    on_disk = [p for p in team.root.rglob("*") if p.suffix in (".png", ".jpg", ".webp")]
    assert on_disk == []
    return set(team.moto.objects(team.bucket))


def _history_of(server: Server, prompt: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/api/history", params={"q": prompt}, timeout=10)
    assert response.status_code == 200, response.text
    return [g for g in response.json()["data"] if g["prompt"] == prompt]


def _cancel_all(team: Team, task_ids: list[str]) -> None:
    for task_id in task_ids:
        httpx.delete(f"{team.a.url}/api/tasks/{task_id}", timeout=60)


def test_a_task_taken_by_one_server_is_reported_by_the_other_while_it_runs_and_once_done(team: Team) -> None:
    prompt = f"a tall lighthouse {uuid.uuid4().hex[:8]}"
    response = _submit(team.a, prompt, LONG)
    assert response.status_code == 202, response.text
    task_id = response.json()["data"]["taskId"]
    running = _until(
        lambda: (t := _task(team.b, task_id))["status"] == "generating" and t["progress"] > 0 and t,
        "B sees the task generating with progress",
    )
    assert 0 < running["progress"] < 100
    listed = httpx.get(f"{team.b.url}/api/tasks", timeout=10).json()["data"]
    assert any(t["taskId"] == task_id and t["status"] == "generating" for t in listed)
    done = _until(lambda: (t := _task(team.b, task_id))["status"] == "completed" and t, "completed", 60)
    generation = httpx.get(f"{team.b.url}/api/history/{done['generationId']}", timeout=10).json()["data"]
    assert generation["prompt"] == prompt
    image = httpx.get(f"{team.b.url}{generation['filePath']}", timeout=10)
    assert image.status_code == 200
    assert image.content[:3] in (b"\xff\xd8\xff", b"\x89PN")


def test_an_image_a_worker_made_is_served_transformed_and_deleted_by_the_servers(team: Team) -> None:
    before = _images(team)
    made = httpx.post(
        f"{team.a.url}/api/generate/text-to-image", json={"prompt": "a shared harbour", **SMALL}, timeout=60
    )
    assert made.status_code == 200, made.text
    original = made.json()["data"]
    added = _images(team) - before
    assert len(added) == 2  # the image and its thumbnail, in the bucket
    served = httpx.get(f"{team.b.url}{original['filePath']}", timeout=10)
    assert served.status_code == 200
    assert served.content in {team.moto.objects(team.bucket)[key] for key in added}
    thumbnail = httpx.get(f"{team.b.url}{original['thumbnailPath']}", timeout=10)
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/webp"
    transformed = httpx.post(
        f"{team.b.url}/api/generate/image-to-image",
        json={"prompt": "the harbour at night", "seedImage": original["filePath"], "strength": 0.5},
        timeout=60,
    )
    assert transformed.status_code == 200, transformed.text
    assert transformed.json()["data"]["parameters"]["sourceId"] == original["id"]
    for generation in (original, transformed.json()["data"]):
        deleted = httpx.delete(f"{team.b.url}/api/history/{generation['id']}", timeout=10)
        assert deleted.status_code == 200, deleted.text
    assert _images(team) == before
    assert httpx.get(f"{team.a.url}{original['filePath']}", timeout=10).status_code == 404


def test_a_cancel_on_another_server_stops_a_running_task_and_stores_nothing(team: Team) -> None:
    prompt = f"a slow glacier {uuid.uuid4().hex[:8]}"
    before = _images(team)
    task_id = _submit(team.a, prompt, LONG).json()["data"]["taskId"]
    _until(lambda: _task(team.b, task_id)["status"] == "generating", "the task runs")
    started = time.monotonic()
    response = httpx.delete(f"{team.b.url}/api/tasks/{task_id}", timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "cancelled"
    assert time.monotonic() - started < 10
    assert _task(team.a, task_id)["status"] == "cancelled"
    time.sleep(1)  # whatever the worker would still do, it has done by now
    assert _history_of(team.a, prompt) == []
    assert _images(team) == before


def test_a_queued_task_cancelled_on_another_server_never_runs(team: Team) -> None:
    busy = [
        _submit(team.a, f"busy {n} {uuid.uuid4().hex[:6]}", LONG).json()["data"]["taskId"] for n in range(2)
    ]
    try:
        _until(
            lambda: all(_task(team.a, t)["status"] == "generating" for t in busy), "both workers are busy", 30
        )
        prompt = f"a queued harbour {uuid.uuid4().hex[:8]}"
        queued = _submit(team.a, prompt, SMALL).json()["data"]
        assert queued["status"] == "queued"
        seen = _task(team.b, queued["taskId"])
        assert seen["status"] == "queued"
        assert seen["position"] == 1
        response = httpx.delete(f"{team.b.url}/api/tasks/{queued['taskId']}", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == "cancelled"
    finally:
        _cancel_all(team, busy)
    time.sleep(1.5)  # the workers are free: a job still queued would have run by now
    assert _task(team.a, queued["taskId"])["status"] == "cancelled"
    assert _history_of(team.a, prompt) == []


def test_an_idempotency_key_holds_across_servers(team: Team) -> None:
    key = f"key-{uuid.uuid4().hex}"
    prompt = f"an idempotent orchard {uuid.uuid4().hex[:8]}"
    first = _submit(team.a, prompt, SMALL, **{"Idempotency-Key": key})
    again = _submit(team.b, prompt, SMALL, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["data"]["taskId"] == first.json()["data"]["taskId"]
    synchronous = httpx.post(
        f"{team.b.url}/api/generate/text-to-image",
        json={"prompt": prompt, **SMALL},
        headers={"Idempotency-Key": key},
        timeout=60,
    )
    assert synchronous.status_code == 200, synchronous.text
    assert synchronous.json()["data"]["prompt"] == prompt
    assert len(_history_of(team.a, prompt)) == 1  # one image, made once
    other = _submit(team.b, prompt + " changed", SMALL, **{"Idempotency-Key": key})
    assert other.status_code == 409, other.text


def test_the_queue_limit_counts_the_whole_cluster(team: Team) -> None:
    submitted: list[str] = []
    try:
        for n in range(2):
            submitted.append(
                _submit(team.a, f"running {n} {uuid.uuid4().hex[:6]}", LONG).json()["data"]["taskId"]
            )
        _until(lambda: all(_task(team.a, t)["status"] == "generating" for t in submitted), "workers busy", 30)
        for n, server in enumerate((team.a, team.b, team.a)):
            response = _submit(server, f"waiting {n} {uuid.uuid4().hex[:6]}", SMALL)
            assert response.status_code == 202, response.text
            submitted.append(response.json()["data"]["taskId"])
        refused = _submit(team.b, "one too many", SMALL)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "QUEUE_FULL"
    finally:
        _cancel_all(team, submitted)


@pytest.fixture
def small_team(
    postgres: PostgresServer, runware: FakeRunwareProcess, moto: MotoServer, tmp_path: Path
) -> Iterator[tuple[Server, dict[str, str], Path]]:
    """One API server on a schema of its own, for tests that start and stop their workers (each
    worker with a data dir of its own under the returned folder)."""
    with postgres.schema() as url:
        env = {
            "IMAGESTUDIO_DATABASE_URL": url,
            "IMAGESTUDIO_SHUTDOWN_GRACE": "20",
            "IMAGESTUDIO_STORAGE_URL": f"s3://{moto.new_bucket()}/team",
            **runware.env,
            **moto.environment(),
        }
        data = tmp_path / "workers"
        server = start_server(tmp_path / "api", env, args=("--role", "api"))
        try:
            yield server, env, data
        finally:
            stop_server(server)


def test_a_killed_worker_leaves_its_task_interrupted_within_30_seconds(
    small_team: tuple[Server, dict[str, str], Path], runware: FakeRunwareProcess
) -> None:
    server, env, data = small_team
    worker = start_worker(data / "one", env)
    submitted = int(str(runware.stats()["submissions"]))
    try:
        task_id = _submit(server, "a doomed windmill", LONG).json()["data"]["taskId"]
        _until(lambda: _task(server, task_id)["status"] == "generating", "the task runs")
        worker.process.kill()
        worker.process.wait()
        killed = time.monotonic()
        failed = _until(lambda: (t := _task(server, task_id))["status"] == "failed" and t, "interrupted", 40)
        assert time.monotonic() - killed < 30
        assert failed["error"]["code"] == "INTERRUPTED"
        assert _history_of(server, "a doomed windmill") == []
        later = start_worker(data / "later", env, name="later")  # another worker never runs it again
        time.sleep(2)
        stop_worker(later)
        assert int(str(runware.stats()["submissions"])) == submitted + 1  # paid for once, never again
        assert _task(server, task_id)["status"] == "failed"
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_a_worker_stopped_with_sigterm_finishes_its_job_and_leaves_the_queue_to_the_next(
    small_team: tuple[Server, dict[str, str], Path],
) -> None:
    server, env, data = small_team
    first = start_worker(data / "first", env, name="first")
    running = _submit(server, "a finishing bridge", LONG).json()["data"]["taskId"]
    _until(lambda: _task(server, running)["status"] == "generating", "the task runs")
    queued = [_submit(server, f"a waiting boat {n}", SMALL).json()["data"]["taskId"] for n in range(2)]
    assert stop_worker(first) == 0
    assert _task(server, running)["status"] == "completed"
    assert [_task(server, t)["status"] for t in queued] == ["queued", "queued"]
    second = start_worker(data / "second", env, name="second", concurrency=2)
    try:
        _until(
            lambda: all(_task(server, t)["status"] == "completed" for t in queued),
            "the next worker runs them",
        )
    finally:
        stop_worker(second)
