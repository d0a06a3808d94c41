"""A small closed-loop HTTP/1.1 load generator, meant to run in its own process.

``python bench/loadgen.py URL --connections 32 --duration 3 --warmup 1 [--cpu 1]`` keeps
``connections`` keep-alive connections busy with ``GET URL`` (each sends its next request as soon
as the previous answer is complete), and prints one JSON line:
``{"requests": n, "seconds": s, "rps": r, "errors": e, "statuses": {...}}``, counting only the
answers completed between the end of the warm-up and the end of the run.

It is written on ``asyncio.Protocol`` with a hand-rolled response parser (Content-Length and
chunked bodies) so that one Python process can drive a one-worker server harder than the server
can answer; pin it to its own CPU with ``--cpu`` so the two do not compete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

__all__ = ["main"]


class _Stats:
    def __init__(self) -> None:
        self.completed = 0
        self.errors = 0
        self.statuses: Counter[int] = Counter()
        self.counting = False
        self.stopping = False


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, stats: _Stats, closed: asyncio.Future[None]) -> None:
        self._request = request
        self._stats = stats
        self._closed = closed
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            consumed = self._parse()
            if consumed == 0:
                return
            del self._buffer[:consumed]
            if self._stats.stopping:
                assert self._transport is not None
                self._transport.close()
                return
            assert self._transport is not None
            self._transport.write(self._request)

    def _parse(self) -> int:
        """Bytes of one complete response at the start of the buffer (0 if not complete yet)."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return 0
        head = bytes(buffer[:end]).split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length = -1
        chunked = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        body_start = end + 4
        if chunked:
            terminator = buffer.find(b"\r\n0\r\n\r\n", body_start - 2)
            if terminator < 0:
                return 0
            total = terminator + 7
        else:
            total = body_start + max(length, 0)
            if len(buffer) < total:
                return 0
        if self._stats.counting:
            self._stats.completed += 1
            self._stats.statuses[status] += 1
            if status >= 400:
                self._stats.errors += 1
        return total

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._stats.stopping:
            self._stats.errors += 1
        if not self._closed.done():
            self._closed.set_result(None)


async def _run(url: str, connections: int, duration: float, warmup: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: imagestudio-bench\r\n"
        "Accept: */*\r\n\r\n"
    ).encode("ascii")
    loop = asyncio.get_running_loop()
    stats = _Stats()
    closed: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda done=done: _Connection(request, stats, done), host, port)
        closed.append(done)
    await asyncio.sleep(warmup)
    stats.counting = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    stats.counting = False
    seconds = time.perf_counter() - started
    stats.stopping = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*closed), timeout=10)
    return {
        "requests": stats.completed,
        "seconds": round(seconds, 4),
        "rps": round(stats.completed / seconds, 1),
        "errors": stats.errors,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    options = parser.parse_args(argv)
    if options.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {options.cpu})
    result = asyncio.run(_run(options.url, options.connections, options.duration, options.warmup))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
