"""Hand-written fakes of every port, for domain tests. They keep state; tests assert on it.

:func:`fake_services` wires them through the production wiring, ``build_services``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import mimetypes
import re
import struct
import uuid
import zlib
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from typing import Any

from imagestudio.bootstrap import Services, build_services
from imagestudio.domain.errors import InvalidParameters, NotFound, StorageError, StudioError
from imagestudio.domain.model import (
    FoundMetadata,
    FoundParameters,
    GeneratedImage,
    Generation,
    GenerationPatch,
    HistoryPage,
    HistoryQuery,
    HistorySort,
    ImageSpec,
    MetadataSource,
    Provenance,
    Settings,
    SettingsPatch,
    SourceImage,
    StoredImage,
    TagCount,
    TagQuery,
    TaskEvent,
)
from imagestudio.domain.ports import ProgressCallback, StoredFile, StoredStream
from imagestudio.domain.values import is_air_model_id


def tiny_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    """A valid, solid-colour PNG built with the standard library only."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InvalidParameters("not an image", field="image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


class FakeImageGenerator:
    """Makes solid PNGs of the requested size; can be told to fail."""

    name = "fake"
    default_concurrency = 64
    """As a network engine: many at once."""

    def __init__(
        self,
        *,
        fail_with: StudioError | None = None,
        steps_reported: int = 4,
        model_ids: Callable[[str], bool] = is_air_model_id,
    ) -> None:
        self.fail_with = fail_with
        self.steps_reported = steps_reported
        self.model_ids = model_ids
        self.calls: list[tuple[str, object]] = []

    def accepts_model_id(self, model_id: str) -> bool:
        return self.model_ids(model_id)

    def _progress(self, progress: ProgressCallback) -> None:
        for done in range(1, self.steps_reported + 1):
            progress(done, self.steps_reported)

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        self.calls.append(("text-to-image", spec))
        self._progress(progress)
        if self.fail_with:
            raise self.fail_with
        return GeneratedImage(
            data=tiny_png(spec.width, spec.height),
            extension="png",
            width=spec.width,
            height=spec.height,
            seed=spec.seed,
        )

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage:
        self.calls.append(("image-to-image", (spec, source, strength)))
        self._progress(progress)
        if self.fail_with:
            raise self.fail_with
        return GeneratedImage(
            data=tiny_png(spec.width, spec.height),
            extension="png",
            width=spec.width,
            height=spec.height,
            seed=spec.seed,
        )

    async def upscale(self, source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
        self.calls.append(("upscale", (source, scale)))
        self._progress(progress)
        if self.fail_with:
            raise self.fail_with
        width, height = source.width * scale, source.height * scale
        return GeneratedImage(data=tiny_png(width, height), extension="png", width=width, height=height)


class FakeImageInspector:
    """Understands PNG headers only, which is all the fakes produce."""

    async def inspect(self, data: bytes, field_name: str = "image") -> SourceImage:
        try:
            width, height = png_size(data)
        except InvalidParameters as error:
            raise InvalidParameters(f"{field_name} is not an image", field=field_name) from error
        return SourceImage(data=data, width=width, height=height, format="png")

    async def decode_data_uri(self, uri: str, field_name: str) -> bytes:
        prefix, _, payload = uri.partition(",")
        if not prefix.startswith("data:image/") or not prefix.endswith(";base64"):
            raise InvalidParameters("bad data URI", field=field_name)
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as error:
            raise InvalidParameters("bad base64", field=field_name) from error


class FakeThumbnailMaker:
    """A "thumbnail" that names the image it was made from (``thumbnail_of``); can be told to fail.

    Bytes that do not start as a PNG, JPEG, WebP or GIF file does are ``StorageError``, as the
    Pillow maker answers for bytes it cannot decode.
    """

    def __init__(self, *, fail_with: StudioError | None = None) -> None:
        self.fail_with = fail_with
        self.made = 0

    @staticmethod
    def thumbnail_of(data: bytes) -> bytes:
        return b"RIFF-fake-WEBP:" + hashlib.sha256(data).hexdigest().encode()

    async def thumbnail(self, data: bytes) -> bytes:
        if self.fail_with is not None:
            raise self.fail_with
        if not (data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8")) or data[8:12] == b"WEBP"):
            raise StorageError("Could not make the thumbnail: the image could not be decoded")
        self.made += 1
        return self.thumbnail_of(data)


class FakeImageAnnotator:
    """Appends a marker naming the task to the bytes (so a test sees what was stored came through
    it) and reads that marker back; keeps every provenance it was given."""

    MARK = b"#provenance:"

    def __init__(self) -> None:
        self.annotated: list[Provenance] = []

    async def annotate(self, data: bytes, provenance: Provenance) -> bytes:
        self.annotated.append(provenance)
        return data + self.MARK + provenance.task_id.encode()

    async def read(self, data: bytes) -> list[FoundMetadata]:
        _, mark, task_id = data.rpartition(self.MARK)
        if not mark:
            return []
        text = task_id.decode()
        return [
            FoundMetadata(
                source=MetadataSource.IMAGESTUDIO, parameters=FoundParameters(task_id=text), raw=text
            )
        ]


OLD_FILE_TIME = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
"""When the fake storage says its files were written, unless a test plants one with another time."""


async def _chunks(data: bytes, size: int = 4096) -> AsyncGenerator[bytes, None]:
    """``data`` a few KiB at a time, as a storage that streams would hand it out."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class InMemoryImageStorage:
    """Files in a dict keyed by (root, key); a storage path is its own root.

    Keys containing ``.tmp-`` are temporaries (what a write interrupted mid-way leaves). Keys
    of the form ``<folder>/<32 hex>.<ext>`` are the ones it owns; an image's thumbnail is kept
    under ``StoredImage.thumbnail``. ``outside`` lists roots that lie outside the storage roots:
    nothing is written, scanned or deleted there. ``fail_writes`` fails every write,
    ``fail_thumbnail_writes`` only those of thumbnails. ``links``: hand out URLs (``link``) as an
    object store told to redirect does, ``https://storage.example/<root>/<key>?signed``.
    """

    LINK_BASE = "https://storage.example/"

    def __init__(
        self,
        *,
        fail_writes: bool = False,
        fail_thumbnail_writes: bool = False,
        outside: tuple[str, ...] = (),
        links: bool = False,
    ) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.modified: dict[tuple[str, str], dt.datetime] = {}
        self.fail_writes = fail_writes
        self.fail_thumbnail_writes = fail_thumbnail_writes
        self.writable_check_fails = False
        self.outside = set(outside)
        self.max_read_bytes = 32 * 1024 * 1024
        self.links = links

    async def save(self, data: bytes, extension: str, storage_path: str) -> StoredImage:
        from imagestudio.domain.errors import InvalidStoragePath, StorageError

        if storage_path in self.outside:
            raise InvalidStoragePath("The storage folder lies outside the storage roots")
        if self.fail_writes:
            raise StorageError("Could not write the image: the disk is full")
        image = StoredImage(key=f"day/{uuid.uuid4().hex}.{extension}", root=storage_path)
        self.plant(image, data)
        return image

    async def save_thumbnail(self, image: StoredImage, data: bytes) -> StoredImage:
        from imagestudio.domain.errors import InvalidStoragePath

        if image.root in self.outside:
            raise InvalidStoragePath("The storage folder lies outside the storage roots")
        if self.fail_writes or self.fail_thumbnail_writes:
            raise StorageError("Could not write the thumbnail: the disk is full")
        if not self.owns(image.key):
            raise StorageError("Refusing to store a thumbnail for a file this storage did not name")
        self.plant(image.thumbnail, data)
        return image.thumbnail

    def plant(self, image: StoredImage, data: bytes = b"x", modified_at: dt.datetime = OLD_FILE_TIME) -> None:
        """Put a file in place as if something had written it at ``modified_at``."""
        self.files[(image.root, image.key)] = data
        self.modified[(image.root, image.key)] = modified_at

    def own_key(self, extension: str = "png") -> str:
        """A fresh key of the form this storage owns."""
        return f"day/{uuid.uuid4().hex}.{extension}"

    async def read(self, image: StoredImage) -> bytes:
        try:
            data = self.files[(image.root, image.key)]
        except KeyError:
            raise NotFound("Image not found") from None
        if len(data) > self.max_read_bytes:
            raise InvalidParameters("The image file is too large")
        return data

    def owns(self, key: str) -> bool:
        return re.fullmatch(r"[^/]+/[0-9a-f]{32}\.(?:jpg|png|webp)", key) is not None

    async def read_reference(self, key: str, storage_path: str) -> bytes:
        if not self.owns(key):
            raise InvalidParameters("Not the name of an image this storage made")
        return await self.read(StoredImage(key=key, root=storage_path))

    async def delete(self, image: StoredImage) -> None:
        if image.root in self.outside:
            return
        doomed = [image, image.thumbnail] if self.owns(image.key) else [image]
        for file in doomed:
            self.files.pop((file.root, file.key), None)
            self.modified.pop((file.root, file.key), None)

    async def open(self, image: StoredImage) -> StoredStream:
        try:
            data = self.files[(image.root, image.key)]
        except KeyError:
            raise NotFound("Image not found") from None
        return StoredStream(
            size=len(data),
            media_type=mimetypes.guess_type(image.key)[0] or "application/octet-stream",
            chunks=_chunks(data),
            modified_at=self.modified.get((image.root, image.key), OLD_FILE_TIME),
        )

    async def local_path(self, image: StoredImage) -> str | None:
        """``None``, as for an object store: this storage keeps no files."""
        await self.open(image)  # NotFound as for open
        return None

    async def link(self, image: StoredImage) -> str | None:
        if not self.links:
            return None
        await self.open(image)  # NotFound as for open
        return f"{self.LINK_BASE}{image.root}/{image.key}?signed"

    def location(self, root: str) -> str:
        return root

    async def ensure_writable(self, storage_path: str) -> str:
        from imagestudio.domain.errors import InvalidStoragePath

        if storage_path in self.outside:
            raise InvalidParameters("storagePath must lie inside the storage roots", field="storagePath")
        if self.writable_check_fails:
            raise InvalidStoragePath("Storage folder cannot be created or written")
        return storage_path

    async def root_of(self, storage_path: str) -> str:
        return storage_path

    async def confined(self, root: str) -> bool:
        return root not in self.outside

    async def scan(self, root: str) -> list[StoredFile]:
        from imagestudio.domain.errors import StorageError

        if root in self.outside:
            raise StorageError("Refusing to scan a folder outside the storage roots")
        return [
            StoredFile(
                image=StoredImage(key=key, root=root),
                temporary=".tmp-" in key,
                size=len(data),
                modified_at=self.modified.get((root, key), OLD_FILE_TIME),
            )
            for (file_root, key), data in sorted(self.files.items())
            if file_root == root
        ]


class InMemoryGenerationRepository:
    def __init__(self) -> None:
        self.rows: dict[int, Generation] = {}
        self._next_id = 1
        self.fail_adds: StudioError | None = None

    async def add(self, generation: Generation) -> Generation:
        if self.fail_adds is not None:
            raise self.fail_adds
        stored = generation.with_id(self._next_id)
        self.rows[self._next_id] = stored
        self._next_id += 1
        return stored

    async def add_many(self, generations: Sequence[Generation]) -> list[Generation]:
        """All or nothing, like one transaction: a failure adds no row."""
        if self.fail_adds is not None:
            raise self.fail_adds
        return [await self.add(generation) for generation in generations]

    async def get(self, generation_id: int) -> Generation | None:
        return self.rows.get(generation_id)

    async def get_by_key(self, key: str) -> Generation | None:
        return next((g for g in self.rows.values() if g.image.key == key), None)

    async def list(self, query: HistoryQuery) -> HistoryPage:
        """The reference semantics of ``HistoryQuery``: filter, order, count, then cut a page."""
        matching = [g for g in self.rows.values() if query.matches(g)]
        matching.sort(key=query.sort_key, reverse=query.sort is HistorySort.NEWEST)
        after = [g for g in matching if query.follows_cursor(g)]
        return query.page(after[query.offset : query.offset + query.limit + 1], total=len(matching))

    async def delete(self, generation_id: int) -> Generation | None:
        return self.rows.pop(generation_id, None)

    async def update(self, generation_id: int, patch: GenerationPatch) -> Generation | None:
        current = self.rows.get(generation_id)
        if current is None:
            return None
        self.rows[generation_id] = patch.apply(current)
        return self.rows[generation_id]

    async def count_tags(self, query: TagQuery) -> list[TagCount]:
        """The reference semantics of ``TagQuery``: count, keep the matching, most used first."""
        counts: dict[str, int] = {}
        for generation in self.rows.values():
            for tag in generation.tags:
                counts[tag] = counts.get(tag, 0) + 1
        ordered = sorted(
            (item for item in counts.items() if query.matches(item[0])), key=lambda t: (-t[1], t[0])
        )
        return [TagCount(tag=tag, count=count) for tag, count in ordered[: query.limit]]


class InMemorySettingsRepository:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    async def get(self) -> Settings:
        return self.settings

    async def update(self, patch: SettingsPatch) -> Settings:
        self.settings = patch.apply(self.settings)
        return self.settings


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def publish(self, event: TaskEvent) -> None:
        self.events.append(event)

    def wants_previews(self, task_id: str) -> bool:
        return self.previews

    previews = False

    def for_task(self, task_id: str) -> list[TaskEvent]:
        return [e for e in self.events if e.task_id == task_id]


class SteppingClock:
    """A clock that advances one second per reading, so creation times are distinct and ordered."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or dt.datetime(2026, 1, 2, 10, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        self.current += dt.timedelta(seconds=1)
        return self.current


def with_settings(repo: InMemorySettingsRepository, **changes: object) -> None:
    repo.settings = replace(repo.settings, **changes)  # type: ignore[arg-type]


class InMemoryTaskRepository:
    """Tasks in a dict; ``orphans`` are the ids a restart should treat as interrupted."""

    def __init__(self) -> None:
        from imagestudio.domain.tasks import Task

        self.rows: dict[str, Task] = {}
        self.history: list[tuple[str, str]] = []

    async def create(self, task: Any) -> None:
        from imagestudio.domain.errors import Conflict

        if task.id in self.rows:
            raise Conflict(f"Task {task.id} already exists", details={"field": "taskId"})
        self.rows[task.id] = task
        self.history.append((task.id, task.status.value))

    async def update(self, task: Any) -> None:
        self.rows[task.id] = task
        self.history.append((task.id, task.status.value))

    async def get(self, task_id: str) -> Any:
        return self.rows.get(task_id)

    async def recent(self, limit: int) -> list[Any]:
        finished = [t for t in self.rows.values() if t.finished_at is not None]
        finished.sort(key=lambda t: t.finished_at, reverse=True)
        return finished[:limit]

    async def interrupt_orphans(self, now: dt.datetime) -> list[Any]:
        from imagestudio.domain.model import TaskStatus

        interrupted = []
        for task_id, task in list(self.rows.items()):
            if not task.status.is_terminal:
                interrupted.append(task)
                self.rows[task_id] = replace(
                    task,
                    status=TaskStatus.FAILED,
                    error_code="INTERRUPTED",
                    error_message="The server stopped before this task finished",
                    finished_at=now,
                    images=(),
                )
        return interrupted


class InMemoryIdempotencyStore:
    def __init__(self) -> None:
        from imagestudio.domain.ports import IdempotencyRecord

        self.records: dict[str, IdempotencyRecord] = {}

    async def claim(
        self, key: str, fingerprint: str, task_id: str, now: dt.datetime, ttl: dt.timedelta
    ) -> Any:
        from imagestudio.domain.ports import IdempotencyRecord

        existing = self.records.get(key)
        if existing is not None and now - existing.created_at <= ttl:
            return existing
        self.records[key] = IdempotencyRecord(
            key=key, fingerprint=fingerprint, task_id=task_id, created_at=now
        )
        return None

    async def release(self, key: str) -> None:
        self.records.pop(key, None)


def fake_services(**overrides: Any) -> Services:
    """The production wiring, :func:`imagestudio.bootstrap.build_services`, over fresh fakes of every
    port; ``overrides`` replace a fake or set an option (``clock=``, ``max_running=``, ...).

    The tests' counterpart of ``bootstrap(config)``: one wiring, so a use case a test calls is
    built as the server builds it.
    """
    ports: dict[str, Any] = {
        "generator": FakeImageGenerator(),
        "storage": InMemoryImageStorage(),
        "repository": InMemoryGenerationRepository(),
        "settings": InMemorySettingsRepository(),
        "inspector": FakeImageInspector(),
        "thumbnails": FakeThumbnailMaker(),
        "annotator": FakeImageAnnotator(),
        "task_repository": InMemoryTaskRepository(),
        "idempotency": InMemoryIdempotencyStore(),
    }
    return build_services(**(ports | overrides))


class InMemorySharedQueue:
    """``SharedQueue`` in memory: the jobs in a list, the rows in an :class:`InMemoryTaskRepository`.

    A test plays the worker: :meth:`take` hands it the next job, which it runs with
    ``services.worker(job)``; ``stalled_ids`` are what :meth:`sweep` finds (once).
    """

    def __init__(self, tasks: InMemoryTaskRepository, keys: InMemoryIdempotencyStore, events: Any) -> None:
        self.tasks, self.keys, self.events = tasks, keys, events
        self.todo: list[Any] = []
        self.doing: set[str] = set()
        self.aborted: list[str] = []
        self.stalled_ids: list[str] = []

    async def enqueue(
        self, job: Any, task: Any, idempotency: Any, *, max_queued: int, now: dt.datetime
    ) -> Any:
        from imagestudio.domain.errors import Conflict, QueueFull
        from imagestudio.domain.model import TaskEvent, TaskStatus
        from imagestudio.domain.tasks import IDEMPOTENCY_TTL

        if idempotency is not None:
            existing = await self.keys.claim(
                idempotency.key, idempotency.fingerprint, task.id, now, IDEMPOTENCY_TTL
            )
            if existing is not None:
                return existing
        waiting = sum(1 for t in self.tasks.rows.values() if t.status is TaskStatus.QUEUED)
        refusal: Exception | None = None
        if waiting >= max(max_queued, 1):
            refusal = QueueFull(f"Too many generations are waiting ({waiting} queued)")
        elif task.id in self.tasks.rows:
            refusal = Conflict(f"Task {task.id} already exists", details={"field": "taskId"})
        if refusal is not None:
            if idempotency is not None:
                await self.keys.release(idempotency.key)
            raise refusal
        await self.tasks.create(task)
        self.todo.append(job)
        self.events.publish(
            TaskEvent(task_id=task.id, status=TaskStatus.QUEUED, progress=0, position=waiting + 1)
        )
        return None

    def take(self) -> Any:
        job = self.todo.pop(0)
        self.doing.add(job.task_id)
        return job

    async def dequeue(self, task_id: str) -> bool:
        for job in self.todo:
            if job.task_id == task_id:
                self.todo.remove(job)
                return True
        return False

    async def abort(self, task_id: str) -> bool:
        if task_id not in self.doing:
            return False
        self.aborted.append(task_id)
        return True

    async def active(self) -> list[Any]:
        from imagestudio.domain.model import TaskStatus

        running = [t for t in self.tasks.rows.values() if t.status is TaskStatus.GENERATING]
        queued = [replace(t, position=n) for n, t in enumerate(
            (t for t in self.tasks.rows.values() if t.status is TaskStatus.QUEUED), start=1
        )]  # fmt: skip
        return running + queued

    async def position(self, task_id: str) -> int | None:
        for task in await self.active():
            if task.id == task_id:
                return task.position  # type: ignore[no-any-return]
        return None

    async def sweep(self, interrupt: Any) -> list[Any]:
        found, self.stalled_ids = self.stalled_ids, []
        return await interrupt(found) if found else []  # type: ignore[no-any-return]
