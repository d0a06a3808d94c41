"""P10: a team on one PostgreSQL database (issue 17): throughput with one and two workers, and
how long an event takes from one server to another.

The cluster is real processes on loopback, as ``tests/e2e/test_team_queue.py`` starts it: a fresh
PostgreSQL database (created here, dropped at the end), two ``imagestudio serve --role api``
servers (A and B), ``imagestudio worker --concurrency 256`` processes (one, then two), the Runware
engine pointed at the fake Runware with a latency of 1 s (as P1), every process with its own log
and the same data folder (images go to one shared folder until object storage is there).

- **Bursts.** N synchronous text-to-image requests (1024x1024, fixed seed) sent at once, half to
  A and half to B, each on its own connection (P1's thin client); the wall time from the first
  send to the last answer, and the statuses. Each round measures, in this order: the same burst
  straight to the fake (the floor), through one ``imagestudio serve`` on SQLite (the desktop
  mode, its limits raised to run the whole burst at once), through the team with one worker, and
  with a second worker started (after a warm-up burst) and stopped again at the end of the round.
- **Where a burst's time goes.** Each team burst also records the CPU seconds each process spent
  during it (user + system from ``/proc``: A, B, each worker, the fake, and the PostgreSQL
  backends of the bench database together), from the task rows when the last task started and
  how long tasks ran (started to finished), and how often some backend waited for one of
  imagestudio's advisory locks (``pg_locks`` sampled every 50 ms: the cluster-wide admission
  lock, the event stream's write lock).
- **Admission and drain, apart.** With no worker running, 256 submissions with
  ``Prefer: respond-async`` at once through A and B: the time to the last ``202`` is the
  cluster's admission alone. Then one worker (later: two at once) is started and runs the full
  queue: the first start to the last end, from the task rows, is the workers alone.
- **Events between servers.** A WebSocket on A and one on B (both on every task); tasks are
  submitted on A (``Prefer: respond-async``, a few a second, two workers running) until both
  sockets have seen at least :data:`EVENTS` events and every task has ended. For each ``seq`` the
  difference between its arrival on B and on A; and, from the ``created_at`` the publishing
  process wrote in ``task_events`` (same machine, same clock), the time from an event's
  publication (on a worker, or on A for a task's ``queued`` event) to its arrival on each socket,
  for every event and for the ``completed`` ones alone (a task's completion on a worker to its
  arrival on the servers).

``python bench/team.py [--quick]`` runs this scenario alone and prints its figures as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import psutil
from harness import percentile

__all__ = ["p10_team"]

LATENCY = 1.0
BURSTS = (64, 256)
CONCURRENCY = max(BURSTS)
"""Each worker's ``--concurrency``: one worker alone can run the largest burst at once."""
MAX_QUEUED = 4 * max(BURSTS)
"""The cluster's queue limit, above the largest burst (the default, 100, would refuse some)."""
SINGLE_ENV = {"IMAGESTUDIO_MAX_RUNNING": str(CONCURRENCY), "IMAGESTUDIO_MAX_QUEUED": str(MAX_QUEUED)}
"""The single server's limits: it runs the largest burst at once, as one of the workers does."""
DRAIN = max(BURSTS)
"""Tasks admitted with no worker running, then run by one or two workers (the drain figures)."""
EVENTS = 200
"""Events each socket sees at least in the event-latency part."""
EVENT_TASK_RATE = 5.0
"""Tasks submitted on A a second in the event-latency part."""
ADMIN_URL_ENV = "IMAGESTUDIO_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PROMPT = "a red sunset over mountains and a lake"
BODY = {"prompt": PROMPT, "width": 1024, "height": 1024, "seed": 7}
SMALL = {"prompt": PROMPT, "width": 512, "height": 512, "seed": 7}


# --- the database -----------------------------------------------------------------------------


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    """A database of its own on the bench PostgreSQL server (dropped afterwards); its URL."""
    import psycopg
    from psycopg import sql

    admin = _libpq(os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL))
    name = f"imagestudio_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        for attempt in range(20):
            try:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                break
            except psycopg.errors.ObjectInUse:  # someone is connected to template1 this moment
                if attempt == 19:
                    raise
                time.sleep(0.5)
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            connection.execute(drop)


# --- the processes ----------------------------------------------------------------------------


@dataclass
class Member:
    """One process of the team: its name, process, log and (for an API server) URL."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def _launch(name: str, command: list[str], env: dict[str, str], logs: Path) -> Member:
    log_path = logs / f"{name}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:  # the child holds its own descriptor
        process = subprocess.Popen(  # noqa: S603 - our own program, with arguments we build
            [sys.executable, "-m", "imagestudio", *command],
            env=harness.server_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Member(name=name, process=process, log_path=log_path)


def _start_api(name: str, data: Path, env: dict[str, str], logs: Path) -> Member:
    port = harness.free_port()
    command = ["serve", "--role", "api", "--port", str(port), "--data-dir", str(data)]
    member = _launch(name, command, env, logs)
    member.url = f"http://{harness.HOST}:{port}"
    try:
        harness.wait_healthy(f"{member.url}/health", member.process)
    except RuntimeError as error:
        harness.stop(member.process)
        raise RuntimeError(f"{error}: {member.log_text()[-1500:]}") from error
    return member


def _start_worker(name: str, data: Path, env: dict[str, str], logs: Path, timeout: float = 60) -> Member:
    command = ["worker", "--data-dir", str(data), "--concurrency", str(CONCURRENCY)]
    member = _launch(name, command, env, logs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if member.process.poll() is not None:
            raise RuntimeError(f"{name} exited with {member.process.returncode}: {member.log_text()[-1500:]}")
        if "worker started" in member.log_text():
            return member
        time.sleep(0.05)
    harness.stop(member.process)
    raise RuntimeError(f"{name} did not start within {timeout:g} s: {member.log_text()[-1500:]}")


class CpuMeter:
    """CPU seconds (user + system) the team's processes and the database's backends spend."""

    def __init__(self, members: dict[str, int], database: str) -> None:
        self.members = members
        self.database = database

    def _backends(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for process in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                title = " ".join(process.info["cmdline"] or [])
                if title.startswith("postgres:") and f" {self.database} " in f"{title} ":
                    times = process.cpu_times()
                    found[process.pid] = times.user + times.system
        return found

    def sample(self) -> dict[str, Any]:
        own: dict[str, float] = {}
        for name, pid in self.members.items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                own[name] = times.user + times.system
        return {"own": own, "backends": self._backends()}

    @staticmethod
    def spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        """Seconds of CPU between two samples, by process (``postgres``: the backends together)."""
        spent = {name: after["own"][name] - before["own"].get(name, 0.0) for name in after["own"]}
        spent["postgres"] = sum(
            seconds - before["backends"].get(pid, 0.0) for pid, seconds in after["backends"].items()
        )
        return {name: round(seconds, 3) for name, seconds in spent.items()}


class LockWaits:
    """Which backends of the bench database wait for one of imagestudio's advisory locks, sampled
    every :attr:`interval` seconds in a thread while the block runs (``pg_locks``, not granted)."""

    interval = 0.05

    def __init__(self, url: str) -> None:
        from imagestudio.adapters.queue import ADMISSION_LOCK, SWEEP_LOCK
        from imagestudio.adapters.sql.events import PRUNE_LOCK, WRITE_LOCK

        self.url = url
        self.names = {ADMISSION_LOCK: "admission", WRITE_LOCK: "event_write", SWEEP_LOCK: "sweep"}
        self.names[PRUNE_LOCK] = "prune"
        self.samples = 0
        self.waiting: Counter[str] = Counter()
        self.busy: Counter[str] = Counter()  # samples with at least one waiter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockWaits:
        import psycopg

        connection = psycopg.connect(_libpq(self.url), autocommit=True)
        query = (
            "SELECT (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
        )

        def sample() -> None:
            with connection:
                while not self._stop.is_set():
                    keys = Counter(
                        self.names.get(int(row[0]), "other") for row in connection.execute(query).fetchall()
                    )
                    self.samples += 1
                    self.waiting.update(keys)
                    self.busy.update(keys.keys())
                    self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, name="lock-waits", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Per lock: the mean number of backends waiting for it, and the share of samples with any."""
        n = max(self.samples, 1)
        return {
            "samples": self.samples,
            **{
                name: {"mean_waiting": self.waiting[name] / n, "share_waited": self.busy[name] / n}
                for name in sorted(self.waiting)
            },
        }


# --- bursts -----------------------------------------------------------------------------------


async def _burst(
    servers: Sequence[Member | harness.Server],
    count: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[float, dict[str, int]]:
    """``count`` text-to-image requests at once (synchronous unless ``headers`` say otherwise),
    spread evenly over ``servers``, each on its own connection: the wall time and the statuses."""
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}

    async def one(server: Member | harness.Server) -> str:
        try:
            status, _ = await harness.raw_request(
                "POST", f"{server.url}/api/generate/text-to-image", payload, headers
            )
        except OSError as error:  # a refused or reset connection, counted by its kind
            return type(error).__name__
        return str(status)

    started = time.perf_counter()
    async with asyncio.timeout(180):
        statuses = await asyncio.gather(*(one(servers[n % len(servers)]) for n in range(count)))
    wall = time.perf_counter() - started
    return wall, dict(Counter(statuses))


# --- events between servers -------------------------------------------------------------------


async def _event_latency(a: Member, b: Member, events: int, rate: float) -> dict[str, Any]:
    """Arrival times (``time.time()``) of every event on a socket on A and one on B, while tasks
    are submitted on A at ``rate`` a second; returns them with the tasks' ids."""
    import websockets

    arrivals: dict[str, dict[int, float]] = {"a": {}, "b": {}}
    kinds: dict[int, str] = {}
    ended: dict[str, set[str]] = {"a": set(), "b": set()}
    submitted: list[str] = []
    done = asyncio.Event()

    async def read(name: str, socket: Any) -> None:
        async for raw in socket:
            now = time.time()
            message = json.loads(raw)
            if message.get("type") != "progress":
                continue
            arrivals[name][int(message["seq"])] = now
            kinds[int(message["seq"])] = message["status"]
            if message["status"] in ("completed", "failed", "cancelled"):
                ended[name].add(message["taskId"])
            if (
                len(submitted) > 0
                and min(len(arrivals["a"]), len(arrivals["b"])) >= events
                and all(set(submitted) <= ended[side] for side in ended)
            ):
                done.set()

    def ws(server: Member) -> str:
        return server.url.replace("http://", "ws://") + "/ws/generation"

    headers = {"Content-Type": "application/json", "Prefer": "respond-async"}
    async with websockets.connect(ws(a), max_size=None) as on_a, websockets.connect(ws(b)) as on_b:
        readers = [asyncio.create_task(read("a", on_a)), asyncio.create_task(read("b", on_b))]
        await asyncio.sleep(0.5)  # both subscribed before the first task
        try:
            async with asyncio.timeout(90):
                while not done.is_set():
                    seen = min(len(arrivals["a"]), len(arrivals["b"]))
                    if seen + 8 * sum(1 for t in submitted if t not in ended["b"]) < events:
                        task_id = f"p10-{uuid.uuid4().hex[:12]}"
                        body = json.dumps({**SMALL, "taskId": task_id}).encode()
                        status, answer = await harness.raw_request(
                            "POST", f"{a.url}/api/generate/text-to-image", body, headers
                        )
                        if status != 202:
                            raise RuntimeError(f"P10: A answered {status} to a submission: {answer[:200]!r}")
                        submitted.append(task_id)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 1 / rate)
        finally:
            for reader in readers:
                reader.cancel()
    return {"arrivals": arrivals, "kinds": kinds, "tasks": submitted}


def _published(url: str, seqs: list[int]) -> dict[int, float]:
    """When each event was published (``task_events.created_at``, as a Unix time)."""
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT id, created_at FROM task_events WHERE id = ANY(%s)", (seqs,)
        ).fetchall()
    return {int(seq): created.timestamp() for seq, created in rows}


def _summary(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"count": 0}
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "min_ms": min(ms),
    }


def _latencies(url: str, seen: dict[str, Any]) -> dict[str, Any]:
    arrivals, kinds = seen["arrivals"], seen["kinds"]
    both = sorted(set(arrivals["a"]) & set(arrivals["b"]))
    published = _published(url, both)
    completed = [seq for seq in both if kinds[seq] == "completed"]
    return {
        "tasks": len(seen["tasks"]),
        "events_a": len(arrivals["a"]),
        "events_b": len(arrivals["b"]),
        "b_minus_a": _summary([arrivals["b"][s] - arrivals["a"][s] for s in both]),
        "b_minus_a_abs": _summary([abs(arrivals["b"][s] - arrivals["a"][s]) for s in both]),
        "published_to_a": _summary([arrivals["a"][s] - published[s] for s in both if s in published]),
        "published_to_b": _summary([arrivals["b"][s] - published[s] for s in both if s in published]),
        "completed_b_minus_a": _summary([arrivals["b"][s] - arrivals["a"][s] for s in completed]),
        "completed_to_a": _summary([arrivals["a"][s] - published[s] for s in completed if s in published]),
        "completed_to_b": _summary([arrivals["b"][s] - published[s] for s in completed if s in published]),
        "kinds": {kind: sum(1 for s in both if kinds[s] == kind) for kind in sorted(set(kinds.values()))},
    }


# --- what the database says about a burst ------------------------------------------------------


def _timeline(url: str, since: float) -> dict[str, Any]:
    """The tasks created since ``since`` (Unix time): how many ended how, when the last one
    started and ended (seconds after ``since``), and how long they ran (started to finished)."""
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT status, extract(epoch FROM started_at), extract(epoch FROM finished_at)"
            " FROM tasks WHERE created_at >= to_timestamp(%s)",
            (since,),
        ).fetchall()
    statuses = Counter(str(row[0]) for row in rows)
    ran = [(float(s), float(f)) for _, s, f in rows if s is not None and f is not None]
    if not ran:
        return {"tasks": len(rows), "statuses": dict(statuses)}
    return {
        "tasks": len(rows),
        "statuses": dict(statuses),
        "first_start_s": min(s for s, _ in ran) - since,
        "last_start_s": max(s for s, _ in ran) - since,
        "last_end_s": max(f for _, f in ran) - since,
        "run_p50_s": percentile([f - s for s, f in ran], 50),
        "run_max_s": max(f - s for s, f in ran),
    }


def _until_drained(url: str, since: float, timeout: float = 120) -> None:
    """Wait until every task created since ``since`` has ended."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT count(*) FROM tasks WHERE created_at >= to_timestamp(%s)"
                " AND status IN ('queued', 'generating')",
                (since,),
            ).fetchone()
            if row is not None and int(row[0]) == 0:
                return
            time.sleep(0.2)
    raise RuntimeError(f"P10: the queue did not drain within {timeout:g} s")


# --- the scenario -----------------------------------------------------------------------------


def _load() -> float:
    return round(os.getloadavg()[0], 2)


class Team:
    """The running team: the database, the fake, servers A and B, the workers, a CPU meter."""

    def __init__(self, url: str, fake: harness.FakeProvider, root: Path) -> None:
        self.url = url
        self.fake = fake
        self.data, self.logs = root / "shared", root
        self.env = {
            "IMAGESTUDIO_DATABASE_URL": url,
            "IMAGESTUDIO_ENGINE": "runware",
            "IMAGESTUDIO_MAX_QUEUED": str(MAX_QUEUED),
            "RUNWARE_API_KEY": harness.API_KEY,
            "RUNWARE_API_URL": fake.url,
        }
        self.servers: list[Member] = []
        self.workers: list[Member] = []
        self.meter = CpuMeter({"fake": fake.process.pid}, url.rsplit("/", 1)[1])
        self._names = iter(range(1, 1000))

    def start_servers(self) -> dict[str, float]:
        started = time.perf_counter()
        a = _start_api("api-a", self.data, self.env, self.logs)  # creates the schema and the queue
        first = time.perf_counter() - started
        self.servers.append(a)
        b = _start_api("api-b", self.data, self.env, self.logs)
        self.servers.append(b)
        self.meter.members |= {"api_a": a.pid, "api_b": b.pid}
        return {"first_api_s": first, "second_api_s": time.perf_counter() - started - first}

    def start_workers(self, count: int) -> float:
        """Start ``count`` workers at once; the seconds until all of them work the queue."""
        started = time.perf_counter()
        names = [f"worker-{next(self._names)}" for _ in range(count)]
        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(_start_worker, name, self.data, self.env, self.logs) for name in names]
            for future in futures:
                self.workers.append(future.result())
        self._meter_workers()
        return time.perf_counter() - started

    def stop_workers(self, keep: int) -> None:
        while len(self.workers) > keep:
            harness.stop(self.workers.pop().process)
        self._meter_workers()

    def _meter_workers(self) -> None:
        self.meter.members = {k: v for k, v in self.meter.members.items() if not k.startswith("worker")}
        self.meter.members |= {f"worker_{n + 1}": w.pid for n, w in enumerate(self.workers)}

    def burst(self, count: int, body: dict[str, Any] = BODY) -> dict[str, Any]:
        """A synchronous burst: wall time, statuses, CPU by process, and the database's timeline."""
        before, since = self.meter.sample(), time.time()
        with LockWaits(self.url) as waits:
            wall, statuses = asyncio.run(_burst(self.servers, count, body))
        return {
            "wall_s": wall,
            "statuses": statuses,
            "cpu_s": CpuMeter.spent(before, self.meter.sample()),
            "timeline": _timeline(self.url, since),
            "lock_waits": waits.summary(),
            "load": _load(),
        }

    def admission(self, count: int) -> dict[str, Any]:
        """``count`` submissions with ``Prefer: respond-async`` at once, half to A and half to B:
        the seconds until the last ``202`` (each answer comes once its admission committed)."""
        before, since = self.meter.sample(), time.time()
        headers = {"Prefer": "respond-async"}
        with LockWaits(self.url) as waits:
            wall, statuses = asyncio.run(_burst(self.servers, count, BODY, headers))
        return {
            "wall_s": wall,
            "statuses": statuses,
            "cpu_s": CpuMeter.spent(before, self.meter.sample()),
            "lock_waits": waits.summary(),
            "since": since,
        }

    def drain(self, workers: int) -> dict[str, Any]:
        """Admit :data:`DRAIN` tasks with no worker running, then start ``workers`` workers and
        time how long they take to run them all (first start to last end, from the task rows),
        with the CPU each process spent meanwhile (from the moment the workers were started)."""
        self.stop_workers(0)
        admitted = self.admission(DRAIN)
        startup = self.start_workers(workers)
        before = self.meter.sample()
        _until_drained(self.url, admitted["since"])
        spent = CpuMeter.spent(before, self.meter.sample())
        timeline = _timeline(self.url, admitted["since"])
        return {
            "admission": {k: v for k, v in admitted.items() if k != "since"},
            "workers": workers,
            "worker_startup_s": startup,
            "timeline": timeline,
            "drain_s": timeline["last_end_s"] - timeline["first_start_s"],
            "cpu_s": spent,
        }

    def stop(self) -> None:
        for member in [*reversed(self.workers), *reversed(self.servers)]:
            harness.stop(member.process)


def p10_team(mode: Any) -> dict[str, Any]:
    """P10: bursts of 64 and 256 through two API servers with one and two workers; admission
    alone; a full queue drained by one and by two workers; event latency between servers."""
    rounds = {64: 1, 256: 1} if mode.quick else {64: 3, 256: 2}  # 256 is most of the time
    result: dict[str, Any] = {
        "latency": LATENCY,
        "size": "1024x1024",
        "concurrency": CONCURRENCY,
        "rounds": {str(n): r for n, r in rounds.items()},
        "load_before": _load(),
        "levels": {str(n): {"direct_s": [], "single": [], "1": [], "2": []} for n in BURSTS},
    }
    with (
        _fresh_database() as url,
        harness.running_fake(latency=LATENCY) as fake,
        harness.running_server(engine="runware", fake=fake, env=SINGLE_ENV) as single,
        tempfile.TemporaryDirectory(prefix="imagestudio-bench-team-") as root,
    ):
        team = Team(url, fake, Path(root))
        try:
            _single_burst(single, 8)  # its warm-up
            result["startup"] = team.start_servers()
            # a full queue, then one worker: admission alone, and the worker alone (also the warm-up)
            result["drain_1"] = team.drain(1)
            for round_ in range(max(rounds.values())):
                counts = [n for n in BURSTS if round_ < rounds[n]]
                for count in counts:
                    level = result["levels"][str(count)]
                    level["direct_s"].append(asyncio.run(harness.direct_burst(fake.url, count, PROMPT)))
                    level["single"].append(_single_burst(single, count))
                    level["1"].append(team.burst(count))
                team.start_workers(1)
                team.burst(16)  # the new worker's warm-up
                for count in counts:
                    result["levels"][str(count)]["2"].append(team.burst(count))
                team.stop_workers(1)
            result["drain_2"] = team.drain(2)
            team.burst(16, SMALL)  # warm-up at the event part's size
            seen = asyncio.run(_event_latency(team.servers[0], team.servers[1], EVENTS, EVENT_TASK_RATE))
            result["events"] = _latencies(url, seen)
            result["load_after"] = _load()
            result["processes"] = {m.name: _exit_code(m) for m in [*team.servers, *team.workers]}
        finally:
            team.stop()
    return result


def _single_burst(server: harness.Server, count: int) -> dict[str, Any]:
    """The same burst through one ``imagestudio serve`` on SQLite (the desktop mode, as P1)."""
    process = psutil.Process(server.pid)
    before = sum(process.cpu_times()[:2])
    wall, statuses = asyncio.run(_burst([server], count, BODY))
    return {"wall_s": wall, "statuses": statuses, "cpu_s": sum(process.cpu_times()[:2]) - before}


def _exit_code(member: Member) -> str:
    return "running" if member.process.poll() is None else f"exited {member.process.returncode}"


if __name__ == "__main__":  # this scenario alone, printed as JSON: python bench/team.py [--quick]

    class _Mode:
        quick = "--quick" in sys.argv

    print(json.dumps(p10_team(_Mode()), indent=2, default=str))
