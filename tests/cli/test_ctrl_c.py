"""Ctrl-C during ``imagestudio generate``, as a real process: the task is cancelled for real (the
engine stops, nothing is stored), ``cancelled`` on its own line, exit 130, never a traceback; a
second Ctrl-C exits at once.

The moments are chosen by what the process is seen doing, not by sleeping: a line on stderr
(``generating``), a library it has loaded (``/proc/PID/maps``), the database it holds open while
a lock the test holds keeps its migration waiting."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import pytest

from imagestudio.testing.fake_runware import FakeRunware
from tests.cli.conftest import Spawn, mapped, opened, run_cli, stored

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and sends SIGINT (Linux)")

# Slow enough for the local engine that a Ctrl-C lands while it works: the scene of all these
# forms is painted at 2048 px before the first of 100 sampler steps.
BUSY_PROMPT = (
    "a neon city skyline at night over an ocean with waves, snowy mountains, a pine forest with"
    " cabins, stars, clouds, a blue sphere and a red cube, storm and fire"
)
BUSY = ["generate", BUSY_PROMPT, "--width", "2048", "--height", "2048", "--steps", "100"]
KEY = "cli-ctrl-c-key"


def assert_cancelled(status: int, stderr: str) -> None:
    assert status == 130, stderr
    assert "cancelled" in stderr.splitlines(), stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


def test_ctrl_c_while_generating_cancels_the_task_and_stores_nothing(
    tmp_path: Path, spawn_cli: Spawn
) -> None:
    data = tmp_path / "data"
    running = spawn_cli(*BUSY, "--out", str(tmp_path / "never.jpg"), "--data-dir", str(data))
    running.wait_for("generating")
    running.interrupt()
    status = running.finish()

    assert_cancelled(status, running.stderr)
    assert running.stdout == ""
    after = stored(data)
    assert after.rows == 0
    assert after.files == []
    assert after.tasks == ["cancelled"]  # recorded as DELETE /api/tasks/{id} records it
    assert not (tmp_path / "never.jpg").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no partial --out either


def test_ctrl_c_while_a_runware_task_runs_abandons_it_at_once(tmp_path: Path, spawn_cli: Spawn) -> None:
    data = tmp_path / "data"
    with FakeRunware.running(api_key=KEY, latency=120) as fake:
        env = {"RUNWARE_API_KEY": KEY, "RUNWARE_API_URL": fake.url}
        running = spawn_cli("generate", "a lighthouse in a storm", "--data-dir", str(data), env=env)
        running.wait_for("generating")
        deadline = time.monotonic() + 30
        while not fake.tasks and time.monotonic() < deadline:  # the task has reached Runware
            time.sleep(0.05)
        assert fake.tasks, running.stderr
        started = time.monotonic()
        running.interrupt()
        status = running.finish(timeout=60)
        took = time.monotonic() - started

    assert_cancelled(status, running.stderr)
    assert took < 15, f"the CLI waited {took:.1f} s for a task the user cancelled"
    assert stored(data).rows == 0
    assert stored(data).files == []


def test_ctrl_c_while_the_libraries_load_exits_cleanly(tmp_path: Path, spawn_cli: Spawn) -> None:
    data = tmp_path / "data"
    running = spawn_cli(*BUSY, "--data-dir", str(data))
    deadline = time.monotonic() + 60
    while not mapped(running.process.pid, "_imaging") and running.process.poll() is None:
        assert time.monotonic() < deadline, "Pillow was never loaded"
        time.sleep(0.002)
    running.interrupt()
    status = running.finish()

    assert_cancelled(status, running.stderr)
    assert stored(data).rows == 0


def test_ctrl_c_in_the_first_milliseconds_of_the_command_exits_cleanly(
    tmp_path: Path, spawn_cli: Spawn
) -> None:
    """As soon as the command runs its own code: ``main`` installs the handler, then imports the
    configuration, whose ``import math`` maps this Python's math extension module."""
    data = tmp_path / "data"
    running = spawn_cli(*BUSY, "--data-dir", str(data))
    deadline = time.monotonic() + 60
    while not mapped(running.process.pid, "/math.cpython"):
        assert running.process.poll() is None, "the command ended before it loaded math"
        assert time.monotonic() < deadline, "math was never loaded"
        time.sleep(0.0005)
    running.interrupt()
    status = running.finish()

    assert_cancelled(status, running.stderr)
    assert not (data / "imagestudio.db").exists()  # stopped long before the database


def test_ctrl_c_during_the_migration_waits_for_it_then_exits(tmp_path: Path, spawn_cli: Spawn) -> None:
    data = tmp_path / "data"
    assert run_cli("db", "upgrade", "--data-dir", str(data)).returncode == 0
    database = data / "imagestudio.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock: the CLI's migration waits for it
    try:
        running = spawn_cli(*BUSY, "--data-dir", str(data))
        _wait_until_open(running.process.pid, database)
        time.sleep(0.3)  # into the migration's wait for the lock
        running.interrupt()
        time.sleep(1.0)
        assert running.process.poll() is None, "the first Ctrl-C must let the migration end"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status = running.finish()

    assert_cancelled(status, running.stderr)
    after = stored(data)
    assert (after.rows, after.files, after.tasks) == (0, [], [])
    assert "up to date" in run_cli("db", "current", "--data-dir", str(data)).stdout


def test_a_second_ctrl_c_exits_at_once_without_waiting(tmp_path: Path, spawn_cli: Spawn) -> None:
    data = tmp_path / "data"
    assert run_cli("db", "upgrade", "--data-dir", str(data)).returncode == 0
    database = data / "imagestudio.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        running = spawn_cli(*BUSY, "--data-dir", str(data))
        _wait_until_open(running.process.pid, database)
        time.sleep(0.3)
        running.interrupt()
        time.sleep(0.5)
        assert running.process.poll() is None  # the first one waits for the migration (see above)
        started = time.monotonic()
        running.interrupt()
        status = running.finish(timeout=30)
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert_cancelled(status, running.stderr)
    assert took < 3, f"the second Ctrl-C took {took:.1f} s"  # the lock would have held it 15 s
    assert stored(data).rows == 0


def test_two_quick_ctrl_c_while_generating_leave_nothing_stored(tmp_path: Path, spawn_cli: Spawn) -> None:
    data = tmp_path / "data"
    running = spawn_cli(*BUSY, "--data-dir", str(data))
    running.wait_for("generating")
    running.interrupt()
    time.sleep(0.05)
    if running.process.poll() is None:
        running.interrupt()
    status = running.finish()

    assert_cancelled(status, running.stderr)
    assert stored(data).rows == 0
    assert stored(data).files == []


def _wait_until_open(pid: int, path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not opened(pid, path):
        assert time.monotonic() < deadline, f"the command never opened {path}"
        time.sleep(0.005)
