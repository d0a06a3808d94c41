"""The benchmark runner: ``python bench/run.py [--quick] [--only P1,P4] [--with-suite]``.

Runs the scenarios of issue 7 (and P8, the attacks of issue 12: ``bench/attacks.py``; P9, a
gallery page of issue 16: ``bench/gallery.py``; P10, a team on PostgreSQL of issue 17:
``bench/team.py``, which needs a PostgreSQL server) against real processes on loopback
(``imagestudio serve``, the fake Runware, a bare Litestar app, a separate load-generator
process), takes the median of repeated rounds, and writes ``BENCHMARKS.md`` (and the raw
figures to ``bench/last-run.json``). The P3 section of ``BENCHMARKS.md`` belongs to
``bench/history.py``: this runner keeps it as it finds it.

Machines here are shared and noisy: every comparison is measured side by side, in alternating
rounds of the same run, and the report gives ratios next to absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import io
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attacks
import gallery
import harness
import httpx
import numpy as np
import team
from harness import median, percentile
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PROMPT = "a red sunset over mountains and a lake"
MB = 1024 * 1024


class Mode:
    """How much to repeat: the full run (``nox -s bench``) or a smoke run (``--quick``)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.rounds = 2 if quick else 5
        self.p2_requests = 15 if quick else 30
        self.p4_seconds = 1.0 if quick else 2.0
        self.p4_warmup = 0.5
        self.p5_requests = 2 if quick else 4
        self.cold_rounds = 2 if quick else 3
        # bench/history.py repeats each P3 query 200 times by default; filling a million rows
        # already takes minutes, so the whole run keeps within ten minutes with 30 repeats
        self.p3_repeat = 30


# --- the scenarios --------------------------------------------------------------------------------


async def _burst(url: str, body: dict[str, Any], count: int) -> tuple[float, set[int]]:
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(harness.raw_request("POST", url, payload, headers) for _ in range(count))
    )
    return time.perf_counter() - started, {status for status, _ in answers}


def p1_p6_concurrency(mode: Mode) -> dict[str, Any]:
    """P1 (wall time of N concurrent text-to-image, provider latency 1 s) and P6 (peak RSS at 64)."""
    latency = 1.0
    body = {"prompt": PROMPT, "width": 1024, "height": 1024, "seed": 7}
    result: dict[str, Any] = {"latency": latency, "size": "1024x1024", "levels": {}}
    with (
        harness.running_fake(latency=latency) as fake,
        harness.running_server(engine="runware", fake=fake) as server,
    ):
        url = f"{server.url}/api/generate/text-to-image"

        async def scenario() -> None:
            await _burst(url, body, 2)  # warm-up: imports, caches, the fake's render
            result["rss_idle_mb"] = harness.rss(server.pid) / MB
            for count in (16, 64):
                walls, directs, peaks, statuses = [], [], [], set()
                for _ in range(mode.rounds):
                    directs.append(await harness.direct_burst(fake.url, count, PROMPT))
                    with harness.RssSampler(server.pid) as sampler:
                        wall, codes = await _burst(url, body, count)
                    walls.append(wall)
                    peaks.append(sampler.peak / MB)
                    statuses |= codes
                result["levels"][str(count)] = {
                    "wall_s": walls,
                    "direct_s": directs,
                    "peak_rss_mb": peaks,
                    "statuses": sorted(statuses),
                }

        asyncio.run(scenario())
    return result


def p2_overhead(mode: Mode) -> dict[str, Any]:
    """P2: one text-to-image at a time, provider latency 0, 1024x1024 JPEG; the server's own time."""
    body = {"prompt": PROMPT, "width": 1024, "height": 1024, "seed": 7}
    rounds: list[dict[str, float]] = []
    with (
        harness.running_fake(latency=0.0) as fake,
        harness.running_server(engine="runware", fake=fake) as server,
    ):
        url = f"{server.url}/api/generate/text-to-image"
        with httpx.Client(timeout=60) as client:
            for _ in range(3):  # warm-up
                client.post(url, json=body).raise_for_status()
            for _ in range(mode.rounds):
                fake.control(reset=True)
                answered_before = len(server.log_events("runware.answered"))
                downloaded_before = len(server.log_events("runware.downloaded"))
                totals = []
                for _ in range(mode.p2_requests):
                    started = time.perf_counter()
                    client.post(url, json=body).raise_for_status()
                    totals.append(time.perf_counter() - started)
                time.sleep(0.2)  # let the log lines reach the file
                timings = fake.timings()
                answered = [float(e["duration_ms"]) for e in server.log_events("runware.answered")][
                    answered_before:
                ]
                downloaded = [float(e["duration_ms"]) for e in server.log_events("runware.downloaded")][
                    downloaded_before:
                ]
                n = len(totals)
                # With async delivery each generation is one submit and one or more getResponse
                # polls (answered events and fake task calls), and one download.
                calls = len(answered)
                if not (len(downloaded) == len(timings["image"]) == n and calls == len(timings["task"])):
                    raise RuntimeError("P2: provider timings do not line up with the requests")
                if len(answered) < 2 * n:
                    raise RuntimeError("P2: fewer Runware calls than a submit and a poll per generation")
                total_ms = [t * 1000 for t in totals]
                provider_by_log = (sum(answered) + sum(downloaded)) / n
                provider_by_fake = (sum(timings["task"]) + sum(timings["image"])) * 1000 / n
                own_by_log = [t - provider_by_log for t in total_ms]
                own_by_fake = [t - provider_by_fake for t in total_ms]
                rounds.append(
                    {
                        "total_p50": percentile(total_ms, 50),
                        "provider_p50": provider_by_log,
                        "calls_per_generation": len(answered) / n,
                        "own_by_log_p50": percentile(own_by_log, 50),
                        "own_by_log_p90": percentile(own_by_log, 90),
                        "own_by_fake_p50": percentile(own_by_fake, 50),
                        "own_by_fake_p90": percentile(own_by_fake, 90),
                    }
                )
    return {"requests_per_round": mode.p2_requests, "rounds": rounds}


def _loadgen(url: str, mode: Mode, connections: int, cpu: int | None) -> dict[str, Any]:
    command = [sys.executable, str(BENCH / "loadgen.py"), url, "--connections", str(connections)]
    command += ["--duration", str(mode.p4_seconds), "--warmup", str(mode.p4_warmup)]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    finished = subprocess.run(  # noqa: S603 - our own script, with arguments we build
        command, capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def _seed_history(server_url: str, count: int) -> None:
    body = {"prompt": PROMPT, "width": 128, "height": 128, "steps": 1}
    with httpx.Client(timeout=60) as client:
        for _ in range(count):
            client.post(f"{server_url}/api/generate/text-to-image", json=body).raise_for_status()


def p4_throughput(mode: Mode) -> dict[str, Any]:
    """P4: requests/second of /health and of a 50-item history page vs a bare Litestar app."""
    pinned = harness.can_pin()
    server_cpu, client_cpu = (0, 1) if pinned else (None, None)
    connections = 32
    samples: dict[str, list[float]] = {"hello": [], "health": [], "history": []}
    errors: dict[str, int] = {"hello": 0, "health": 0, "history": 0}
    with harness.running_server(engine="local", cpu=server_cpu) as server:
        _seed_history(server.url, 60)
        port = harness.free_port()
        hello = subprocess.Popen(  # noqa: S603 - our own script, with arguments we build
            [sys.executable, str(BENCH / "hello_app.py"), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            harness.wait_healthy(f"http://{harness.HOST}:{port}/", hello)
            if server_cpu is not None:
                harness.pin(hello.pid, server_cpu)
            targets = {
                "hello": f"http://{harness.HOST}:{port}/",
                "health": f"{server.url}/health",
                "history": f"{server.url}/api/history?limit=50",
            }
            page = httpx.get(targets["history"]).json()["data"]  # the items
            for _ in range(mode.rounds):
                for name, url in targets.items():
                    outcome = _loadgen(url, mode, connections, client_cpu)
                    samples[name].append(outcome["rps"])
                    errors[name] += outcome["errors"]
        finally:
            hello.terminate()
            hello.wait(timeout=20)
    return {
        "pinned": pinned,
        "connections": connections,
        "seconds": mode.p4_seconds,
        "history_items": len(page),
        "rps": samples,
        "errors": errors,
    }


def _engine_only(mode: Mode) -> dict[str, list[float]]:
    """The local engine's own time, in this process, without the server around it."""
    from imagestudio.adapters.images import inspect_image_bytes
    from imagestudio.adapters.local_engine.generator import _text_to_image, _upscale
    from imagestudio.domain.model import ImageSpec

    def spec(side: int) -> ImageSpec:
        return ImageSpec(
            prompt=PROMPT, negative_prompt=None, width=side, height=side, steps=25, cfg_scale=7.5, seed=42,
            model="runware:100@1",
        )  # fmt: skip

    def ignore(_done: int, _total: int, _preview: object = None) -> None:
        return None

    times: dict[str, list[float]] = {"512": [], "1024": [], "upscale": []}
    source = inspect_image_bytes(_text_to_image(spec(1024), ignore).data)
    for _ in range(mode.rounds):
        for side in (512, 1024):
            started = time.perf_counter()
            _text_to_image(spec(side), ignore)
            times[str(side)].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        _upscale(source, 2, ignore)
        times["upscale"].append((time.perf_counter() - started) * 1000)
    return times


def p5_local_engine(mode: Mode) -> dict[str, Any]:
    """P5: the local engine through the server (512, 1024 at 25 steps; 2x upscale of 1024)."""
    rounds: dict[str, list[float]] = {"512": [], "1024": [], "upscale": []}
    with harness.running_server(engine="local") as server, httpx.Client(timeout=60) as client:
        generate = f"{server.url}/api/generate/text-to-image"

        def timed(url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            answer = client.post(url, json=body)
            answer.raise_for_status()
            return (time.perf_counter() - started) * 1000, answer.json()["data"]

        _, source = timed(
            generate, {"prompt": PROMPT, "width": 1024, "height": 1024, "steps": 25, "seed": 42}
        )
        for side in (512, 1024):  # warm-up
            timed(generate, {"prompt": PROMPT, "width": side, "height": side, "steps": 25, "seed": 42})
        timed(f"{server.url}/api/generate/upscale", {"imagePath": source["filePath"], "scale": 2})
        for _ in range(mode.rounds):
            for side in (512, 1024):
                body = {"prompt": PROMPT, "width": side, "height": side, "steps": 25, "seed": 42}
                rounds[str(side)].append(median([timed(generate, body)[0] for _ in range(mode.p5_requests)]))
            body = {"imagePath": source["filePath"], "scale": 2}
            upscale = f"{server.url}/api/generate/upscale"
            rounds["upscale"].append(median([timed(upscale, body)[0] for _ in range(mode.p5_requests)]))
    return {"server_ms": rounds, "engine_ms": _engine_only(mode)}


def _big_data_uri(target_bytes: int) -> tuple[str, tuple[int, int]]:
    """A PNG of noise whose data URI is about ``target_bytes`` long (incompressible, so exact)."""
    pixels = int(target_bytes * 3 / 4 / 3)
    width = 2048
    height = max(64, pixels // width)
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), (width, height)


def p7_big_body(mode: Mode) -> dict[str, Any]:
    """P7: image-to-image with a 20 MB data-URI body; the server's own time and peak RSS growth."""
    uri, size = _big_data_uri(20 * 1000 * 1000)
    body = {"seedImage": uri, "prompt": PROMPT, "width": 512, "height": 512, "seed": 7, "strength": 0.5}
    payload = json.dumps(body).encode()
    rounds: list[dict[str, float]] = []
    with (
        harness.running_fake(latency=0.0) as fake,
        harness.running_server(engine="runware", fake=fake) as server,
    ):
        url = f"{server.url}/api/generate/image-to-image"
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=120) as client:
            client.post(url, content=payload, headers=headers).raise_for_status()  # warm-up
            for _ in range(mode.rounds):
                fake.control(reset=True)
                time.sleep(0.3)
                with harness.RssSampler(server.pid, interval=0.002) as sampler:
                    started = time.perf_counter()
                    client.post(url, content=payload, headers=headers).raise_for_status()
                    total = (time.perf_counter() - started) * 1000
                timings = fake.timings()
                provider = (sum(timings["task"]) + sum(timings["image"])) * 1000
                rounds.append(
                    {
                        "total_ms": total,
                        "provider_ms": provider,
                        "own_ms": total - provider,
                        "rss_before_mb": sampler.start / MB,
                        "rss_growth_mb": (sampler.peak - sampler.start) / MB,
                    }
                )
    return {"body_mb": len(payload) / 1e6, "image": f"{size[0]}x{size[1]} PNG", "rounds": rounds}


def cold_start(mode: Mode) -> dict[str, Any]:
    """Seconds from starting ``imagestudio serve`` (fresh data dir) to a healthy ``/health``."""
    times = []
    for _ in range(mode.cold_rounds):
        with harness.running_server(engine="local") as server:
            times.append(server.started_in)
    return {"seconds": times}


def time_test_suite() -> dict[str, Any]:
    """The test suite's own run time (``python -m pytest -q``), once."""
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    tail = finished.stdout.strip().splitlines()[-1:] or [""]
    return {"seconds": time.perf_counter() - started, "exit": finished.returncode, "summary": tail[0]}


def p3_history(mode: Mode, out: Path) -> dict[str, Any]:
    """P3 belongs to ``bench/history.py``; run it if it is there (it writes its own section)."""
    script = BENCH / "history.py"
    if not script.exists():
        return {"ran": False, "why": "bench/history.py is not in this checkout"}
    started = time.perf_counter()
    command = [sys.executable, str(script), "--out", str(out)]
    command += ["--quick"] if mode.quick else ["--repeat", str(mode.p3_repeat)]
    finished = subprocess.run(command, cwd=ROOT, check=False)  # noqa: S603 - our own script
    return {"ran": True, "exit": finished.returncode, "seconds": time.perf_counter() - started}


SCENARIOS: dict[str, Callable[[Mode], dict[str, Any]]] = {
    "P1": p1_p6_concurrency,
    "P2": p2_overhead,
    "P3": lambda mode: {},  # run by main(), which knows where the report goes
    "P4": p4_throughput,
    "P5": p5_local_engine,
    "P7": p7_big_body,
    "P8": attacks.p8_attacks,
    "P9": gallery.p9_gallery,
    "P10": team.p10_team,
    "cold": cold_start,
}


# --- the machine ----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _postgres_version() -> str:
    url = os.environ.get("IMAGESTUDIO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return f"{row[0]} (server)" if row else "unknown"
    except Exception as error:  # the report says why there is no version
        return f"not reachable ({type(error).__name__})"


def machine() -> dict[str, str]:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    memory = ""
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 1024**3:.0f} GiB"
    except ImportError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": _load(),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "litestar": _dist_version("litestar"),
        "uvicorn": f"{uvicorn.__version__} (loop {loop}, http {http})",
        "numpy": np.__version__,
        "pillow": Image.__version__,
    }


def _load() -> str:
    """The 1-minute load average: how busy the (shared) machine was, our own processes included."""
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run, not a measurement")
    parser.add_argument(
        "--only", default="", help="comma-separated scenarios (P1,P2,P3,P4,P5,P7,P8,P9,P10,cold,suite)"
    )
    parser.add_argument(
        "--with-suite",
        action="store_true",
        help="also time the test suite (minutes; otherwise the last measured time is carried over)",
    )
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    options = parser.parse_args(argv)
    mode = Mode(options.quick)
    wanted = [s.strip() for s in options.only.split(",") if s.strip()] or [*SCENARIOS]
    if options.with_suite and "suite" not in wanted:
        wanted.append("suite")
    out = Path(options.out).resolve()
    raw = BENCH / "last-run.json" if out == ROOT / "BENCHMARKS.md" else out.with_suffix(".json")
    results: dict[str, Any] = {}
    previous = json.loads(raw.read_text()) if raw.exists() else {}
    if options.only:  # a partial run updates the figures of the last full one
        results = previous
    elif "suite" in previous and "suite" not in wanted:  # its date says when it was measured
        results["suite"] = previous["suite"]
    partial = bool(options.only and results)
    if not partial:  # a partial run keeps the full run's machine table; its scenarios carry dates
        results |= {"quick": mode.quick, "machine": machine(), "rounds": mode.rounds}
    began = time.perf_counter()
    for name in wanted:
        started = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        try:
            if name == "suite":
                results[name] = time_test_suite()
            elif name == "P3":
                results[name] = p3_history(mode, out)
            else:
                results[name] = SCENARIOS[name](mode)
        except Exception as error:  # one broken scenario must not cost the others' figures
            print(f"bench: {name} failed: {error!r}", flush=True)
            results[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
        results[name]["measured"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    if not partial:
        results["elapsed_s"] = time.perf_counter() - began
        results["machine"]["load"] += f" at the start, {_load()} at the end"
    import report

    raw.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report.write(out, results)
    print(f"bench: wrote {options.out} in {results['elapsed_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
