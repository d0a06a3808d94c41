"""P8: the server under the memory and connection attacks of issue 12 (CONTRACT.md section 11).

Four figures, each bounded in count and time, on loopback, against ``imagestudio serve`` with its
default limits (local engine, no token):

- ``queued``: peak RSS while 40 image-to-image requests with ~30 MiB data-URI inputs arrive at
  once (most must wait in the queue), and RSS once they have drained; with the statuses.
- ``pixels``: peak RSS while image-to-image requests carry a ~250 KB PNG that declares
  1 x 64,000,000 pixels (the most the contract accepts), 4 at a time.
- ``bodies``: ``/health`` latency (p50, p99, failures) on fresh connections, first alone, then
  while 4 clients upload 32 MiB JSON bodies (``bench/attacker.py bodies``).
- ``slow``: the same while 1,000 connections send headers a byte every 3 s
  (``bench/attacker.py slow``, which raises its own descriptor limit; the server keeps the one
  it inherited, so its connection cap is its default).

A guard kills the server if its RSS passes :data:`RSS_CEILING`, so a run on a vulnerable server
cannot take the machine down; the figure then says so.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness
import numpy as np
import psutil
from harness import percentile
from PIL import Image

__all__ = ["p8_attacks"]

BENCH = Path(__file__).resolve().parent
MB = 1024 * 1024
RSS_CEILING = 8 * 1024 * MB
PROMPT = "a red sunset over mountains and a lake"


class GuardedSampler(harness.RssSampler):
    """:class:`harness.RssSampler` that kills the process once its RSS passes ``ceiling``."""

    def __init__(self, pid: int, ceiling: int = RSS_CEILING, interval: float = 0.005) -> None:
        super().__init__(pid, interval=interval)
        self.ceiling = ceiling
        self.killed = False

    def __enter__(self) -> GuardedSampler:
        super().__enter__()
        process = psutil.Process(self.pid)

        def guard() -> None:
            while not self._stop.is_set():
                if self.samples and self.samples[-1] > self.ceiling and not self.killed:
                    self.killed = True
                    with contextlib.suppress(psutil.Error):
                        process.kill()
                time.sleep(self.interval)

        threading.Thread(target=guard, name="rss-guard", daemon=True).start()
        return self


# --- inputs ---------------------------------------------------------------------------------------


def noise_png_uri(target_bytes: int) -> str:
    """A PNG of noise whose data URI is about ``target_bytes`` long (incompressible)."""
    width = 2048
    height = max(64, int(target_bytes * 3 / 4 / 3) // width)
    rng = np.random.default_rng(12)
    image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def tall_png(width: int = 1, height: int = 64_000_000) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` black pixels, streamed through zlib (a few
    hundred KB for 64 million pixels; nothing of that size is ever held here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (3 * width)
    rows_per_block = max(1, (4 * MB) // len(row))
    block = row * rows_per_block
    parts = []
    left = height
    while left > 0:
        take = min(left, rows_per_block)
        parts.append(compressor.compress(block if take == rows_per_block else row * take))
        left -= take
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


# --- clients --------------------------------------------------------------------------------------


async def post_streamed(url: str, payload: bytes, answer_within: float = 180) -> str:
    """POST ``payload`` as JSON in 1 MiB writes on its own connection; the status, or why none."""
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), timeout=10
        )
    except (OSError, TimeoutError) as error:
        return f"connect {type(error).__name__}"
    try:
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))
        view = memoryview(payload)
        for start in range(0, len(payload), MB):
            writer.write(view[start : start + MB])
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=answer_within)
        return line.split(b" ", 2)[1].decode() if line else "closed"
    except (OSError, TimeoutError) as error:
        return type(error).__name__
    finally:
        writer.close()


def probe_health(url: str, seconds: float, timeout: float = 5.0, pause: float = 0.05) -> dict[str, Any]:
    """``GET /health`` on a fresh connection each time, for ``seconds``: latencies and failures."""
    parts = urlsplit(url)
    request = f"GET /health HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as probe:
                probe.sendall(request)
                answer = b""
                while chunk := probe.recv(65536):
                    answer += chunk
            if answer.startswith(b"HTTP/1.1 200"):
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failures[answer[:12].decode("latin-1", "replace") or "empty"] += 1
        except OSError as error:
            failures[type(error).__name__] += 1
        time.sleep(pause)
    figures: dict[str, Any] = {"probes": len(latencies) + sum(failures.values()), "failures": dict(failures)}
    if latencies:
        figures |= {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}
        figures["max_ms"] = max(latencies)
    return figures


# --- the four figures -----------------------------------------------------------------------------


def _queued(quick: bool) -> dict[str, Any]:
    count, target = 40, 30 * MB
    uri = noise_png_uri(target)
    body = {"seedImage": uri, "prompt": PROMPT, "width": 512, "height": 512, "steps": 4, "seed": 7}
    payload = json.dumps(body).encode()
    with harness.running_server(engine="local") as server:
        idle = harness.rss(server.pid)
        url = f"{server.url}/api/generate/image-to-image"
        started = time.perf_counter()
        with GuardedSampler(server.pid) as sampler:

            async def burst() -> list[str]:
                return await asyncio.gather(*(post_streamed(url, payload) for _ in range(count)))

            statuses = asyncio.run(burst())
        wall = time.perf_counter() - started
        time.sleep(1.0)
        after = harness.rss(server.pid) if server.process.poll() is None else 0
    return {
        "requests": count,
        "body_mb": len(payload) / MB,
        "idle_mb": idle / MB,
        "peak_mb": sampler.peak / MB,
        "after_mb": after / MB,
        "killed": sampler.killed,
        "wall_s": wall,
        "statuses": dict(collections.Counter(statuses)),
    }


def _pixels(quick: bool) -> dict[str, Any]:
    count, parallel = (4, 4) if quick else (8, 4)
    png = tall_png()
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    body = {"seedImage": uri, "prompt": PROMPT, "width": 512, "height": 512, "steps": 4, "seed": 7}
    payload = json.dumps(body).encode()
    with harness.running_server(engine="local") as server:
        idle = harness.rss(server.pid)
        url = f"{server.url}/api/generate/image-to-image"
        started = time.perf_counter()
        with GuardedSampler(server.pid) as sampler:

            async def waves() -> list[str]:
                gate = asyncio.Semaphore(parallel)

                async def one() -> str:
                    async with gate:
                        return await post_streamed(url, payload)

                return await asyncio.gather(*(one() for _ in range(count)))

            statuses = asyncio.run(waves())
        wall = time.perf_counter() - started
        time.sleep(1.0)
        after = harness.rss(server.pid) if server.process.poll() is None else 0
    return {
        "png_kb": len(png) / 1024,
        "declared": "1x64000000",
        "requests": count,
        "parallel": parallel,
        "idle_mb": idle / MB,
        "peak_mb": sampler.peak / MB,
        "after_mb": after / MB,
        "killed": sampler.killed,
        "wall_s": wall,
        "statuses": dict(collections.Counter(statuses)),
    }


def _under_load(mode: str, seconds: float, options: list[str]) -> dict[str, Any]:
    """``/health`` alone, then while ``bench/attacker.py mode`` runs; peak RSS during the attack."""
    with harness.running_server(engine="local") as server:
        alone = probe_health(server.url, min(3.0, seconds))
        command = [sys.executable, str(BENCH / "attacker.py"), mode, server.url, *options]
        command += ["--duration", str(seconds + 30)]  # a bound; closing its stdin stops it sooner
        attacker = subprocess.Popen(  # noqa: S603 - our own script, with arguments we build
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert attacker.stdout is not None
            ready = attacker.stdout.readline().strip()
            if ready != "ready":
                raise RuntimeError(f"the attacker did not start: {ready!r} {attacker.stderr.read()[-500:]}")
            with GuardedSampler(server.pid, interval=0.02) as sampler:
                during = probe_health(server.url, seconds)
            stdout, stderr = attacker.communicate(input="", timeout=60)
        finally:
            if attacker.poll() is None:
                attacker.kill()
                attacker.wait()
        lines = stdout.strip().splitlines()
        load = json.loads(lines[-1]) if lines else {"error": stderr[-500:]}
        alive = server.process.poll() is None
    return {
        "seconds": seconds,
        "alone": alone,
        "during": during,
        "peak_mb": sampler.peak / MB,
        "killed": sampler.killed,
        "server_alive": alive,
        "attacker": load,
    }


def p8_attacks(mode: Any) -> dict[str, Any]:
    quick = bool(mode.quick)
    return {
        "queued": _queued(quick),
        "pixels": _pixels(quick),
        "bodies": _under_load("bodies", 5.0 if quick else 15.0, ["--clients", "4"]),
        "slow": _under_load("slow", 8.0 if quick else 20.0, ["--connections", "1000", "--interval", "3"]),
    }
