"""A fake Runware REST server that speaks the protocol of ``RUNWARE.md`` as strictly as Runware.

It is a small ASGI app served by uvicorn. Tests run it in-process::

    with FakeRunware.running(api_key="k") as fake:
        ...  # point the adapter at fake.url; read fake.calls; fake.inject(Fault.UNAVAILABLE, times=3)

and offline development runs it as a process::

    python -m imagestudio.testing.fake_runware --port 9999 --api-key KEY [--latency 1] [--fault 503=2]

(``--port 0`` picks a free port; the first line printed names the endpoint; the key may come
from ``RUNWARE_API_KEY`` instead of the command line.)

What it checks, like Runware: the JSON array envelope, ``Authorization: Bearer <key>``
(401 ``invalidApiKey``), known task types, UUID v4 ``taskUUID`` values that are never reused
(409 ``conflictTaskUUID``; a well-formed UUID counts as used once received, even when its
task is refused), the parameter limits of ``RUNWARE.md`` and no unknown parameter
(``unsupportedParameter``). Errors use Runware's body, ``{"errors": [{code, message,
parameter?, taskType?, taskUUID?}]}``; where Runware's exact code is not documented the
fake uses the ``invalid<Parameter>`` / ``missing<Parameter>`` pattern Runware follows.

What it does: ``imageInference`` renders a deterministic picture from prompt and seed
(blended with ``seedImage`` by ``strength``), ``upscale`` resizes ``inputImage`` with Lanczos
(at most 4096 px a side), ``imageUpload`` stores an image; results are kept in memory and
served at ``imageURL`` (``GET /image/<imageUUID>.<ext>``). ``deliveryMethod: "async"`` plus
``getResponse`` polling work too.

How it misbehaves on request: see :class:`Fault`, :meth:`FakeRunware.inject` and
``latency``. Out of process, ``GET /_fake/stats`` and ``POST /_fake/control`` do the same.

How long it took: :attr:`FakeRunware.service_times` (``GET /_fake/timings`` out of process) holds,
per task request and per image download, the seconds from the request's arrival to the last byte
of the answer, latency included. Benchmarks subtract these to find the client's own time. A
text-to-image picture is rendered once per (prompt, seed, size, format) and then served from a
small cache: a real provider renders on its own machines, so a fake on the client's machine should
not charge the client's CPU for it on every call.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np
import uvicorn
from PIL import Image

__all__ = ["FakeRunware", "Fault", "main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_SEED: Final = 9_223_372_036_854_775_807
MAX_UPSCALE_SIDE: Final = 4096
INFERENCE_COST: Final = 0.0013
UPSCALE_COST: Final = 0.002

_API_PATH: Final = "/v1"
_IMAGE_PATH: Final = re.compile(r"/image/([0-9a-f-]{36})\.(jpg|png|webp)")
_UUID4: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)
_AIR: Final = re.compile(r"[a-z][a-z0-9_-]*:[0-9]+@[0-9]+")
_DATA_URI: Final = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,", re.ASCII)
_FORMATS: Final = {
    "JPG": ("jpg", "JPEG", "image/jpeg"),
    "PNG": ("png", "PNG", "image/png"),
    "WEBP": ("webp", "WEBP", "image/webp"),
}
_MEDIA_TYPES: Final = {ext: media for ext, _, media in _FORMATS.values()}
_AUTH_ERROR: Final = {
    "code": "invalidApiKey",
    "message": "Invalid API key. Get one at https://my.runware.ai/signup",
    "parameter": "apiKey",
    "taskType": "authentication",
}
_INFERENCE_PARAMETERS: Final = frozenset(
    {
        "taskType", "taskUUID", "positivePrompt", "negativePrompt", "model", "width", "height", "steps",
        "CFGScale", "seed", "numberResults", "outputType", "outputFormat", "outputQuality", "seedImage",
        "strength", "includeCost", "deliveryMethod",
    }
)  # fmt: skip
_UPSCALE_PARAMETERS: Final = frozenset(
    {
        "taskType", "taskUUID", "inputImage", "upscaleFactor", "model", "outputType", "outputFormat",
        "outputQuality", "includeCost", "deliveryMethod",
    }
)  # fmt: skip
_UPLOAD_PARAMETERS: Final = frozenset({"taskType", "taskUUID", "image"})
_POLL_PARAMETERS: Final = frozenset({"taskType", "taskUUID"})
_TASK_TYPES: Final = ("imageInference", "upscale", "imageUpscale", "imageUpload", "getResponse")


class Fault(StrEnum):
    """Ways the fake can be told to misbehave; the value is the CLI spelling."""

    HANG = "hang"
    """Never answer: hold the request until the client gives up (or the fake stops)."""
    RATE_LIMITED = "429"
    """429 with Runware's error body."""
    SERVER_ERROR = "500"
    """500 with Runware's error body."""
    UNAVAILABLE = "503"
    """503 ``serviceUnavailable``."""
    FLAKY = "flaky"
    """Every other call fails with 503, starting with the first."""
    INSUFFICIENT_CREDITS = "402"
    """402 ``insufficientCredits`` for every task of the request."""
    MALFORMED_JSON = "malformed-json"
    """200 whose body is not valid JSON."""
    NOT_AN_ARRAY = "not-an-array"
    """200 whose ``data`` is an object rather than an array."""
    MISSING_DATA = "missing-data"
    """200 whose body has no ``data`` at all."""
    IMAGE_404 = "image-404"
    """A normal answer whose ``imageURL`` answers 404."""
    IMAGE_NOT_AN_IMAGE = "image-not-an-image"
    """A normal answer whose ``imageURL`` serves bytes that are not an image."""


_STATUS_FAULTS: Final = {
    Fault.RATE_LIMITED: (429, "tooManyRequests", "Queue capacity exceeded. Please retry later."),
    Fault.SERVER_ERROR: (500, "internalServerError", "An unexpected error occurred."),
    Fault.UNAVAILABLE: (503, "serviceUnavailable", "The service is temporarily unavailable."),
    Fault.FLAKY: (503, "serviceUnavailable", "The service is temporarily unavailable."),
    Fault.INSUFFICIENT_CREDITS: (402, "insufficientCredits", "Insufficient credits to run this task."),
}


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int | None
    seen: int = 0


@dataclass(frozen=True)
class _Image:
    data: bytes
    extension: str


class _TaskError(Exception):
    """One task failed; ``body`` is its entry in Runware's ``errors`` list."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def _task_error(
    code: str, message: str, *, parameter: str | None = None, status: int = 400, **limits: Any
) -> _TaskError:
    body: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    body.update(limits)
    return _TaskError(status, body)


def _capitalised(name: str) -> str:
    return name[:1].upper() + name[1:]


# --- parameter checks (one per kind of value) -----------------------------------------------------


def _int(
    task: dict[str, Any], name: str, low: int, high: int, default: int | None, *, multiple: int = 1
) -> int:
    value = task.get(name, default)
    if value is None:
        raise _task_error(
            f"missing{_capitalised(name)}", f"Missing required parameter '{name}'.", parameter=name
        )
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high or value % multiple:
        limits: dict[str, Any] = {"type": "integer", "min": low, "max": high}
        if multiple != 1:
            limits["multiplier"] = multiple
        rule = f" and a multiple of {multiple}" if multiple != 1 else ""
        raise _task_error(
            f"invalid{_capitalised(name)}",
            f"Invalid value for '{name}'. It must be an integer between {low} and {high}{rule}.",
            parameter=name,
            **limits,
        )
    return value


def _number(task: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = task.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _task_error(
            f"invalid{_capitalised(name)}",
            f"Invalid value for '{name}'. It must be a number between {low:g} and {high:g}.",
            parameter=name,
            type="float",
            min=low,
            max=high,
        )
    return float(value)


def _text(task: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = task.get(name)
    if value is None:
        if required:
            raise _task_error(
                f"missing{_capitalised(name)}", f"Missing required parameter '{name}'.", parameter=name
            )
        return None
    if not isinstance(value, str) or not 2 <= len(value) <= 3000:
        raise _task_error(
            f"invalid{_capitalised(name)}",
            f"Invalid value for '{name}'. It must be a string of 2 to 3000 characters.",
            parameter=name,
            type="string",
            min=2,
            max=3000,
        )
    return value


def _choice(task: dict[str, Any], name: str, choices: Sequence[Any], default: Any) -> Any:
    value = task.get(name, default)
    if type(value) is not type(default) or value not in choices:
        listed = ", ".join(json.dumps(choice) for choice in choices)
        raise _task_error(
            f"invalid{_capitalised(name)}",
            f"Invalid value for '{name}'. It must be one of {listed}.",
            parameter=name,
        )
    return value


def _model(task: dict[str, Any], *, required: bool) -> str | None:
    value = task.get("model")
    if value is None and not required:
        return None
    if value is None:
        raise _task_error("missingModel", "Missing required parameter 'model'.", parameter="model")
    if not isinstance(value, str) or not _AIR.fullmatch(value):
        raise _task_error(
            "invalidModel",
            "Invalid value for 'model'. It must be an AIR identifier such as 'runware:100@1'.",
            parameter="model",
        )
    return value


# --- pictures -----------------------------------------------------------------------------------


def _encode_image(image: Image.Image, output_format: str, quality: int) -> bytes:
    _, pillow_format, _ = _FORMATS[output_format]
    if pillow_format == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, quality=quality)
    return buffer.getvalue()


def _render(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    seed_image: bytes | None,
    strength: float,
    output_format: str,
    quality: int,
) -> bytes:
    """A deterministic picture of prompt and seed: a two-colour gradient with soft stripes."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    start, end = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(2, 12)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs / max(width - 1, 1)) * np.cos(angle) + (ys / max(height - 1, 1)) * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    stripes = 0.5 + 0.5 * np.sin(ramp * frequency * np.pi)
    mix = (0.7 * ramp + 0.3 * stripes)[..., None]
    pixels = start * (1 - mix) + end * mix
    if seed_image is not None:
        with Image.open(io.BytesIO(seed_image)) as source:
            base = np.asarray(
                source.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), np.float32
            )
        pixels = base * (1 - strength) + pixels * strength
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return _encode_image(picture, output_format, quality)


@functools.lru_cache(maxsize=32)
def _rendered(prompt: str, seed: int, width: int, height: int, output_format: str, quality: int) -> bytes:
    """:func:`_render` of a text-to-image picture, remembered (the same arguments give the same bytes)."""
    return _render(prompt, seed, width, height, None, 0.0, output_format, quality)


def _upscaled(data: bytes, factor: int, output_format: str, quality: int) -> bytes:
    """``data`` enlarged ``factor`` times with Lanczos, shrunk to fit 4096 px a side like Runware."""
    with Image.open(io.BytesIO(data)) as source:
        source.load()
        width, height = source.size
        target_w, target_h = width * factor, height * factor
        largest = max(target_w, target_h)
        if largest > MAX_UPSCALE_SIDE:
            target_w = max(1, round(target_w * MAX_UPSCALE_SIDE / largest))
            target_h = max(1, round(target_h * MAX_UPSCALE_SIDE / largest))
        mode = "RGBA" if "A" in source.getbands() and output_format != "JPG" else "RGB"
        bigger = source.convert(mode).resize((target_w, target_h), Image.Resampling.LANCZOS)
    return _encode_image(bigger, output_format, quality)


def _image_extension(data: bytes) -> str | None:
    """The extension under which the fake serves ``data``, or ``None`` if it is not a whole image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pillow_format = image.format
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    extensions = {pillow: ext for ext, pillow, _ in _FORMATS.values()}
    return extensions.get(pillow_format or "", "png")


# --- the server ---------------------------------------------------------------------------------


class FakeRunware:
    """A fake Runware: an ASGI app plus the uvicorn server thread that serves it.

    Everything a test reads or sets (``latency``, :meth:`inject`, ``calls``...) is guarded by
    a lock, so tests may change the fake's behaviour while requests are in flight.
    """

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
        self._task_types: Counter[str] = Counter()
        self._requests: deque[Any] = deque(maxlen=keep_requests)
        self._downloads = 0
        self._downloads_with_credentials = 0
        self._service_times: dict[str, deque[float]] = {
            "task": deque(maxlen=10_000),
            "image": deque(maxlen=10_000),
        }
        self._seen_uuids: set[str] = set()
        self._images: OrderedDict[str, _Image] = OrderedDict()
        self._async_results: dict[str, list[dict[str, Any]]] = {}
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __repr__(self) -> str:
        return f"FakeRunware(url={self.url!r})"

    # --- control ------------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds every task request waits before it is answered (``asyncio.sleep``)."""
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._lock:
            self._latency = seconds

    def inject(self, fault: Fault | str, times: int | None = None) -> None:
        """Misbehave on the next ``times`` task requests (for ever when ``None``).

        Faults queue up: each request consumes the oldest one still active.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for ever")
        with self._lock:
            self._faults.append(_ActiveFault(Fault(fault), times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget faults, latency, counters and recorded requests (used task UUIDs stay used)."""
        with self._lock:
            self._faults.clear()
            self._latency = 0.0
            self._calls = 0
            self._task_types.clear()
            self._requests.clear()
            self._downloads = 0
            self._downloads_with_credentials = 0
            for times in self._service_times.values():
                times.clear()

    # --- observation ----------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """Requests received on the task endpoint, whatever became of them."""
        with self._lock:
            return self._calls

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
                "callsByTaskType": dict(self._task_types),
                "imageDownloads": self._downloads,
                "downloadsWithCredentials": self._downloads_with_credentials,
                "latency": self._latency,
                "faults": [{"fault": f.fault.value, "times": f.remaining} for f in self._faults],
            }

    # --- running --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The REST endpoint, as ``RUNWARE_API_URL`` expects it."""
        return f"{self.base_url}{_API_PATH}"

    def start(self, *, timeout: float = 10.0) -> None:
        """Serve in a background thread; return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("this fake is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._socket = listener
        self._stopping.clear()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="fake-runware", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Runware server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving: held (``hang``) requests are released and the thread is joined."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    @classmethod
    @contextlib.contextmanager
    def running(cls, *, api_key: str, **options: Any) -> Iterator[FakeRunware]:
        """Start a fake on a free loopback port for the ``with`` block."""
        fake = cls(api_key=api_key, **options)
        fake.start()
        try:
            yield fake
        finally:
            fake.stop()

    def __enter__(self) -> FakeRunware:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == _API_PATH:
            if method != "POST":
                await _send_json(
                    send, 405, {"errors": [{"code": "methodNotAllowed", "message": "Use POST."}]}
                )
                return
            started = time.perf_counter()
            await self._api(scope, receive, send)
            self._timed("task", started)
        elif (match := _IMAGE_PATH.fullmatch(path)) and method in ("GET", "HEAD"):
            started = time.perf_counter()
            await self._serve_image(scope, send, match[1], match[2])
            self._timed("image", started)
        elif path == "/_fake/stats" and method == "GET":
            await _send_json(send, 200, self.stats())
        elif path == "/_fake/timings" and method == "GET":
            await _send_json(send, 200, self.service_times)
        elif path == "/_fake/control" and method == "POST":
            await self._control(receive, send)
        else:
            await _send_json(send, 404, {"errors": [{"code": "notFound", "message": "Not found."}]})

    def _timed(self, kind: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._lock:
            self._service_times[kind].append(elapsed)

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self.max_body_bytes)
        document = await asyncio.to_thread(_decode_json, body)
        fault, latency = self._record_call(body, document)
        if latency:
            await asyncio.sleep(latency)
        if fault is Fault.HANG:
            if not await self._hold(receive):
                await _send_json(
                    send, 503, {"errors": [{"code": "serviceUnavailable", "message": "Stopping."}]}
                )
            return
        if fault in _STATUS_FAULTS:
            status, code, message = _STATUS_FAULTS[fault]
            errors = [{"code": code, "message": message, **_task_ids(task)} for task in _tasks_of(document)]
            await _send_json(send, status, {"errors": errors or [{"code": code, "message": message}]})
            return
        if fault is Fault.MALFORMED_JSON:
            await _send(
                send, 200, b'{"data": [{"taskType": "imageInference", "taskUUID": ', "application/json"
            )
            return
        if fault is Fault.NOT_AN_ARRAY:
            await _send_json(send, 200, {"data": {"taskUUID": str(uuid.uuid4()), "imageURL": "nowhere"}})
            return
        if fault is Fault.MISSING_DATA:
            await _send_json(send, 200, {"result": "ok"})
            return
        if body is None:
            error = {"code": "requestTooLarge", "message": f"The body exceeds {self.max_body_bytes} bytes."}
            await _send_json(send, 413, {"errors": [error]})
            return
        status, answer = await self._answer(scope, document, result_fault=fault)
        await _send_json(send, status, answer)

    def _record_call(self, body: bytes | None, document: Any) -> tuple[Fault | None, float]:
        """Count the call, remember its body and take the fault (if any) that applies to it."""
        with self._lock:
            self._calls += 1
            if document is not _NOT_JSON:
                self._requests.append(document)
            elif body is not None:
                self._requests.append(body.decode("utf-8", "replace"))
            for task in _tasks_of(document):
                self._task_types[str(task.get("taskType"))] += 1
            return self._take_fault(), self._latency

    def _take_fault(self) -> Fault | None:
        if not self._faults:
            return None
        active = self._faults[0]
        active.seen += 1
        if active.remaining is not None:
            active.remaining -= 1
            if active.remaining == 0:
                self._faults.pop(0)
        if active.fault is Fault.FLAKY and active.seen % 2 == 0:
            return None
        return active.fault

    async def _hold(self, receive: Receive) -> bool:
        """Wait until the client hangs up (True) or the fake stops (False)."""
        while not self._stopping.is_set():
            try:
                message = await asyncio.wait_for(receive(), timeout=0.1)
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return True
        return False

    async def _answer(
        self, scope: Scope, document: Any, *, result_fault: Fault | None
    ) -> tuple[int, dict[str, Any]]:
        """Check the request like Runware and run its tasks: (status, body)."""
        headers = _headers(scope)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"errors": [dict(_AUTH_ERROR)]}
        if not headers.get("content-type", "").lower().startswith("application/json"):
            return 400, _request_error("invalidContentType", "The Content-Type must be application/json.")
        if document is _NOT_JSON:
            return 400, _request_error("invalidJSON", "The request body is not valid JSON.")
        if not isinstance(document, list) or not document:
            return 400, _request_error(
                "invalidRequestFormat", "The request body must be a non-empty array of tasks."
            )
        base_url = _request_base_url(scope, self.base_url)
        statuses: list[int] = []
        errors: list[dict[str, Any]] = []
        data: list[dict[str, Any]] = []
        for task in document:
            try:
                data.extend(await self._run_task(task, base_url, result_fault))
            except _TaskError as failure:
                statuses.append(failure.status)
                errors.append({**failure.body, **_task_ids(task)})
        if errors:
            answer: dict[str, Any] = {"errors": errors}
            if data:
                answer["data"] = data
            return statuses[0], answer
        return 200, {"data": data}

    async def _run_task(self, task: Any, base_url: str, result_fault: Fault | None) -> list[dict[str, Any]]:
        if not isinstance(task, dict):
            raise _task_error("invalidTaskFormat", "Every task must be a JSON object.")
        task_type = task.get("taskType")
        if task_type is None:
            raise _task_error(
                "missingTaskType", "Missing required parameter 'taskType'.", parameter="taskType"
            )
        if task_type not in _TASK_TYPES:
            raise _task_error(
                "invalidTaskType",
                f"Unsupported taskType. Use one of {', '.join(_TASK_TYPES)}.",
                parameter="taskType",
            )
        task_uuid = task.get("taskUUID")
        if task_uuid is None:
            raise _task_error(
                "missingTaskUUID", "Missing required parameter 'taskUUID'.", parameter="taskUUID"
            )
        if not isinstance(task_uuid, str) or not _UUID4.fullmatch(task_uuid):
            raise _task_error(
                "invalidTaskUUID", "The taskUUID must be a UUID v4 string.", parameter="taskUUID"
            )
        if task_type == "getResponse":
            _reject_unknown(task, _POLL_PARAMETERS)
            return self._poll(task_uuid)
        with self._lock:
            reused = task_uuid.lower() in self._seen_uuids
            self._seen_uuids.add(task_uuid.lower())
        if reused:
            raise _task_error(
                "conflictTaskUUID",
                "This taskUUID was already used; send a new one.",
                parameter="taskUUID",
                status=409,
            )
        if task_type == "imageInference":
            _reject_unknown(task, _INFERENCE_PARAMETERS)
            items, delivery = await self._inference(task, base_url, result_fault)
        elif task_type in ("upscale", "imageUpscale"):
            _reject_unknown(task, _UPSCALE_PARAMETERS)
            items, delivery = await self._upscale(task, base_url, result_fault)
        else:
            _reject_unknown(task, _UPLOAD_PARAMETERS)
            items, delivery = await self._upload(task, base_url), "sync"
        if delivery == "async":
            with self._lock:
                self._async_results[task_uuid] = items
            return [{"taskType": task_type, "taskUUID": task_uuid}]
        return items

    def _poll(self, task_uuid: str) -> list[dict[str, Any]]:
        with self._lock:
            items = self._async_results.get(task_uuid)
        if items is None:
            raise _task_error(
                "unknownTaskUUID", "No asynchronous task has this taskUUID.", parameter="taskUUID"
            )
        return [{**item, "status": "success"} for item in items]

    async def _inference(
        self, task: dict[str, Any], base_url: str, result_fault: Fault | None
    ) -> tuple[list[dict[str, Any]], str]:
        prompt = _text(task, "positivePrompt", required=True)
        assert prompt is not None
        _text(task, "negativePrompt", required=False)
        _model(task, required=True)
        width = _int(task, "width", 128, 2048, None, multiple=64)
        height = _int(task, "height", 128, 2048, None, multiple=64)
        _int(task, "steps", 1, 100, 20)
        _number(task, "CFGScale", 0, 50, 7)
        seed = _int(task, "seed", 1, MAX_SEED, secrets.randbelow(MAX_SEED) + 1)
        count = _int(task, "numberResults", 1, 20, 1)
        output_type, output_format, quality, include_cost, delivery = _output_options(task)
        seed_image = await self._image_parameter(task, "seedImage", base_url, required=False)
        seed_bytes = seed_image.data if seed_image is not None else None
        strength = _number(task, "strength", 0, 1, 0.8)
        items = []
        for index in range(count):
            item_seed = min(seed + index, MAX_SEED)
            if seed_bytes is None:
                data = await asyncio.to_thread(
                    _rendered, prompt, item_seed, width, height, output_format, quality
                )
            else:
                data = await asyncio.to_thread(
                    _render, prompt, item_seed, width, height, seed_bytes, strength, output_format, quality
                )
            item = self._result(task, data, output_type, output_format, base_url, result_fault)
            item["seed"] = item_seed
            if include_cost:
                item["cost"] = INFERENCE_COST
            items.append(item)
        return items, delivery

    async def _upscale(
        self, task: dict[str, Any], base_url: str, result_fault: Fault | None
    ) -> tuple[list[dict[str, Any]], str]:
        source = await self._image_parameter(task, "inputImage", base_url, required=True)
        assert source is not None
        factor = _upscale_factor(task)
        _model(task, required=False)
        output_type, output_format, quality, include_cost, delivery = _output_options(task)
        data = await asyncio.to_thread(_upscaled, source.data, factor, output_format, quality)
        item = self._result(task, data, output_type, output_format, base_url, result_fault)
        item["inputImageUUID"] = self._store(source.data, source.extension)
        if include_cost:
            item["cost"] = UPSCALE_COST
        return [item], delivery

    async def _upload(self, task: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
        image = await self._image_parameter(task, "image", base_url, required=True)
        assert image is not None
        image_uuid = self._store(image.data, image.extension)
        return [
            {
                "taskType": task["taskType"],
                "taskUUID": task["taskUUID"],
                "imageUUID": image_uuid,
                "imageURL": f"{base_url}/image/{image_uuid}.{image.extension}",
            }
        ]

    def _result(
        self,
        task: dict[str, Any],
        data: bytes,
        output_type: str,
        output_format: str,
        base_url: str,
        result_fault: Fault | None,
    ) -> dict[str, Any]:
        extension, _, media_type = _FORMATS[output_format]
        if result_fault is Fault.IMAGE_404:
            image_uuid = str(uuid.uuid4())
        elif result_fault is Fault.IMAGE_NOT_AN_IMAGE:
            image_uuid = self._store(b"<html><body>This is not an image.</body></html>", extension)
        else:
            image_uuid = self._store(data, extension)
        item: dict[str, Any] = {
            "taskType": task["taskType"],
            "taskUUID": task["taskUUID"],
            "imageUUID": image_uuid,
        }
        if output_type == "URL":
            item["imageURL"] = f"{base_url}/image/{image_uuid}.{extension}"
        elif output_type == "base64Data":
            item["imageBase64Data"] = base64.b64encode(data).decode("ascii")
        else:
            item["imageDataURI"] = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
        return item

    def _store(self, data: bytes, extension: str) -> str:
        image_uuid = str(uuid.uuid4())
        with self._lock:
            self._images[image_uuid] = _Image(data, extension)
            while len(self._images) > self._keep_images:
                self._images.popitem(last=False)
        return image_uuid

    async def _image_parameter(
        self, task: dict[str, Any], name: str, base_url: str, *, required: bool
    ) -> _Image | None:
        """An input image given as an image UUID, a data URI, bare base64 or one of our image URLs."""
        value = task.get(name)
        if value is None:
            if required:
                raise _task_error(
                    f"missing{_capitalised(name)}", f"Missing required parameter '{name}'.", parameter=name
                )
            return None
        invalid = _task_error(
            f"invalid{_capitalised(name)}",
            f"Invalid value for '{name}'. Send an image UUID, a data URI, base64 data or a public image URL.",
            parameter=name,
        )
        if not isinstance(value, str) or not value:
            raise invalid
        data: bytes | None
        if _UUID4.fullmatch(value):
            with self._lock:
                stored = self._images.get(value.lower())
            data = stored.data if stored else None
        elif value.startswith(("http://", "https://")):
            data = self._own_image(value, base_url)
        else:
            data = _decode_base64(value)
        extension = await asyncio.to_thread(_image_extension, data) if data else None
        if data is None or extension is None:
            raise invalid
        return _Image(data, extension)

    def _own_image(self, url: str, base_url: str) -> bytes | None:
        """Runware fetches public URLs; the fake only knows its own images, so only those resolve."""
        parts = urlsplit(url)
        match = _IMAGE_PATH.fullmatch(parts.path)
        if match is None or parts.netloc != urlsplit(base_url).netloc:
            return None
        with self._lock:
            stored = self._images.get(match[1])
        return stored.data if stored is not None and stored.extension == match[2] else None

    async def _serve_image(self, scope: Scope, send: Send, image_uuid: str, extension: str) -> None:
        with self._lock:
            self._downloads += 1
            if "authorization" in _headers(scope):
                self._downloads_with_credentials += 1
            stored = self._images.get(image_uuid)
        if stored is None or stored.extension != extension:
            await _send(send, 404, b"Not Found", "text/plain")
            return
        await _send(send, 200, stored.data, _MEDIA_TYPES[extension])

    async def _control(self, receive: Receive, send: Send) -> None:
        """Out-of-process control.

        Body: ``{"reset"?: bool, "clearFaults"?: bool, "latency"?: seconds,
        "faults"?: [{"fault": name, "times"?: n}]}``; answers with :meth:`stats`.
        """
        body = await _read_body(receive, 1024 * 1024)
        command = _decode_json(body) if body is not None else _NOT_JSON
        try:
            if not isinstance(command, dict):
                raise ValueError("the body must be a JSON object")
            if command.get("reset"):
                self.reset()
            if command.get("clearFaults"):
                self.clear_faults()
            if "latency" in command:
                self.latency = float(command["latency"])
            for entry in command.get("faults", []):
                self.inject(Fault(entry["fault"]), entry.get("times"))
        except (ValueError, TypeError, KeyError) as error:
            await _send_json(send, 400, {"errors": [{"code": "invalidControl", "message": str(error)}]})
            return
        await _send_json(send, 200, self.stats())


# --- ASGI and protocol helpers ------------------------------------------------------------------

_NOT_JSON: Final[Any] = object()


def _decode_json(body: bytes | None) -> Any:
    if body is None:
        return _NOT_JSON
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _decode_base64(value: str) -> bytes | None:
    """A data URI's or bare base64's bytes; ``None`` if it is neither."""
    prefix = _DATA_URI.match(value)
    try:
        return base64.b64decode(value[prefix.end() :] if prefix else value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _tasks_of(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, list):
        return []
    return [task for task in document if isinstance(task, dict)]


def _task_ids(task: Any) -> dict[str, Any]:
    if not isinstance(task, dict):
        return {}
    return {key: task[key] for key in ("taskType", "taskUUID") if isinstance(task.get(key), str)}


def _request_error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


def _reject_unknown(task: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in task:
        if name not in allowed:
            raise _task_error(
                "unsupportedParameter",
                f"The parameter '{name}' is not supported by this task.",
                parameter=name,
            )


def _upscale_factor(task: dict[str, Any]) -> int:
    value = task.get("upscaleFactor")
    if value is None:
        raise _task_error(
            "missingUpscaleFactor", "Missing required parameter 'upscaleFactor'.", parameter="upscaleFactor"
        )
    if isinstance(value, bool) or not isinstance(value, int) or value not in (2, 3, 4):
        raise _task_error(
            "invalidUpscaleFactor",
            "Invalid value for 'upscaleFactor'. It must be 2, 3 or 4.",
            parameter="upscaleFactor",
        )
    return value


def _output_options(task: dict[str, Any]) -> tuple[str, str, int, bool, str]:
    output_type = _choice(task, "outputType", ("URL", "base64Data", "dataURI"), "URL")
    output_format = _choice(task, "outputFormat", ("JPG", "PNG", "WEBP"), "JPG")
    quality = _int(task, "outputQuality", 20, 99, 95)
    include_cost = _choice(task, "includeCost", (True, False), False)
    delivery = _choice(task, "deliveryMethod", ("sync", "async"), "sync")
    return output_type, output_format, quality, include_cost, delivery


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def _request_base_url(scope: Scope, fallback: str) -> str:
    host = _headers(scope).get("host")
    return f"http://{host}" if host else fallback


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, document: Any) -> None:
    await _send(send, status, json.dumps(document).encode("utf-8"), "application/json")


# --- command line -------------------------------------------------------------------------------


def _fault_option(text: str) -> tuple[Fault, int | None]:
    name, _, times = text.partition("=")
    try:
        fault = Fault(name)
        count = int(times) if times else None
    except ValueError as error:
        choices = ", ".join(fault.value for fault in Fault)
        raise argparse.ArgumentTypeError(f"expected NAME[=TIMES] with NAME one of: {choices}") from error
    if count is not None and count < 1:
        raise argparse.ArgumentTypeError("TIMES must be at least 1")
    return fault, count


def main(argv: Sequence[str] | None = None) -> None:
    """Run a fake Runware until interrupted; prints its endpoint URL on the first line."""
    parser = argparse.ArgumentParser(
        prog="python -m imagestudio.testing.fake_runware",
        description="A fake Runware REST server for offline use.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9999, help="port to bind; 0 picks a free one (default 9999)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RUNWARE_API_KEY") or None,
        help="the only API key the fake accepts (default: $RUNWARE_API_KEY)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every answer")
    parser.add_argument(
        "--fault",
        type=_fault_option,
        action="append",
        default=[],
        metavar="NAME[=TIMES]",
        help=f"misbehave (repeatable); NAME is one of: {', '.join(fault.value for fault in Fault)}",
    )
    options = parser.parse_args(argv)
    if not options.api_key:
        parser.error("an API key is required: pass --api-key or set RUNWARE_API_KEY")
    fake = FakeRunware(api_key=options.api_key, host=options.host, port=options.port, latency=options.latency)
    for fault, times in options.fault:
        fake.inject(fault, times)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    try:
        fake.start()
    except OSError as error:
        parser.exit(1, f"cannot listen on {options.host}:{options.port}: {error.strerror}\n")
    print(f"Fake Runware listening on {fake.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
