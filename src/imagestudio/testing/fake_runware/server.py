"""A fake Runware REST server that accepts exactly what Runware's schemas accept.

It is a small ASGI app served by uvicorn. Tests run it in-process::

    with FakeRunware.running(api_key="k") as fake:
        ...  # point the adapter at fake.url; read fake.billed; fake.inject(Fault.UNAVAILABLE, times=3)

and offline development runs it as a process::

    python -m imagestudio.testing.fake_runware --port 9999 --api-key KEY [--latency 1] [--fault 503=2]

(``--port 0`` picks a free port; the first line printed names the endpoint; the key may come
from ``RUNWARE_API_KEY`` instead of the command line.)

What it checks, and where each rule comes from:

- every task against Runware's own schemas through :mod:`.oracle` (``runware-sdk``'s
  ``runware.types.task_map``): no unknown key, every required key, enumerated values such as
  ``upscaleFactor`` (``Literal[2, 4]`` for Real-ESRGAN, ``Literal[2]`` for CCSR) inside their set;
- what the schemas leave open comes from RUNWARE.md ("Unchanged and correct"): prompts of 2 to
  3000 characters, ``steps`` 1-100, ``CFGScale`` 0-50, ``numberResults`` 1-20, ``outputQuality``
  20-99, ``strength`` 0-1; input images PNG, JPG or WEBP only (its point 6); Clarity takes
  factor 2 (its point 1; its schema types the factor as a bare ``float``); sizes per model (its
  point 5: multiples of 8, of 16 for FLUX; fixed lists for some partner models);
- ``Authorization: Bearer <key>`` (401 ``invalidApiKey``), a JSON array of tasks, a UUID
  ``taskUUID`` that is never reused: a second task with a taken one is 409 ``conflictTaskUUID``
  and the first keeps running, its result fetched with ``getResponse`` (RUNWARE.md point 2).

Error bodies are ``{"errors": [{code, message, parameter?, taskType?, taskUUID?}]}``. Codes are
Runware's where a source names them (``invalidApiKey``, ``insufficientCredits``,
``conflictTaskUUID``, ``serviceUnavailable``, ``internalServerError``, ``rateLimitExceeded``,
``taskFailedOrNotFound``, ``unknownParameter``: RUNWARE.md and ``runware.errors``), otherwise the
``invalid<Parameter>`` / ``missing<Parameter>`` pattern ``runware.errors`` classifies as validation.

What it does: ``imageInference`` renders a deterministic picture from prompt and seed
(blended with ``inputs.seedImage`` by ``strength``); ``upscale`` resizes ``inputs.image`` with
Lanczos by ``upscaleFactor`` (at most 4096 px a side); ``imageUpload`` stores an image;
``modelSearch`` answers from a small catalogue shaped as the SDK's ``ModelSearchResult``. Input
images may be an ``imageUUID`` the fake handed out, a data URI, bare base64 or one of its image
URLs. ``deliveryMethod: "async"`` is acknowledged at once; the result is ready ``latency``
seconds later and ``getResponse`` answers ``processing`` (with ``progress``) until then.

How it misbehaves on request: see :class:`Fault`, :meth:`FakeRunware.inject` and ``latency``. Out
of process, ``GET /_fake/stats`` and ``POST /_fake/control`` do the same. :attr:`FakeRunware.billed`
counts the tasks that ran (what Runware would charge for).

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

from imagestudio.testing.fake_runware import oracle

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
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_DATA_URI: Final = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,", re.ASCII)
_FORMATS: Final = {
    "JPG": ("jpg", "JPEG", "image/jpeg"),
    "PNG": ("png", "PNG", "image/png"),
    "WEBP": ("webp", "WEBP", "image/webp"),
}
_INPUT_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP"})  # RUNWARE.md point 6
_MEDIA_TYPES: Final = {ext: media for ext, _, media in _FORMATS.values()}
_AUTH_ERROR: Final = {
    "code": "invalidApiKey",
    "message": "Invalid API key. Get one at https://my.runware.ai/signup",
    "parameter": "apiKey",
    "taskType": "authentication",
}
_RUNNING_TASKS: Final = frozenset({"imageInference", "upscale", "imageUpload"})
_TASK_TYPES: Final = (*sorted(_RUNNING_TASKS), "getResponse", "modelSearch")
# Ranges the schemas leave open: RUNWARE.md, "Unchanged and correct".
_INT_RANGES: Final = {
    "steps": (1, 100),
    "numberResults": (1, 20),
    "outputQuality": (20, 99),
    "seed": (1, MAX_SEED),
}
_NUMBER_RANGES: Final = {"CFGScale": (0.0, 50.0), "strength": (0.0, 1.0)}
_TEXT_FIELDS: Final = ("positivePrompt", "negativePrompt")
# Keys inside ``inputs``, which the schemas type as a bare object: Runware's model pages name
# ``inputs.image`` for upscalers and ``inputs.seedImage`` / ``inputs.referenceImages`` for inference.
_INPUT_KEYS: Final = {"upscale": ("image",), "imageInference": ("seedImage", "referenceImages")}


@dataclass(frozen=True)
class _SizeRule:
    low: int = 128
    high: int = 2048
    multiple: int = 8
    fixed: tuple[tuple[int, int], ...] = ()


# RUNWARE.md point 5: sizes are per model; multiples of 8 (16 for FLUX); fixed lists for some
# partner models (OpenAI's GPT Image 1 takes three sizes; BFL's FLUX1.1 [pro] 256-1440 in 32s).
_SIZE_RULES: Final = {
    "runware:100@1": _SizeRule(multiple=16),
    "runware:101@1": _SizeRule(multiple=16),
    "bfl:2@1": _SizeRule(low=256, high=1440, multiple=32),
    "openai:1@1": _SizeRule(fixed=((1024, 1024), (1536, 1024), (1024, 1536))),
}
_DEFAULT_SIZE_RULE: Final = _SizeRule()
_CLARITY: Final = "runware:500@1"

# A small model catalogue for ``modelSearch``, with the result fields of Runware's model records
# (the names of ``ModelUploadParams``: air, name, version, category, architecture, defaultSteps...).
_CATALOGUE: Final[tuple[dict[str, Any], ...]] = (
    {"air": "runware:100@1", "name": "FLUX.1 [schnell]", "version": "1", "category": "checkpoint",
     "architecture": "flux-1-schnell", "defaultSteps": 4, "defaultCFG": 1.0,
     "defaultWidth": 1024, "defaultHeight": 1024},
    {"air": "runware:101@1", "name": "FLUX.1 [dev]", "version": "1", "category": "checkpoint",
     "architecture": "flux-1-dev", "defaultSteps": 28, "defaultCFG": 3.5,
     "defaultWidth": 1024, "defaultHeight": 1024},
    {"air": "civitai:133005@357609", "name": "Juggernaut XL", "version": "v9", "category": "checkpoint",
     "architecture": "sdxl", "defaultSteps": 30, "defaultCFG": 6.0,
     "defaultWidth": 1024, "defaultHeight": 1024},
    {"air": "civitai:4384@128713", "name": "DreamShaper", "version": "8", "category": "checkpoint",
     "architecture": "sd-1-5", "defaultSteps": 25, "defaultCFG": 7.0,
     "defaultWidth": 512, "defaultHeight": 512},
    {"air": "bfl:2@1", "name": "FLUX1.1 [pro]", "version": "1", "category": "checkpoint",
     "architecture": "flux-1-1-pro"},
    {"air": "openai:1@1", "name": "GPT Image 1", "version": "1", "category": "checkpoint",
     "architecture": "gpt-image-1"},
)  # fmt: skip
_COMMUNITY: Final = re.compile(r"civitai:[0-9]+@[0-9]+")


class Fault(StrEnum):
    """Ways the fake can be told to misbehave; the value is the CLI spelling."""

    HANG = "hang"
    """Never answer: hold the request until the client gives up (or the fake stops)."""
    RATE_LIMITED = "429"
    """429 with Runware's error body."""
    RATE_LIMITED_RETRY_AFTER = "429-retry-after"
    """429 with Runware's error body and ``Retry-After: 2``."""
    SERVER_ERROR = "500"
    """500 with Runware's error body."""
    UNAVAILABLE = "503"
    """503 ``serviceUnavailable``."""
    FLAKY = "flaky"
    """Every other call fails with 503, starting with the first."""
    INSUFFICIENT_CREDITS = "402"
    """402 ``insufficientCredits`` for every task of the request."""
    ERROR_OBJECT = "error-object"
    """402 ``insufficientCredits`` in the single-error form ``{"error": {...}, "taskUUID"}``."""
    EMPTY_401 = "401-empty"
    """401 with an empty body (a bad key, as Runware's gateway reports it)."""
    NO_AVAILABLE_SERVER = "no-available-server"
    """400 ``noAvailableServer``: a transient code under a status that does not say so."""
    DROP_AFTER_BODY = "drop-after-body"
    """Read the body, start (and bill) the tasks, then break the connection without an answer."""
    ACCEPTED_502 = "502-after-accept"
    """Start (and bill) the tasks, then answer 502 from the gateway (no Runware body)."""
    ACCEPTED_504 = "504-after-accept"
    """Start (and bill) the tasks, then answer 504 from the gateway (no Runware body)."""
    TASK_ERROR = "task-error"
    """The task runs and fails: a ``status: "error"`` item (``contentPolicyViolation``)."""
    TASK_TRANSIENT = "task-transient"
    """The task runs and fails transiently: a ``status: "error"`` item (``timeoutProvider``)."""
    PARTIAL = "partial"
    """The first ``getResponse`` of the task is a partial item: ``imageUUID``, no image yet."""
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
    Fault.RATE_LIMITED: (429, "rateLimitExceeded", "Queue capacity exceeded. Please retry later."),
    Fault.RATE_LIMITED_RETRY_AFTER: (429, "rateLimitExceeded", "Too many requests. Retry later."),
    Fault.SERVER_ERROR: (500, "internalServerError", "An unexpected error occurred."),
    Fault.UNAVAILABLE: (503, "serviceUnavailable", "The service is temporarily unavailable."),
    Fault.FLAKY: (503, "serviceUnavailable", "The service is temporarily unavailable."),
    Fault.INSUFFICIENT_CREDITS: (402, "insufficientCredits", "Insufficient credits to run this task."),
    Fault.NO_AVAILABLE_SERVER: (400, "noAvailableServer", "No server is available for this model now."),
}
# Faults that let the tasks run (and be billed) before the answer goes wrong.
_AFTER_ACCEPT: Final = frozenset({Fault.DROP_AFTER_BODY, Fault.ACCEPTED_502, Fault.ACCEPTED_504})
# Faults that change what a task produces rather than the answer of one request.
_RESULT_FAULTS: Final = frozenset(
    {Fault.IMAGE_404, Fault.IMAGE_NOT_AN_IMAGE, Fault.TASK_ERROR, Fault.TASK_TRANSIENT, Fault.PARTIAL}
)
_TASK_FAILURES: Final = {
    Fault.TASK_ERROR: ("contentPolicyViolation", "The request was refused by the content policy."),
    Fault.TASK_TRANSIENT: ("timeoutProvider", "The provider did not answer in time."),
}


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int | None
    polls: bool
    seen: int = 0


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
    polls: int = 0


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


# --- checks beyond the schemas ------------------------------------------------------------------


def _check_schema(task: dict[str, Any]) -> None:
    found = oracle.violations(task)
    if found:
        first = found[0]
        raise _task_error(first.code, first.message, parameter=first.parameter)


def _check_ranges(task: dict[str, Any]) -> None:
    for name in _TEXT_FIELDS:
        value = task.get(name)
        if value is not None and not 2 <= len(value) <= 3000:
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be a string of 2 to 3000 characters.",
                parameter=name,
                type="string",
                min=2,
                max=3000,
            )
    for name, (low, high) in _INT_RANGES.items():
        value = task.get(name)
        if value is not None and not (isinstance(value, int) and low <= value <= high):
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be an integer between {low} and {high}.",
                parameter=name,
                type="integer",
                min=low,
                max=high,
            )
    for name, (low_f, high_f) in _NUMBER_RANGES.items():
        value = task.get(name)
        if value is not None and not low_f <= value <= high_f:
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be a number between {low_f:g} and {high_f:g}.",
                parameter=name,
                type="float",
                min=low_f,
                max=high_f,
            )
    delivery = task.get("deliveryMethod", "sync")
    if delivery not in ("sync", "async"):
        raise _task_error(
            "invalidDeliveryMethod",
            "Invalid value for 'deliveryMethod'. It must be 'sync' or 'async'.",
            parameter="deliveryMethod",
        )


def _check_size(task: dict[str, Any]) -> tuple[int, int]:
    model = task.get("model", "")
    rule = _SIZE_RULES.get(model, _DEFAULT_SIZE_RULE)
    width, height = task["width"], task["height"]
    if rule.fixed:
        if (width, height) not in rule.fixed:
            sizes = ", ".join(f"{w}x{h}" for w, h in rule.fixed)
            raise _task_error(
                "invalidWidth",
                f"Invalid size for model {model}. It must be one of {sizes}.",
                parameter="width",
            )
        return width, height
    for name, value in (("width", width), ("height", height)):
        if not rule.low <= value <= rule.high or value % rule.multiple:
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be an integer between {rule.low} and {rule.high}"
                f" and a multiple of {rule.multiple}.",
                parameter=name,
                type="integer",
                min=rule.low,
                max=rule.high,
                multiplier=rule.multiple,
            )
    return width, height


def _check_model(task: dict[str, Any]) -> None:
    model = task.get("model")
    if model is None:
        return
    known = oracle.known_models()
    if model in known:
        expected = known[model]
        if expected != task["taskType"]:
            raise _task_error(
                "invalidModel",
                f"The model {model} runs {expected} tasks, not {task['taskType']}.",
                parameter="model",
            )
        return
    if task["taskType"] == "imageInference" and _COMMUNITY.fullmatch(model):
        return
    raise _task_error(
        "invalidModel", f"Invalid value for 'model': there is no model {model!r}.", parameter="model"
    )


def _upscale_factor(task: dict[str, Any]) -> int:
    value = task.get("upscaleFactor", 2)
    if task["model"] == _CLARITY and value != 2:  # RUNWARE.md point 1: Clarity takes 2
        raise _task_error(
            "invalidUpscaleFactor",
            "Invalid value for 'upscaleFactor'. It must be 2.",
            parameter="upscaleFactor",
        )
    return int(value)


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
    """The extension under which the fake serves ``data``; ``None`` unless it is a whole PNG, JPG or WEBP."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pillow_format = image.format
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if pillow_format not in _INPUT_FORMATS:
        return None
    extensions = {pillow: ext for ext, pillow, _ in _FORMATS.values()}
    return extensions[pillow_format]


# --- the server ---------------------------------------------------------------------------------


class FakeRunware:
    """A fake Runware: an ASGI app plus the uvicorn server thread that serves it.

    Everything a test reads or sets (``latency``, :meth:`inject`, ``billed``...) is guarded by
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

    def __repr__(self) -> str:
        return f"FakeRunware(url={self.url!r})"

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
            log_level="critical",
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
        fault = self._record_call(body, document)
        if fault is Fault.HANG:
            if not await self._hold(receive):
                await _send_json(
                    send, 503, {"errors": [{"code": "serviceUnavailable", "message": "Stopping."}]}
                )
            return
        if fault is Fault.EMPTY_401:
            await _send(send, 401, b"", "text/plain")
            return
        if fault in _STATUS_FAULTS:
            status, code, message = _STATUS_FAULTS[fault]
            errors = [{"code": code, "message": message, **_task_ids(task)} for task in _tasks_of(document)]
            extra = [(b"retry-after", b"2")] if fault is Fault.RATE_LIMITED_RETRY_AFTER else []
            await _send_json(
                send, status, {"errors": errors or [{"code": code, "message": message}]}, headers=extra
            )
            return
        if fault is Fault.ERROR_OBJECT:
            first = next(iter(_tasks_of(document)), {})
            error = {"code": "insufficientCredits", "message": "Insufficient credits to run this task."}
            await _send_json(send, 402, {"error": error, **_task_ids(first)})
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
        status, answer = await self._answer(scope, document, fault=fault)
        if fault is Fault.DROP_AFTER_BODY:
            # The tasks ran; the answer breaks off: headers promise more than the body carries.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"data": [', "more_body": False})
            return
        if fault in (Fault.ACCEPTED_502, Fault.ACCEPTED_504):
            gateway = 502 if fault is Fault.ACCEPTED_502 else 504
            await _send(send, gateway, b"<html><body>Bad gateway</body></html>", "text/html")
            return
        await _send_json(send, status, answer)

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
        self, scope: Scope, document: Any, *, fault: Fault | None
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
                data.extend(await self._run_task(task, base_url, fault))
            except _TaskError as failure:
                statuses.append(failure.status)
                errors.append({**failure.body, **_task_ids(task)})
        if errors:
            answer: dict[str, Any] = {"errors": errors}
            if data:
                answer["data"] = data
            return statuses[0], answer
        return 200, {"data": data}

    async def _run_task(self, task: Any, base_url: str, fault: Fault | None) -> list[dict[str, Any]]:
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
        if not isinstance(task_uuid, str) or not _UUID.fullmatch(task_uuid):
            raise _task_error("invalidTaskUUID", "The taskUUID must be a UUID string.", parameter="taskUUID")
        task_uuid = task_uuid.lower()
        if task_type == "getResponse":
            _check_schema(task)
            return self._poll(task_uuid, fault)
        if task_type == "modelSearch":
            _check_schema(task)
            return [_search(task)]
        with self._lock:
            reused = task_uuid in self._seen_uuids
            self._seen_uuids.add(task_uuid)
        if reused:
            raise _task_error(
                "conflictTaskUUID",
                "A task with this taskUUID already exists; fetch its result with getResponse.",
                parameter="taskUUID",
                status=409,
            )
        _check_schema(task)
        if task_type == "imageUpload":
            return [await self._upload(task, base_url)]
        _check_model(task)
        _check_ranges(task)
        run = await self._prepare(task, base_url)
        delivery = task.get("deliveryMethod", "sync")
        job = _Job(task_type=task_type, partial=fault is Fault.PARTIAL)
        with self._lock:
            self._jobs[task_uuid] = job
            self._billed[task_type] += 1
            latency = self._latency
        if delivery == "async":
            background = asyncio.create_task(self._complete(job, task, run, base_url, fault, latency))
            self._background.add(background)
            background.add_done_callback(self._background.discard)
            return [{"taskType": task_type, "taskUUID": task["taskUUID"]}]
        await self._complete(job, task, run, base_url, fault, latency)
        if job.error is not None:
            raise _TaskError(400, dict(job.error))
        assert job.items is not None
        return job.items

    async def _complete(
        self,
        job: _Job,
        task: dict[str, Any],
        run: Callable[[], list[tuple[bytes, dict[str, Any]]]],
        base_url: str,
        fault: Fault | None,
        latency: float,
    ) -> None:
        if latency:
            await asyncio.sleep(latency)
        if fault in _TASK_FAILURES:
            code, message = _TASK_FAILURES[fault]
            job.error = {"code": code, "message": message}
            return
        produced = await asyncio.to_thread(run)
        output_type, output_format = task.get("outputType", "URL"), task.get("outputFormat", "JPG")
        items = []
        for data, extra in produced:
            item = self._result(task, data, output_type, output_format, base_url, fault)
            item.update(extra)
            if task.get("includeCost"):
                item["cost"] = UPSCALE_COST if task["taskType"] == "upscale" else INFERENCE_COST
            items.append(item)
        job.items = items

    def _poll(self, task_uuid: str, fault: Fault | None) -> list[dict[str, Any]]:
        with self._lock:
            job = self._jobs.get(task_uuid)
        if job is None:
            raise _task_error(
                "taskFailedOrNotFound", "No task has this taskUUID.", parameter="taskUUID", status=400
            )
        job.polls += 1
        ids = {"taskType": job.task_type, "taskUUID": task_uuid}
        if job.error is not None:
            return [{**ids, "status": "error", "error": dict(job.error)}]
        if job.items is None:
            return [{**ids, "status": "processing", "progress": min(90, 10 * job.polls)}]
        if job.partial and job.polls == 1:
            # Runware's clients treat an item with an imageUUID but no image as not yet finished.
            return [{**ids, "status": "processing", "progress": 95, "imageUUID": job.items[0]["imageUUID"]}]
        return [{**item, "status": "success"} for item in job.items]

    async def _prepare(
        self, task: dict[str, Any], base_url: str
    ) -> Callable[[], list[tuple[bytes, dict[str, Any]]]]:
        """Check what needs the task's images and return the work that makes its results."""
        inputs = task.get("inputs") or {}
        allowed = _INPUT_KEYS[task["taskType"]]
        for key in inputs:
            if key not in allowed:
                raise _task_error(
                    "unknownParameter",
                    f"'inputs.{key}' is not an input of this task.",
                    parameter=f"inputs.{key}",
                )
        output_format = task.get("outputFormat", "JPG")
        quality = task.get("outputQuality", 95)
        if task["taskType"] == "upscale":
            source = await self._image_parameter(inputs, "image", base_url, required=True)
            assert source is not None
            factor = _upscale_factor(task)
            source_uuid = self._store(source.data, source.extension)

            def upscale() -> list[tuple[bytes, dict[str, Any]]]:
                data = _upscaled(source.data, factor, output_format, quality)
                return [(data, {"inputImageUUID": source_uuid})]

            return upscale
        prompt = task["positivePrompt"]
        width, height = _check_size(task)
        seed = task.get("seed", secrets.randbelow(MAX_SEED) + 1)
        count = task.get("numberResults", 1)
        seed_image = await self._image_parameter(inputs, "seedImage", base_url, required=False)
        references = inputs.get("referenceImages", [])
        for reference in references if isinstance(references, list) else [references]:
            await self._image_value(reference, "inputs.referenceImages", base_url)
        strength = float(task.get("strength", 0.8))

        def infer() -> list[tuple[bytes, dict[str, Any]]]:
            results = []
            for index in range(count):
                item_seed = min(seed + index, MAX_SEED)
                if seed_image is None:
                    data = _rendered(prompt, item_seed, width, height, output_format, quality)
                else:
                    data = _render(
                        prompt, item_seed, width, height, seed_image.data, strength, output_format, quality
                    )
                results.append((data, {"seed": item_seed}))
            return results

        return infer

    async def _upload(self, task: dict[str, Any], base_url: str) -> dict[str, Any]:
        image = await self._image_value(task["image"], "image", base_url)
        image_uuid = self._store(image.data, image.extension)
        with self._lock:
            self._billed["imageUpload"] += 1
        return {
            "taskType": task["taskType"],
            "taskUUID": task["taskUUID"],
            "imageUUID": image_uuid,
            "imageURL": f"{base_url}/image/{image_uuid}.{image.extension}",
        }

    def _result(
        self,
        task: dict[str, Any],
        data: bytes,
        output_type: str,
        output_format: str,
        base_url: str,
        fault: Fault | None,
    ) -> dict[str, Any]:
        extension, _, media_type = _FORMATS[output_format]
        if fault is Fault.IMAGE_404:
            image_uuid = str(uuid.uuid4())
        elif fault is Fault.IMAGE_NOT_AN_IMAGE:
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
        self, inputs: dict[str, Any], name: str, base_url: str, *, required: bool
    ) -> _Image | None:
        value = inputs.get(name)
        if value is None:
            if required:
                raise _task_error(
                    f"missing{_capitalised(name)}",
                    f"Missing required parameter 'inputs.{name}'.",
                    parameter=f"inputs.{name}",
                )
            return None
        return await self._image_value(value, f"inputs.{name}", base_url)

    async def _image_value(self, value: Any, parameter: str, base_url: str) -> _Image:
        """An input image given as an image UUID, a data URI, bare base64 or one of our image URLs."""
        leaf = parameter.rsplit(".", 1)[-1]
        invalid = _task_error(
            f"invalid{_capitalised(leaf)}",
            f"Invalid value for '{parameter}'. Send an image UUID, a data URI, base64 data or a public"
            " image URL of a PNG, JPG or WEBP image.",
            parameter=parameter,
        )
        if not isinstance(value, str) or not value:
            raise invalid
        data: bytes | None
        if _UUID.fullmatch(value):
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
        "faults"?: [{"fault": name, "times"?: n, "polls"?: bool}]}``; answers with :meth:`stats`.
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
                self.inject(Fault(entry["fault"]), entry.get("times"), polls=bool(entry.get("polls")))
        except (ValueError, TypeError, KeyError) as error:
            await _send_json(send, 400, {"errors": [{"code": "invalidControl", "message": str(error)}]})
            return
        await _send_json(send, 200, self.stats())


def _search(task: dict[str, Any]) -> dict[str, Any]:
    """A ``modelSearch`` answer over the fake's catalogue (``search`` matches AIR or name)."""
    search = str(task.get("search", "")).lower()
    found = [
        dict(model)
        for model in _CATALOGUE
        if (not search or search in model["air"].lower() or search in model["name"].lower())
        and task.get("architecture") in (None, model.get("architecture"))
        and task.get("category") in (None, model.get("category"))
    ]
    offset, limit = task.get("offset", 0), task.get("limit", 20)
    return {
        "taskType": "modelSearch",
        "taskUUID": task["taskUUID"],
        "totalResults": len(found),
        "results": found[offset : offset + limit],
    }


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


async def _send(
    send: Send, status: int, body: bytes, content_type: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(
    send: Send, status: int, document: Any, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await _send(send, status, json.dumps(document).encode("utf-8"), "application/json", headers)


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
