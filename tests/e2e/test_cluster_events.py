"""Two real ``imagestudio serve`` processes on one PostgreSQL database share one event stream.

A WebSocket on server B follows a task that runs on server A, from its first message to its one
terminal message, with A's ``seq`` numbers; ``?after=`` on B replays A's events; and when B's
listener connection is killed by PostgreSQL (``pg_terminate_backend``), B opens another one and
its sockets lose nothing of what A published meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from sqlalchemy.engine import make_url

from tests.databases import PostgresServer
from tests.servers import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SMALL = {"width": 128, "height": 128, "steps": 6}
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server, str]]:
    """Servers A and B (each with its own data folder) on one fresh schema; and its URL. The tests
    share them (each runs tasks of its own), as starting two servers is most of their time."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    with postgres.schema() as url:
        env = {"IMAGESTUDIO_DATABASE_URL": url}
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(start_server, tmp_path / name / "data", env) for name in ("a", "b")]
            servers = [future.result() for future in started]
        try:
            yield servers[0], servers[1], url
        finally:
            for server in servers:
                stop_server(server)


def _listeners(url: str, server: Server) -> list[int]:
    """The backend pids of ``server``'s listener connections."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"imagestudio-events-{server.process.pid}-%",),
        ).fetchall()
    return [int(row[0]) for row in rows]


def _terminate(url: str, pids: list[int]) -> None:
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        for pid in pids:
            connection.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _until_terminal(socket: Any, task_id: str) -> list[dict[str, Any]]:
    """Messages of ``task_id`` from ``socket`` up to and including its terminal one (20 s at most)."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while True:
            message = json.loads(await socket.recv())
            if message.get("taskId") != task_id:
                continue
            messages.append(message)
            if message["status"] in TERMINAL:
                return messages


async def _quiet(socket: Any, wait: float = 0.5) -> list[dict[str, Any]]:
    """Whatever ``socket`` receives within ``wait`` seconds."""
    extra: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(wait):
            while True:
                extra.append(json.loads(await socket.recv()))
    except TimeoutError:
        return extra


def _submit(server: Server, task_id: str, prompt: str) -> None:
    response = httpx.post(
        f"{server.url}/api/generate/text-to-image",
        json={"prompt": prompt, "taskId": task_id, **SMALL},
        headers={"Prefer": "respond-async"},
        timeout=10,
    )
    assert response.status_code == 202, response.text


def _generation_of(server: Server, task_id: str) -> int:
    task = httpx.get(f"{server.url}/api/tasks/{task_id}", timeout=10).json()["data"]
    assert task["status"] == "completed", task
    return int(task["generationId"])


def test_a_socket_on_one_server_follows_a_task_running_on_another(
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, _ = cluster
    ws_a, ws_b = f"ws://127.0.0.1:{a.port}/ws/generation", f"ws://127.0.0.1:{b.port}/ws/generation"

    async def follow() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        async with websockets.connect(f"{ws_b}?taskId=t1") as on_b, websockets.connect(ws_a) as on_a:
            await asyncio.sleep(0.2)  # both subscribed before the task starts
            await asyncio.to_thread(_submit, a, "t1", "a lighthouse at dusk")
            seen_b = await _until_terminal(on_b, "t1")
            seen_a = await _until_terminal(on_a, "t1")
            assert await _quiet(on_b) == []  # one terminal message, and the socket stays open
        return seen_a, seen_b, await _replay(f"{ws_b}?after={seen_b[0]['seq'] - 1}", "t1")

    seen_a, seen_b, replayed = asyncio.run(follow())
    generation = _generation_of(a, "t1")
    assert seen_b[0]["status"] in ("queued", "generating")
    assert "generating" in {m["status"] for m in seen_b}
    assert [m["status"] for m in seen_b].count("completed") == 1
    assert seen_b[-1] == {
        "type": "progress",
        "taskId": "t1",
        "status": "completed",
        "progress": 100,
        "generationId": generation,
        "generationIds": [generation],
        "seq": seen_b[-1]["seq"],
    }
    seqs = [m["seq"] for m in seen_b]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    progress = [m["progress"] for m in seen_b]
    assert progress == sorted(progress)
    # the same messages, with the same seqs, on the server that ran the task
    assert seen_b == seen_a
    # and ?after= on B replays A's events from the shared table
    assert replayed == seen_b
    # GET on B reads the finished task too (shared database)
    assert _generation_of(b, "t1") == generation


async def _replay(uri: str, task_id: str) -> list[dict[str, Any]]:
    async with websockets.connect(uri) as socket:
        return await _until_terminal(socket, task_id)


def test_a_killed_listener_connection_is_opened_again_and_loses_nothing(
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, url = cluster
    deadline = time.monotonic() + 10
    while not (before := _listeners(url, b)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(before) == 1

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with (
            websockets.connect(f"ws://127.0.0.1:{b.port}/ws/generation") as on_b,
            websockets.connect(f"ws://127.0.0.1:{a.port}/ws/generation") as on_a,
        ):
            await asyncio.sleep(0.2)
            await asyncio.to_thread(_terminate, url, before)
            # A runs a task while B has no listener (or is opening a new one)
            await asyncio.to_thread(_submit, a, "t2", "a harbour in fog")
            return await _until_terminal(on_b, "t2"), await _until_terminal(on_a, "t2")

    seen_b, seen_a = asyncio.run(scenario())
    assert seen_b == seen_a
    assert seen_b[-1]["status"] == "completed"
    assert [m["status"] for m in seen_b].count("completed") == 1
    deadline = time.monotonic() + 10
    while not (after := _listeners(url, b)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(after) == 1
    assert after != before
    assert "task event listener lost its connection" in b.log_text()
