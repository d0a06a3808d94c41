"""The one launcher of real ``imagestudio serve`` processes for the e2e, hardening, resilience and
browser tests.

Rules:
- The child runs ``python -m imagestudio serve`` on a free loopback port with ``--data-dir``,
  optionally behind a ``wrap`` prefix (a private mount namespace, dropped capabilities, limits).
- Its environment is ours without any ``RUNWARE_``, ``IMAGESTUDIO_`` or ``AWS_`` variable (a
  developer's shell must not change a test), plus ``env``.
- Its stdout and stderr go to ``log_path``, by default ``server-PORT.log`` next to the data dir.
- :func:`start_server` returns once ``GET /health`` answers 200; if the process exits first, or
  ``timeout`` passes, it raises with the log's tail (and a process still running is killed).

``bench/harness.py`` has its own launcher: benchmarks measure, tests assert.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "Server",
    "Worker",
    "free_port",
    "kill",
    "scrubbed_environment",
    "start_fake_runware",
    "start_server",
    "start_worker",
    "stop_server",
    "stop_worker",
]

_SCRUBBED_PREFIXES = ("RUNWARE_", "IMAGESTUDIO_", "AWS_")
_LOG_TAIL = 3000


@dataclass
class Server:
    """A running ``imagestudio serve``: where it listens, its data dir, its process and its log."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        """Everything the server wrote so far ("" before it wrote anything)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrubbed_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``RUNWARE_``/``IMAGESTUDIO_``/``AWS_`` variables, then ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    environment.update(env or {})
    return environment


def start_server(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    wrap: Sequence[str] = (),
    timeout: float = 60,
    log_path: Path | None = None,
    args: Sequence[str] = (),
) -> Server:
    """Start ``imagestudio serve`` on a free port (``wrap`` prefixes the command, ``args`` follow
    it, e.g. ``--role api``) and wait for health."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        sys.executable, "-m", "imagestudio", "serve", "--port", str(port), "--data-dir", str(data_dir), *args
    ]  # fmt: skip
    log_path = data_dir.parent / f"server-{port}.log" if log_path is None else log_path
    with open(log_path, "wb") as log:  # the child holds its own descriptor
        process = subprocess.Popen(
            [*wrap, *command], env=scrubbed_environment(env), stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(
        url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, process=process, log_path=log_path
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {server.log_text()[-_LOG_TAIL:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    kill(server)
    raise RuntimeError(f"server did not become healthy in time: {server.log_text()[-_LOG_TAIL:]}")


def stop_server(server: Server) -> None:
    """SIGTERM, a graceful shutdown of up to 15 s, then SIGKILL."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        kill(server)


def kill(server: Server) -> None:
    """SIGKILL: no shutdown, no clean-up, no flushing."""
    server.process.kill()
    server.process.wait()


@dataclass
class Worker:
    """A running ``imagestudio worker`` (a team's; no HTTP): its process and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_worker(
    data_dir: Path, env: Mapping[str, str], *, concurrency: int = 1, name: str = "worker", timeout: float = 60
) -> Worker:
    """Start ``imagestudio worker`` and wait until it works the queue (its "worker started" line)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{name}-{time.monotonic_ns()}.log"
    command = [
        sys.executable, "-m", "imagestudio", "worker", "--data-dir", str(data_dir),
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=scrubbed_environment(env), stdout=log, stderr=subprocess.STDOUT
        )
    worker = Worker(process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}: {worker.log_text()[-_LOG_TAIL:]}")
        if "worker started" in worker.log_text():
            return worker
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"worker did not start in time: {worker.log_text()[-_LOG_TAIL:]}")


def stop_worker(worker: Worker, timeout: float = 30) -> int:
    """SIGTERM (a graceful stop), then SIGKILL after ``timeout``; the exit status."""
    worker.process.terminate()
    try:
        return worker.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        return worker.process.wait()


@dataclass
class FakeRunwareProcess:
    """``python -m imagestudio.testing.fake_runware`` in a process of its own: its API URL and key."""

    url: str
    key: str
    process: subprocess.Popen[str]

    @property
    def env(self) -> dict[str, str]:
        """What a server or worker needs to use it."""
        return {"RUNWARE_API_KEY": self.key, "RUNWARE_API_URL": self.url}

    def stats(self) -> dict[str, object]:
        base = self.url.rsplit("/v1", 1)[0]
        return dict(httpx.get(f"{base}/_fake/stats", timeout=10).json())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def start_fake_runware(*, latency: float = 0.0, key: str = "team-key") -> FakeRunwareProcess:
    """A fake Runware on a free loopback port, answering every request after ``latency`` seconds
    (its tasks report progress meanwhile)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "imagestudio.testing.fake_runware", "--port", "0", "--latency", str(latency)],
        env={**scrubbed_environment(), "RUNWARE_API_KEY": key},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    url = line.strip().rsplit(" ", 1)[-1]
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"the fake Runware did not start: {line!r}")
    return FakeRunwareProcess(url=url, key=key, process=process)
