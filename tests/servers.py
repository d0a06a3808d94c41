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

__all__ = ["Server", "free_port", "kill", "scrubbed_environment", "start_server", "stop_server"]

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
) -> Server:
    """Start ``imagestudio serve`` on a free port (``wrap`` prefixes the command) and wait for health."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "imagestudio", "serve", "--port", str(port), "--data-dir", str(data_dir)]
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
