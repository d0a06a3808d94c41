"""The attacker's load for P8, in a process of its own (so the /health prober measures the server,
not this load's event loop): ``python bench/attacker.py bodies|slow URL [options]``.

- ``bodies``: ``--clients`` connections, each POSTing a JSON body of ``--bytes`` to
  image-to-image over and over (a data URI of zeros: not an image, so the server parses it,
  decodes it and refuses it), until ``--duration`` seconds have passed.
- ``slow``: ``--connections`` sockets, each sending a request's headers one byte every
  ``--interval`` seconds and never finishing them (slowloris). A socket the server closes is
  opened again, as a real attacker would. Raises this process's own descriptor limit to fit.

Prints ``ready`` once the load is in place, then one JSON line of counts when it stops: at
``--duration``, or sooner when its standard input closes. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

CHUNK = 1024 * 1024
STOP = threading.Event()
"""Set when standard input closes: the parent has measured what it wanted."""


def _watch_stdin() -> None:
    sys.stdin.read()
    STOP.set()


def _running(deadline: float) -> bool:
    return time.monotonic() < deadline and not STOP.is_set()


def _body(size: int) -> bytes:
    head = b'{"prompt":"an attacker fills the pipe","seedImage":"data:image/png;base64,'
    tail = b'"}'
    return head + b"A" * max(0, size - len(head) - len(tail)) + tail


async def _post(host: str, port: int, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))
        view = memoryview(body)
        for start in range(0, len(body), CHUNK):
            writer.write(view[start : start + CHUNK])
            await writer.drain()
        line = await reader.readline()
        return int(line.split(b" ", 2)[1]) if line else 0
    finally:
        writer.close()


async def bodies(url: str, clients: int, size: int, duration: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = _body(size)
    statuses: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + duration

    async def client() -> None:
        while _running(deadline):
            try:
                status = await asyncio.wait_for(
                    _post(host, port, "/api/generate/image-to-image", body), timeout=60
                )
                statuses[str(status)] += 1
            except (OSError, TimeoutError, ValueError, IndexError) as error:
                statuses[type(error).__name__] += 1
                await asyncio.sleep(0.05)

    print("ready", flush=True)
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"clients": clients, "body_bytes": len(body), "answers": dict(statuses)}


async def slow(url: str, connections: int, interval: float, duration: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    counts = collections.Counter[str]()
    open_now = 0
    most_open = 0
    deadline = time.monotonic() + duration
    header = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode() + b"a" * 100_000
    connecting = asyncio.Semaphore(64)
    ramped = asyncio.Event()
    first_round = [0]

    async def one() -> None:
        nonlocal open_now, most_open
        first = True
        while _running(deadline):
            try:
                async with connecting:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5)
            except (OSError, TimeoutError) as error:
                counts[f"connect {type(error).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            counts["opened"] += 1
            open_now += 1
            most_open = max(most_open, open_now)
            if first:
                first = False
                first_round[0] += 1
                if first_round[0] == connections:
                    ramped.set()
            closed = asyncio.ensure_future(reader.read(1))
            try:
                for byte in header:
                    if not _running(deadline) or closed.done():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.wait({closed}, timeout=interval)
                if closed.done() and _running(deadline):
                    counts["closed by the server"] += 1
            except OSError:
                counts["reset by the server"] += 1
            finally:
                closed.cancel()
                open_now -= 1
                writer.close()

    tasks = [asyncio.ensure_future(one()) for _ in range(connections)]
    try:
        await asyncio.wait_for(ramped.wait(), timeout=max(1.0, duration / 2))
    except TimeoutError:
        counts["not all opened in the ramp"] += 1
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    return {
        "connections": connections,
        "interval_s": interval,
        "most_open": most_open,
        "counts": dict(counts),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("bodies", "slow"))
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bytes", type=int, default=32 * 1024 * 1024 - 64)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=3.0)
    options = parser.parse_args(argv)
    threading.Thread(target=_watch_stdin, daemon=True).start()
    if urlsplit(options.url).hostname not in ("127.0.0.1", "localhost"):
        parser.error("loopback only")
    if options.mode == "bodies":
        result = asyncio.run(bodies(options.url, options.clients, options.bytes, options.duration))
    else:
        result = asyncio.run(slow(options.url, options.connections, options.interval, options.duration))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
