"""The shared life of one generation task, used by every generating use case.

Rules:
- progress goes ``queued`` (0) -> ``generating`` (0..99, never down) -> exactly one of
  ``completed`` (100, with the generation id) or ``failed`` (with the error code);
- the image is stored before its row is written; if the row cannot be written the file is
  removed again, so a failure leaves neither a file nor a row;
- the input image of image-to-image and upscale is resolved here (CONTRACT.md section 5).
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from imagestudio.domain.errors import InvalidParameters, StudioError
from imagestudio.domain.model import (
    MAX_SEED,
    GeneratedImage,
    Generation,
    SourceImage,
    StoredImage,
    TaskEvent,
    TaskStatus,
)
from imagestudio.domain.ports import (
    Clock,
    GenerationRepository,
    ImageGenerator,
    ImageInspector,
    ImageStorage,
    ProgressCallback,
    SettingsRepository,
    TaskEvents,
)

__all__ = ["GenerationPipeline", "ProgressReporter", "SourceResolver", "new_task_id", "random_seed"]

GENERATED_PREFIX = "/generated/"
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def new_task_id() -> str:
    return str(uuid.uuid4())


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED) + 1


class ProgressReporter:
    """Turns an engine's ``(done, total)`` calls into monotone task events.

    Engines may call it from a worker thread; the events port is thread-safe by contract.
    """

    def __init__(self, task_id: str, events: TaskEvents) -> None:
        self.task_id = task_id
        self._events = events
        self._lock = threading.Lock()
        self._progress = 0
        self._finished = False

    def queued(self) -> None:
        self._emit(TaskStatus.QUEUED, 0)

    def started(self) -> None:
        self._emit(TaskStatus.GENERATING, 0)

    def step(self, done: int, total: int) -> None:
        """An engine's callback: ``done`` of ``total`` units of work are finished."""
        if total <= 0:
            return
        fraction = min(max(done / total, 0.0), 1.0)
        self._emit(TaskStatus.GENERATING, min(99, int(fraction * 99)))

    def completed(self, generation_id: int) -> None:
        self._emit(TaskStatus.COMPLETED, 100, generation_id=generation_id)

    def failed(self, error: StudioError) -> None:
        self._emit(TaskStatus.FAILED, None, error=error.message, code=error.code)

    def _emit(
        self,
        status: TaskStatus,
        progress: int | None,
        *,
        generation_id: int | None = None,
        error: str | None = None,
        code: str | None = None,
    ) -> None:
        with self._lock:
            if self._finished:
                return
            if progress is not None:
                if status is TaskStatus.GENERATING and progress <= self._progress and progress != 0:
                    return  # nothing new to say; progress never repeats or goes down
                self._progress = max(self._progress, progress)
            if status.is_terminal:
                self._finished = True
            event = TaskEvent(
                task_id=self.task_id,
                status=status,
                progress=self._progress,
                generation_id=generation_id,
                error=error,
                code=code,
            )
            self._events.publish(event)


@dataclass(frozen=True, kw_only=True)
class SourceResolver:
    """Reads an input image named by a client (CONTRACT.md section 5).

    Rules:
    - ``data:image/...;base64,`` URIs are decoded;
    - ``/generated/<key>`` names an earlier generation (or a file in the current storage folder);
    - any other string is a path inside the current storage folder;
    - URLs of any scheme, ``..`` and paths leaving storage are refused with 400, missing files are 404;
    - the bytes must decode as an image of at most 64,000,000 pixels.
    """

    storage: ImageStorage
    repository: GenerationRepository
    settings: SettingsRepository
    inspector: ImageInspector

    async def __call__(self, reference: str, field_name: str) -> SourceImage:
        if reference.startswith("data:"):
            data = await self.inspector.decode_data_uri(reference, field_name)
            return await self.inspector.inspect(data, field_name)
        generation: Generation | None = None
        if reference.startswith(GENERATED_PREFIX):
            key = reference[len(GENERATED_PREFIX) :]
            _check_key(key, field_name)
            generation = await self.repository.get_by_key(key)
            if generation is None:
                data = await self._read_inside_storage(key, field_name)
            else:
                data = await self.storage.read(generation.image)
        else:
            if _URL_SCHEME.match(reference) and not _looks_like_windows_drive(reference):
                raise InvalidParameters(
                    f"{field_name} must be a /generated/ path, a path inside storage or a data: URI",
                    field=field_name,
                )
            data = await self._read_inside_storage(reference, field_name)
            normalized = reference.replace("\\", "/").lstrip("./")
            if normalized and ".." not in normalized.split("/"):
                generation = await self.repository.get_by_key(normalized)
        source = await self.inspector.inspect(data, field_name)
        return replace(source, generation=generation)

    async def _read_inside_storage(self, reference: str, field_name: str) -> bytes:
        settings = await self.settings.get()
        try:
            return await self.storage.read_reference(reference, settings.storage_path)
        except InvalidParameters as error:
            raise InvalidParameters(error.message, field=field_name) from error


def _looks_like_windows_drive(reference: str) -> bool:
    return len(reference) >= 3 and reference[0].isalpha() and reference[1] == ":" and reference[2] in "\\/"


def _check_key(key: str, field_name: str) -> None:
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or "\x00" in key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidParameters(f"{field_name} is not a valid image path", field=field_name)


Produce = Callable[[ProgressCallback], Awaitable[GeneratedImage]]
Build = Callable[[GeneratedImage, StoredImage], Generation]


@dataclass(frozen=True, kw_only=True)
class GenerationPipeline:
    """Runs one generation task from queued to its single terminal event."""

    generator: ImageGenerator
    storage: ImageStorage
    repository: GenerationRepository
    settings: SettingsRepository
    events: TaskEvents
    clock: Clock
    new_task_id: Callable[[], str] = field(default=new_task_id)

    async def run(self, *, task_id: str, produce: Produce, build: Build) -> Generation:
        reporter = ProgressReporter(task_id, self.events)
        reporter.queued()
        try:
            reporter.started()
            image = await produce(reporter.step)
            settings = await self.settings.get()
            stored = await self.storage.save(image.data, image.extension, settings.storage_path)
            try:
                generation = await self.repository.add(build(image, stored))
            except BaseException:
                await self.storage.delete(stored)
                raise
        except StudioError as error:
            reporter.failed(error)
            raise
        except BaseException as error:
            reporter.failed(StudioError(f"Generation failed: {type(error).__name__}"))
            raise
        assert generation.id is not None
        reporter.completed(generation.id)
        return generation
