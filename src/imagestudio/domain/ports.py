"""The ports: what the domain needs from the outside world, as small protocols.

Adapters implement them (``<Technology><Port>``); tests implement them by hand
(``Fake<Port>`` / ``InMemory<Port>``). Only domain types cross them; the values they carry
(``StoredFile``, ``IdempotencyRecord``, ``Task``) are defined with the others in
``domain/values.py`` and re-exported here, so the ports import no module that uses them.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from imagestudio.domain.model import (
    FoundMetadata,
    GeneratedImage,
    Generation,
    GenerationPatch,
    HistoryPage,
    HistoryQuery,
    IdempotencyRecord,
    ImageSpec,
    Provenance,
    Settings,
    SettingsPatch,
    SourceImage,
    StoredFile,
    StoredImage,
    TagCount,
    TagQuery,
    Task,
    TaskEvent,
)

__all__ = [
    "BatchImageGenerator",
    "ByteChunks",
    "ChangeWatch",
    "Clock",
    "GenerationRepository",
    "IdempotencyRecord",
    "IdempotencyStore",
    "ImageAnnotator",
    "ImageGenerator",
    "ImageInspector",
    "ImageStorage",
    "PreviewSource",
    "ProgressCallback",
    "SettingsRepository",
    "StoredFile",
    "StoredStream",
    "TaskEventStream",
    "TaskEvents",
    "TaskRepository",
    "TaskSubscription",
    "ThumbnailMaker",
    "read_stream",
]

PreviewSource = Callable[[], bytes]
"""Makes a small JPEG (at most 256 px on its long side) of the work in progress, when called."""


class ProgressCallback(Protocol):
    """``progress(done, total)``: called by an engine as its work advances; safe from any thread.

    An engine that can show its work so far also passes ``preview``; it is called only when
    someone watches the task with previews on, at most a few times a second, in the engine's
    thread (so the engine pays for a preview only when one is shown)."""

    def __call__(self, done: int, total: int, preview: PreviewSource | None = None) -> None: ...


class ImageGenerator(Protocol):
    """An engine that makes images, one per call; one that can make a batch in one call also
    implements :class:`BatchImageGenerator`."""

    @property
    def name(self) -> str:
        """The engine's name as reported by ``/health`` and recorded per generation."""
        ...

    @property
    def default_concurrency(self) -> int:
        """How many generations it runs at once unless ``IMAGESTUDIO_MAX_RUNNING`` says otherwise:
        a CPU-bound engine its CPU count, a network engine that mostly waits many more."""
        ...

    def accepts_model_id(self, model_id: str) -> bool:
        """Whether ``model_id`` is written as this engine names models (its syntax, not whether
        the model exists: the catalogue tells that). A request naming a model it refuses is
        ``InvalidParameters`` (field ``model``) before any task exists."""
        ...

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage: ...

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage: ...

    async def upscale(
        self, source: SourceImage, scale: int, progress: ProgressCallback
    ) -> GeneratedImage: ...


@runtime_checkable
class BatchImageGenerator(Protocol):
    """What an ``ImageGenerator`` that makes a whole batch in one engine call adds (Runware: one
    ``imageInference`` task with ``numberResults``); an engine without it runs once per image.

    The batch of ``count`` images of ``spec`` starts at ``spec.seed``: image ``i`` is the one a
    request with seed ``batch_seed(spec.seed, i)`` and a count of 1 would make. The answer lists
    exactly ``count`` images in that order, each with the seed the engine reports for it (else
    ``None``: the pipeline records ``batch_seed(spec.seed, i)``), or raises: a batch is made whole
    or not at all. ``progress`` covers the whole batch.
    """

    async def text_to_image_batch(
        self, spec: ImageSpec, count: int, progress: ProgressCallback
    ) -> Sequence[GeneratedImage]: ...

    async def image_to_image_batch(
        self, spec: ImageSpec, source: SourceImage, strength: float, count: int, progress: ProgressCallback
    ) -> Sequence[GeneratedImage]: ...


class ImageInspector(Protocol):
    """Decodes just enough of an image to tell whether it is one, and its size."""

    async def inspect(self, data: bytes, field_name: str = "image") -> SourceImage:
        """Return the image's facts, or raise ``InvalidParameters`` if it is not a usable image."""
        ...

    async def decode_data_uri(self, uri: str, field_name: str) -> bytes:
        """Decode a ``data:image/...;base64,`` URI; ``InvalidParameters`` naming the field if malformed."""
        ...


class ThumbnailMaker(Protocol):
    """Makes the small picture a gallery shows for an image."""

    async def thumbnail(self, data: bytes) -> bytes:
        """A WebP of the image ``data``, at most ``THUMBNAIL_SIDE`` pixels on its long side (upright,
        aspect kept, never enlarged); ``StorageError`` if ``data`` cannot be decoded."""
        ...


class ImageAnnotator(Protocol):
    """Writes into an image file how it was made, and reads what image files say of themselves.

    The file's format is told by its bytes (PNG, JPEG and WebP carry records; other formats come
    back unchanged). Its pixel data is copied byte for byte, never decoded or re-encoded.
    """

    async def annotate(self, data: bytes, provenance: Provenance) -> bytes:
        """``data`` with ``provenance`` written into it (replacing a record of ours it had);
        unchanged when its format cannot carry one or its structure cannot be read."""
        ...

    async def read(self, data: bytes) -> list[FoundMetadata]:
        """Every record of generation parameters in ``data`` it recognises, ours first; empty
        when there is none. Never raises for what a file contains."""
        ...


class ByteChunks(Protocol):
    """The bytes of a stored image, a chunk at a time (an async iterator; an async generator is
    one); ``aclose()`` releases what it holds (the file, the connection), also when it was never
    iterated or stopped half-way."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def __anext__(self) -> bytes: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class StoredStream:
    """An opened stored image: its size and media type, known before a byte is sent, and its bytes.

    ``modified_at`` and ``etag`` (a quoted HTTP entity tag) are what the storage can tell cheaply
    for caching, or ``None``. Whoever opens a stream closes it (``await stream.chunks.aclose()``).
    """

    size: int
    media_type: str
    chunks: ByteChunks
    modified_at: datetime | None = None
    etag: str | None = None


async def read_stream(stream: StoredStream) -> bytes:
    """Every byte of an opened stream, which is closed after (also on an error)."""
    try:
        return b"".join([chunk async for chunk in stream.chunks])
    finally:
        await stream.chunks.aclose()


class ImageStorage(Protocol):
    """Where image files live: folders inside the storage roots the server was started with, or
    prefixes in an object store's bucket.

    Nothing is created, written, scanned or removed outside the roots (symbolic links followed);
    images recorded outside them by an older version are still read and served.

    A root (``StoredImage.root``, what a row keeps) is the storage's own name for a folder, the
    same on every machine that shares the storage: relative to the data dir (a folder storage)
    or to the bucket's prefix (an object store); only a folder outside the data dir is an
    absolute path. :meth:`location` says where a root is, for people and for matching paths.

    Images leave storage as bytes (``read``, ``read_reference``: inputs, bounded) or as a
    ``StoredStream`` (``open``: serving, copying), never as a filesystem path the caller must open:
    an object store implements the same port. ``open`` does the checks that can fail (missing,
    a link leading out, unreadable) before it returns, so an answer never breaks off after its
    headers. ``local_path`` is the shortcut for callers that want a file (the CLI, ``Studio``):
    a storage without local files returns ``None`` and the caller streams instead.
    """

    async def save(self, data: bytes, extension: str, storage_path: str) -> StoredImage:
        """Write ``data`` atomically under the folder ``storage_path`` with a fresh, unique name;
        ``InvalidStoragePath`` if that folder lies outside the roots."""
        ...

    async def save_thumbnail(self, image: StoredImage, data: bytes) -> StoredImage:
        """Write ``data`` atomically as the thumbnail of the stored ``image`` (``image.thumbnail``,
        beside it), replacing one that is there, and return where it went; ``InvalidStoragePath``
        if the folder lies outside the roots, ``StorageError`` if it cannot be written."""
        ...

    async def read(self, image: StoredImage) -> bytes:
        """Read a stored image; ``NotFound`` if it is gone, ``InvalidParameters`` if it is larger
        than an input may be (checked before a byte is read)."""
        ...

    def owns(self, key: str) -> bool:
        """Whether ``key`` is a name this storage gives its images (decided on the text alone)."""
        ...

    async def read_reference(self, key: str, storage_path: str) -> bytes:
        """Read the image ``key`` (a name :meth:`owns` accepts) in the folder ``storage_path``.

        ``InvalidParameters`` for a key it does not own (without touching the disk) or a file
        larger than an input may be; ``NotFound`` for a missing file, or a link that leaves the
        folder; ``InvalidStoragePath`` if the folder lies outside the roots. Never opens a file
        outside the folder.
        """
        ...

    async def delete(self, image: StoredImage) -> None:
        """Remove a stored image, and its thumbnail with it (a thumbnail passed alone goes alone);
        a missing file is not an error, and a file outside the roots is left in place."""
        ...

    async def open(self, image: StoredImage) -> StoredStream:
        """Open a stored image for reading, of any size; ``NotFound`` if it is gone (or is a link
        that leaves its folder), ``StorageError`` if it is there but cannot be read."""
        ...

    async def local_path(self, image: StoredImage) -> str | None:
        """The absolute path of a stored image's file, or ``None`` for a storage that keeps no
        local files; ``NotFound`` / ``StorageError`` as for :meth:`open`."""
        ...

    async def link(self, image: StoredImage) -> str | None:
        """A short-lived URL from which a client may fetch the stored image itself, when this
        storage hands them out (an object store told to); ``None`` otherwise (then open it),
        decided without I/O. ``NotFound`` / ``StorageError`` as for :meth:`open`."""
        ...

    def location(self, root: str) -> str:
        """Where the folder ``root`` is, decided on the text alone: its absolute path on this
        machine (a folder storage) or its URL (``s3://bucket/prefix/generated``)."""
        ...

    async def ensure_writable(self, storage_path: str) -> str:
        """Create ``storage_path`` if needed and prove it writable; return where it is (as
        :meth:`location` says).

        ``InvalidParameters`` (field ``storagePath``) if it lies outside the roots, checked before
        anything is created; ``InvalidStoragePath`` if it cannot be created or written, or its disk
        has too little room.
        """
        ...

    async def root_of(self, storage_path: str) -> str:
        """The root that images saved under ``storage_path`` get (``StoredImage.root``); creates nothing."""
        ...

    async def confined(self, root: str) -> bool:
        """Whether the folder ``root`` (a ``StoredImage.root``) lies inside the storage roots."""
        ...

    async def scan(self, root: str) -> list[StoredFile]:
        """Every file this storage wrote under ``root``: finished images, their thumbnails (keys
        ``thumbnail_owner`` recognises) and leftover temporaries.

        Only names this storage gives are listed, so files a user keeps in the same folder are
        never reported (nor removed by a repair). A root that does not exist holds nothing; one
        outside the roots is refused (``StorageError``). Temporaries are removed with ``delete``
        like images.
        """
        ...


class GenerationRepository(Protocol):
    """The persistent history of generations."""

    async def add(self, generation: Generation) -> Generation:
        """Store a new generation and return it with its id."""
        ...

    async def add_many(self, generations: Sequence[Generation]) -> list[Generation]:
        """Store new generations (a batch) in one transaction, all or none, and return them with
        their ids in the order given."""
        ...

    async def get(self, generation_id: int) -> Generation | None: ...

    async def get_by_key(self, key: str) -> Generation | None:
        """The generation whose stored image has this key."""
        ...

    async def list(self, query: HistoryQuery) -> HistoryPage: ...

    async def delete(self, generation_id: int) -> Generation | None:
        """Remove a generation's record and return it, or ``None`` if there was none; its tags
        go with it (and out of :meth:`count_tags`)."""
        ...

    async def update(self, generation_id: int, patch: GenerationPatch) -> Generation | None:
        """Apply ``patch`` to a generation atomically (all of it or none of it) and return the
        generation as it now is, or ``None`` if there is none."""
        ...

    async def count_tags(self, query: TagQuery) -> builtins.list[TagCount]:
        """The tags the generations carry, with how many carry each, as :class:`TagQuery` says."""
        ...


class ChangeWatch(Protocol):
    """Tells, cheaply, whether the stored data (history, settings) may have changed since an
    earlier look.

    ``token()`` is called on the event loop for every cached read, so it must not block: it
    returns a value that differs from every earlier one once anything (this process or another)
    has committed a change, or ``None`` when it cannot tell, which means "do not trust a cache".
    Equal tokens promise nothing was committed in between; different ones only that something
    may have been.
    """

    def token(self) -> object | None: ...


class SettingsRepository(Protocol):
    """The user's settings, kept across restarts."""

    async def get(self) -> Settings: ...

    async def update(self, patch: SettingsPatch) -> Settings:
        """Apply ``patch`` atomically (all of it or none of it) and return the merged settings."""
        ...


class TaskEvents(Protocol):
    """Where progress events go (the WebSocket hub, a progress bar)."""

    def publish(self, event: TaskEvent) -> None:
        """Deliver one event. Must be safe to call from any thread and never block."""
        ...

    def wants_previews(self, task_id: str) -> bool:
        """Whether a subscriber that asked for previews follows this task (safe from any thread)."""
        ...


class TaskSubscription(Protocol):
    """One subscriber's events (of one task, or of all): iterate it, then ``close()`` it.

    Each event comes once, in ``seq`` order, and nothing of a task comes after its terminal event.
    """

    @property
    def task_id(self) -> str | None:
        """The task this subscription follows; ``None`` for every task."""
        ...

    @property
    def truncated_before(self) -> int | None:
        """Set when ``after`` asked for events older than the stream keeps: the oldest ``seq`` kept."""
        ...

    async def ready(self) -> None:
        """Wait until the subscription knows where its replay starts: ``truncated_before`` is then
        final. A stream that keeps its events in memory knows at once; one that reads them from a
        database asks it first (and waits for it while it is unavailable)."""
        ...

    def __aiter__(self) -> AsyncIterator[TaskEvent]: ...

    async def next(self) -> TaskEvent:
        """Wait for the next event."""
        ...

    def close(self) -> None:
        """Stop receiving events."""
        ...


class TaskEventStream(TaskEvents, Protocol):
    """Task events numbered and fanned out: what the progress WebSocket and ``Studio`` read.

    Every delivered event carries ``seq``, increasing for the life of the stream; a subscriber
    that comes back with ``after=<seq>`` first gets the recent events it missed. The stream may
    span several processes (every server on one PostgreSQL database): then ``seq`` is the
    cluster's, and every subscriber sees every process's events, in ``seq`` order.
    """

    def bind(self) -> None:
        """Deliver events on the running event loop (where subscribers read them)."""
        ...

    def subscribe(
        self, task_id: str | None = None, after: int | None = None, *, previews: bool = False
    ) -> TaskSubscription:
        """Start receiving events of ``task_id`` (or of every task); call on the bound loop.

        With ``after``, the kept events with a greater ``seq`` come first. Without it, a
        subscription to one task starts with that task's latest event, so a late subscriber
        still learns how it ended (once). With ``previews``, live ``generating`` events carry the
        engine's ``preview`` when it has one; kept (replayed) events never do.
        """
        ...

    def add_listener(self, listener: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """Call ``listener`` (on the loop) for every event; returns a function that removes it."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class TaskRepository(Protocol):
    """Where task transitions are recorded, so a restart knows what it interrupted."""

    async def create(self, task: Task) -> None:
        """Record a new task; ``Conflict`` if its id is taken."""
        ...

    async def update(self, task: Task) -> None: ...

    async def get(self, task_id: str) -> Task | None: ...

    async def recent(self, limit: int) -> list[Task]:
        """Finished tasks, most recently finished first."""
        ...

    async def interrupt_orphans(self, now: datetime) -> list[Task]:
        """Mark tasks left queued or generating by a process that is gone as ``failed``
        (``INTERRUPTED``) and return them as they were (with any unrecorded image)."""
        ...


class IdempotencyStore(Protocol):
    """Remembers ``Idempotency-Key`` headers for a while."""

    async def claim(
        self, key: str, fingerprint: str, task_id: str, now: datetime, ttl: timedelta
    ) -> IdempotencyRecord | None:
        """Atomically take ``key`` for ``task_id``; ``None`` if taken now, else the live record
        that holds it (records older than ``ttl`` are replaced)."""
        ...

    async def release(self, key: str) -> None:
        """Forget ``key`` (its task could not be created)."""
        ...


# --- models an engine can run (issue 13) ------------------------------------------------------

from imagestudio.domain.models import ModelInfo, ModelPage, ModelQuery  # noqa: E402 - one block, kept apart


class ModelCatalogue(Protocol):
    """The models the configured engine can run, with what each takes (``domain/models.py``)."""

    @property
    def default_model(self) -> str:
        """The model a request without ``model`` gets: one the default request is made for."""
        ...

    async def get(self, model_id: str) -> ModelInfo | None:
        """What ``model_id`` takes; ``None`` when the catalogue cannot tell (the request then goes
        as asked and the engine judges it). An engine that runs one model of its own answers
        with that model whatever is asked (a Generation records the model that really ran)."""
        ...

    async def search(self, query: ModelQuery) -> ModelPage: ...


__all__ += ["ModelCatalogue"]
