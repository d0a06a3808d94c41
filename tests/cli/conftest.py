"""The ``imagestudio`` command as a real process: run to the end, or started and watched line by
line so a test can send it SIGINT at a chosen moment.

Rules:
- the child runs ``python -m imagestudio`` with our environment less any ``RUNWARE_`` or
  ``IMAGESTUDIO_`` variable, plus ``env``; its stderr is a pipe, so it is not a terminal;
- :meth:`Running.wait_for` reads stderr lines until one contains a text (or the process ends);
- :func:`stored` reads what a data dir holds afterwards: history rows, image files, task states.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import scrubbed_environment

__all__ = ["Running", "Spawn", "Stored", "mapped", "opened", "run_cli", "spawn_cli", "stored"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``imagestudio ARGS`` to its end (stdin closed, output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "imagestudio", *args],
        env=scrubbed_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Running:
    """A started ``imagestudio`` process whose stderr is read in a thread, line by line."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _new_line: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    stdout: str = ""

    def start_reading(self) -> None:
        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                with self._new_line:
                    self.lines.append(line)
                    self._new_line.notify_all()
            with self._new_line:
                self._new_line.notify_all()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Return once a line of stderr contains ``text``; fail if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            while not any(text in line for line in self.lines):
                if self.process.poll() is not None and not self._reader_alive():
                    status = self.process.returncode
                    pytest.fail(f"the command ended ({status}) before {text!r}: {self.stderr}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {text!r} on stderr within {timeout} s: {self.stderr}")
                self._new_line.wait(min(remaining, 0.1))

    def interrupt(self) -> None:
        """Ctrl-C, as a terminal sends it: SIGINT."""
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the process to end; its exit status (all of stdout and stderr read)."""
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read() if self.process.stdout else ""
        status = self.process.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return status

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()


Spawn = Callable[..., Running]


@pytest.fixture
def spawn_cli() -> Iterator[Spawn]:
    """``spawn_cli(*args, env=...)`` starts ``imagestudio ARGS``; every process is ended afterwards."""
    started: list[Running] = []

    def spawn(*args: str, env: Mapping[str, str] | None = None) -> Running:
        process = subprocess.Popen(
            [sys.executable, "-m", "imagestudio", *args],
            env=scrubbed_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running = Running(process)
        running.start_reading()
        started.append(running)
        return running

    yield spawn
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


@dataclass(frozen=True)
class Stored:
    """What a data dir holds: history rows, image files (any folder) and each task's status."""

    rows: int
    files: list[Path]
    tasks: list[str]


def stored(data_dir: Path) -> Stored:
    database = data_dir / "imagestudio.db"
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not database.exists():
        return Stored(rows=0, files=files, tasks=[])
    with sqlite3.connect(database) as connection:
        names = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        tables = {name for (name,) in names}
        rows = 0
        if "generations" in tables:
            rows = connection.execute("SELECT count(*) FROM generations").fetchone()[0]
        tasks = [s for (s,) in connection.execute("SELECT status FROM tasks")] if "tasks" in tables else []
    return Stored(rows=rows, files=files, tasks=tasks)


def mapped(pid: int, library: str) -> bool:
    """Whether the process has a shared library whose path contains ``library`` loaded (Linux)."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def opened(pid: int, path: Path) -> bool:
    """Whether the process holds ``path`` open (Linux)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if Path(os.readlink(f"/proc/{pid}/fd/{name}")) == path:
                return True
        except OSError:
            continue
    return False
