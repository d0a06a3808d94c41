"""Process plumbing for the benchmarks: free ports, the fake Runware, the server, RSS sampling.

Everything here starts real processes on loopback addresses and stops them again; nothing is
imported from the server's own code except to run it as ``python -m imagestudio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

__all__ = [
    "FakeProvider",
    "RssSampler",
    "Server",
    "direct_burst",
    "free_port",
    "median",
    "percentile",
    "raw_request",
    "running_fake",
    "running_server",
    "stop",
    "wait_healthy",
]

API_KEY = "bench-key"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took. Fails if the process dies."""
    started = time.perf_counter()
    deadline = started + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode} before it was healthy")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not become healthy within {timeout} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class FakeProvider:
    """A fake Runware process: its endpoint and out-of-process control."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return self.url.rsplit("/", 1)[0]

    def control(self, **command: object) -> None:
        httpx.post(f"{self.base}/_fake/control", json=command, timeout=10).raise_for_status()

    def timings(self) -> dict[str, list[float]]:
        answer = httpx.get(f"{self.base}/_fake/timings", timeout=10)
        answer.raise_for_status()
        result: dict[str, list[float]] = answer.json()
        return result


@contextlib.contextmanager
def running_fake(latency: float = 0.0, cpu: int | None = None) -> Iterator[FakeProvider]:
    command = [sys.executable, "-m", "imagestudio.testing.fake_runware", "--port", "0"]
    process = subprocess.Popen(  # noqa: S603 - our own module, with arguments we build
        [*command, "--api-key", API_KEY, "--latency", str(latency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("Fake Runware listening on "):
            raise RuntimeError(f"the fake Runware did not start: {line!r}")
        if cpu is not None:
            pin(process.pid, cpu)
        yield FakeProvider(url=line.rsplit(" ", 1)[-1], process=process)
    finally:
        stop(process)


@dataclass
class Server:
    """A running ``imagestudio serve``: its URL, process and JSON log file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    started_in: float
    """Seconds from process start to the first healthy ``/health``."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_events(self, name: str) -> list[dict[str, object]]:
        """The server's structlog JSON lines whose ``event`` is ``name``, in order."""
        events = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                events.append(record)
        return events


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWARE_", "IMAGESTUDIO_"))}
    env["IMAGESTUDIO_LOG_FORMAT"] = "json"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_server(
    *,
    engine: str = "local",
    fake: FakeProvider | None = None,
    env: dict[str, str] | None = None,
    work_dir: Path | None = None,
    cpu: int | None = None,
) -> Iterator[Server]:
    """``imagestudio serve`` on a free loopback port with a fresh data dir (SQLite)."""
    extra = {"IMAGESTUDIO_ENGINE": engine, **(env or {})}
    if engine == "runware":
        assert fake is not None, "the runware engine needs the fake provider"
        extra |= {"RUNWARE_API_KEY": API_KEY, "RUNWARE_API_URL": fake.url}
    with contextlib.ExitStack() as stack:
        base = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imagestudio-bench-")))
        data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=base))
        port = free_port()
        log_path = data_dir.with_suffix(".log")
        log = stack.enter_context(open(log_path, "wb"))
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our own server, with arguments we build
            [sys.executable, "-m", "imagestudio", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=server_env(extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, process)
        if cpu is not None:
            pin(process.pid, cpu)
        url = f"http://{HOST}:{port}"
        wait_healthy(f"{url}/health", process)
        yield Server(
            url=url,
            process=process,
            log_path=log_path,
            data_dir=data_dir,
            started_in=time.perf_counter() - started,
        )


def pin(pid: int, cpu: int) -> None:
    """Pin a process (all its threads) to one CPU, where the platform allows it."""
    with contextlib.suppress(AttributeError, OSError, psutil.Error):
        process = psutil.Process(pid)
        process.cpu_affinity([cpu])
        for thread in process.threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread.id, {cpu})


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


@dataclass
class RssSampler:
    """Samples a process's resident set size in a background thread until stopped."""

    pid: int
    interval: float = 0.005
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        process = psutil.Process(self.pid)
        self.samples.append(process.memory_info().rss)

        def sample() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(psutil.Error):
                    self.samples.append(process.memory_info().rss)
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.samples.append(psutil.Process(self.pid).memory_info().rss)

    @property
    def start(self) -> int:
        return self.samples[0]

    @property
    def peak(self) -> int:
        return max(self.samples)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def raw_request(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on its own connection (``Connection: close``): status and body.

    A deliberately thin client, so that concurrency scenarios measure the server and not the
    client's connection pool (httpx's pool costs milliseconds per request at 64 connections).
    """
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        answer = await reader.read()
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    return status, payload


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        data = rest[size + 2 :]


async def direct_burst(fake_url: str, count: int, prompt: str) -> float:
    """The floor of a burst: ``count`` clients ask the fake provider directly, all at once (a
    1024x1024 task, then its image's download, each on its own connection); the wall time."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    async def one() -> None:
        task = {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "positivePrompt": prompt,
            "model": "runware:100@1",
            "width": 1024,
            "height": 1024,
            "seed": 7,
            "outputFormat": "JPG",
        }
        status, answer = await raw_request("POST", fake_url, json.dumps([task]).encode(), headers)
        if status != 200:
            raise RuntimeError(f"the fake answered {status}")
        status, _ = await raw_request("GET", json.loads(answer)["data"][0]["imageURL"])
        if status != 200:
            raise RuntimeError(f"the fake's image answered {status}")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started
