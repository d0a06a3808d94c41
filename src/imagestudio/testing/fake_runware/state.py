"""What a fake Runware remembers and counts, and the control and observation a test reads it by.

Faults queued, latency, calls, billing, recent requests, timings, jobs and images: everything a
test reads or sets (``latency``, :meth:`~_State.inject`, ``billed``...) is guarded by one lock, so
tests may change the fake's behaviour while requests are in flight. ``billed`` counts the tasks
that ran (what Runware would charge for).

How long it took: ``service_times`` (``GET /_fake/timings`` out of process) holds, per task
request and per image download, the seconds from the request's arrival to the last byte of the
answer, latency included. Benchmarks subtract these to find the client's own time.

:class:`~.server.FakeRunware` is this class with one layer per room on top (images, tasks, the
ASGI app, the launcher), each a subclass of the one below, so they share ``self`` and the lock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import uvicorn

from imagestudio.testing.fake_runware.faults import Fault, _ActiveFault
from imagestudio.testing.fake_runware.protocol import _API_PATH, _NOT_JSON, _RUNNING_TASKS, _tasks_of


@dataclass(frozen=True)
class _Image:
    data: bytes
    extension: str


@dataclass
class _Job:
    """A task the fake accepted (and billed): its result once ready, or its failure."""

    task_type: str
    items: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None
    partial: bool = False
    delivery: Fault | None = None
    """How ``getResponse`` hands out the results (``Fault.STAGGERED``, ...); ``None``: all at once."""
    delivered: int = 0
    """Results handed out so far, under a staggered ``delivery``."""
    polls: int = 0


class _State:
    """The state of a fake Runware, with the control and observation of :class:`~.server.FakeRunware`."""

    def __init__(
        self,
        *,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        max_body_bytes: int = 100 * 1024 * 1024,
        keep_requests: int = 50,
        keep_images: int = 1000,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self._keep_images = keep_images
        self._lock = threading.Lock()
        self._latency = latency
        self._faults: list[_ActiveFault] = []
        self._calls = 0
        self._submissions = 0
        self._polls = 0
        self._billed: Counter[str] = Counter()
        self._task_types: Counter[str] = Counter()
        self._requests: deque[Any] = deque(maxlen=keep_requests)
        self._downloads = 0
        self._downloads_with_credentials = 0
        self._service_times: dict[str, deque[float]] = {
            "task": deque(maxlen=10_000),
            "image": deque(maxlen=10_000),
        }
        self._seen_uuids: set[str] = set()
        self._jobs: dict[str, _Job] = {}
        self._images: OrderedDict[str, _Image] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # --- control ------------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds a task takes: a sync answer waits this long, an async result is ready after it."""
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._lock:
            self._latency = seconds

    def inject(self, fault: Fault | str, times: int | None = None, *, polls: bool = False) -> None:
        """Misbehave on the next ``times`` task requests (for ever when ``None``).

        Faults queue up: each request consumes the oldest one still active. With ``polls`` the
        fault applies to ``getResponse`` requests instead of the requests that submit tasks.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for ever")
        with self._lock:
            self._faults.append(_ActiveFault(Fault(fault), times, polls))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget faults, latency, counters and recorded requests (used task UUIDs stay used)."""
        with self._lock:
            self._faults.clear()
            self._latency = 0.0
            self._calls = 0
            self._submissions = 0
            self._polls = 0
            self._billed.clear()
            self._task_types.clear()
            self._requests.clear()
            self._downloads = 0
            self._downloads_with_credentials = 0
            for times in self._service_times.values():
                times.clear()

    def forget_images(self) -> None:
        """Drop every stored image, as Runware does once its retention ends."""
        with self._lock:
            self._images.clear()

    # --- observation ----------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """Requests received on the task endpoint, whatever became of them (polls included)."""
        with self._lock:
            return self._calls

    @property
    def submissions(self) -> int:
        """Requests that carried a task which runs (``imageInference``, ``upscale``, ``imageUpload``)."""
        with self._lock:
            return self._submissions

    @property
    def polls(self) -> int:
        """``getResponse`` requests received."""
        with self._lock:
            return self._polls

    @property
    def billed(self) -> int:
        """Tasks that ran: what Runware would charge for (a refused or conflicting task is not)."""
        with self._lock:
            return sum(self._billed.values())

    @property
    def billed_by_task_type(self) -> dict[str, int]:
        with self._lock:
            return dict(self._billed)

    @property
    def calls_by_task_type(self) -> dict[str, int]:
        """Tasks received, by ``taskType``, for every request whose body was a JSON array."""
        with self._lock:
            return dict(self._task_types)

    @property
    def requests(self) -> list[Any]:
        """The most recent request bodies, oldest first, decoded from JSON (raw text if not JSON)."""
        with self._lock:
            return list(self._requests)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task of the recent requests, oldest first."""
        return [task for body in self.requests for task in _tasks_of(body)]

    @property
    def last_request(self) -> Any:
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def image_downloads(self) -> int:
        with self._lock:
            return self._downloads

    @property
    def downloads_with_credentials(self) -> int:
        """Image downloads that carried an ``Authorization`` header (a client should send none)."""
        with self._lock:
            return self._downloads_with_credentials

    @property
    def service_times(self) -> dict[str, list[float]]:
        """Seconds each recent task request (``task``) and image download (``image``) took here,
        from arrival to the last byte of the answer, oldest first."""
        with self._lock:
            return {kind: list(times) for kind, times in self._service_times.items()}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self._calls,
                "submissions": self._submissions,
                "polls": self._polls,
                "billed": sum(self._billed.values()),
                "callsByTaskType": dict(self._task_types),
                "imageDownloads": self._downloads,
                "downloadsWithCredentials": self._downloads_with_credentials,
                "latency": self._latency,
                "faults": [
                    {"fault": f.fault.value, "times": f.remaining, "polls": f.polls} for f in self._faults
                ],
            }

    # --- address --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The REST endpoint, as ``RUNWARE_API_URL`` expects it."""
        return f"{self.base_url}{_API_PATH}"

    # --- recording ------------------------------------------------------------------------------

    def _timed(self, kind: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._lock:
            self._service_times[kind].append(elapsed)

    def _record_call(self, body: bytes | None, document: Any) -> Fault | None:
        """Count the call, remember its body and take the fault (if any) that applies to it."""
        tasks = _tasks_of(document)
        is_poll = bool(tasks) and all(task.get("taskType") == "getResponse" for task in tasks)
        with self._lock:
            self._calls += 1
            if is_poll:
                self._polls += 1
            elif any(task.get("taskType") in _RUNNING_TASKS for task in tasks):
                self._submissions += 1
            if document is not _NOT_JSON:
                self._requests.append(document)
            elif body is not None:
                self._requests.append(body.decode("utf-8", "replace"))
            for task in tasks:
                self._task_types[str(task.get("taskType"))] += 1
            return self._take_fault(is_poll)

    def _take_fault(self, is_poll: bool) -> Fault | None:
        active = next((f for f in self._faults if f.polls == is_poll), None)
        if active is None:
            return None
        active.seen += 1
        if active.remaining is not None:
            active.remaining -= 1
            if active.remaining == 0:
                self._faults.remove(active)
        if active.fault is Fault.FLAKY and active.seen % 2 == 0:
            return None
        return active.fault
