"""What every generating use case shares: input images and the generation job.

Rules:
- the input image of image-to-image and upscale is resolved here (CONTRACT.md section 5);
- the image is stored before its row is written; if the row cannot be written the file is
  removed again, so a failure leaves neither a file nor a row;
- a storage folder outside the storage roots (recorded by an older version) gets no image: the
  task fails with ``InvalidStoragePath`` before the engine runs, so no credit is spent;
- the task lifecycle (queued, generating, one terminal event) is the ``TaskManager``'s.
"""

from __future__ import annotations

import posixpath
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath
from imagestudio.domain.model import (
    MAX_SEED,
    GeneratedImage,
    Generation,
    Operation,
    SourceImage,
    StoredImage,
)
from imagestudio.domain.ports import (
    Clock,
    GenerationRepository,
    ImageGenerator,
    ImageInspector,
    ImageStorage,
    ModelCatalogue,
    ProgressCallback,
    SettingsRepository,
)
from imagestudio.domain.tasks import Job, TaskControl, TaskManager

__all__ = ["GenerationPipeline", "SourceResolver", "new_task_id", "random_seed"]

GENERATED_PREFIX = "/generated/"
MAX_REFERENCE = 4096
STALE_STORAGE_FOLDER = (
    "The storage folder in the settings lies outside the storage roots, so no image can be written"
    " there: set storagePath (PUT /api/settings) to a folder inside the data dir or a storage root"
)


def new_task_id() -> str:
    return str(uuid.uuid4())


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED) + 1


@dataclass(frozen=True, kw_only=True)
class SourceResolver:
    """Reads an input image named by a client (CONTRACT.md section 5).

    Rules:
    - ``data:image/...;base64,`` URIs are decoded;
    - a path names an image the server itself made, and nothing else: the ``filePath`` of a
      generation (``/generated/<key>``), its key (``2026-01-02/<32 hex>.png``, also with ``./``
      or inside the current storage folder's absolute path), or a file of that naming scheme in
      the current storage folder (one no row names, e.g. copied back in);
    - every other string (URLs of any scheme, ``..``, absolute paths elsewhere, names of another
      form, links) gets one and the same 400 ``INVALID_PARAMETERS``, decided without touching the
      disk, so an answer never tells whether some file exists; a missing image of our own naming
      scheme is 404;
    - the file's size is checked before it is read (at most the body limit), and the bytes must
      decode as an image of at most 64,000,000 pixels.
    """

    storage: ImageStorage
    repository: GenerationRepository
    settings: SettingsRepository
    inspector: ImageInspector

    async def __call__(self, reference: str, field_name: str) -> SourceImage:
        if reference.startswith("data:"):
            data = await self.inspector.decode_data_uri(reference, field_name)
            return await self.inspector.inspect(data, field_name)
        key, generation = await self._find(reference)
        try:
            if generation is not None:
                data = await self.storage.read(generation.image)
            elif key is not None and self.storage.owns(key):
                settings = await self.settings.get()
                data = await self.storage.read_reference(key, settings.storage_path)
            else:
                raise InvalidParameters(_unusable(field_name), field=field_name)
        except InvalidParameters as error:
            raise InvalidParameters(error.message, field=field_name) from error
        source = await self.inspector.inspect(data, field_name)
        return replace(source, generation=generation)

    async def _find(self, reference: str) -> tuple[str | None, Generation | None]:
        """The key ``reference`` names and the generation recorded under it (if any); no key when it
        cannot name one of our images. Only the text and the database are consulted."""
        if not reference or len(reference) > MAX_REFERENCE or "\x00" in reference:
            return None, None
        text = reference.replace("\\", "/")
        if text.startswith(GENERATED_PREFIX):
            key = _relative_key(text[len(GENERATED_PREFIX) :])
        elif text.startswith("/"):
            return await self._find_absolute(text)
        else:
            key = _relative_key(text)
        if key is None:
            return None, None
        return key, await self.repository.get_by_key(key)

    async def _find_absolute(self, text: str) -> tuple[str | None, Generation | None]:
        """An absolute path: inside the current storage folder, or the file of a recorded generation."""
        parts = text.split("/")
        if ".." in parts:
            return None, None
        path = posixpath.normpath(text)
        settings = await self.settings.get()
        root = posixpath.normpath((await self.storage.root_of(settings.storage_path)).replace("\\", "/"))
        if path.startswith(root.rstrip("/") + "/"):
            key = _relative_key(path[len(root.rstrip("/")) + 1 :])
            return (None, None) if key is None else (key, await self.repository.get_by_key(key))
        key = "/".join(path.split("/")[-2:])
        generation = await self.repository.get_by_key(key)
        if generation is not None and posixpath.join(generation.image.root, key) == path:
            return key, generation
        return None, None


def _relative_key(text: str) -> str | None:
    """``a/./b//c`` as ``a/b/c``; ``None`` for an empty path or one that climbs (``..``)."""
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _unusable(field_name: str) -> str:
    return (
        f"{field_name} must be the filePath of a generation (/generated/...), an image this server"
        " stored in the storage folder (YYYY-MM-DD/<name>.png), or a data:image/... URI"
    )


Produce = Callable[[ProgressCallback], Awaitable[GeneratedImage]]
Build = Callable[[GeneratedImage, StoredImage], Generation]


@dataclass(frozen=True, kw_only=True)
class GenerationPipeline:
    """Turns an engine call into a task: engine, then storage, then history.

    The image is stored (atomically) before its row is written; the task records the file in
    between, and if the row cannot be written the file is removed again.
    """

    generator: ImageGenerator
    storage: ImageStorage
    repository: GenerationRepository
    settings: SettingsRepository
    tasks: TaskManager
    clock: Clock
    new_task_id: Callable[[], str] = field(default=new_task_id)
    catalogue: ModelCatalogue | None = None
    """What the engine's models take (``domain/models.py``); ``None``: send every parameter."""

    def job(
        self,
        *,
        task_id: str,
        operation: Operation,
        produce: Produce,
        build: Build,
        storage_path: str | None = None,
    ) -> Job:
        """The task of one generation. The image goes to ``storage_path``: the storage folder of the
        settings the request was prepared with (so a queued task keeps the folder its request
        saw, and a generation reads its settings once), or, when not given, of the settings when
        the image is ready."""

        async def execute(control: TaskControl) -> Generation:
            planned = storage_path if storage_path is not None else (await self.settings.get()).storage_path
            if not await self.storage.confined(await self.storage.root_of(planned)):
                raise InvalidStoragePath(STALE_STORAGE_FOLDER, details={"field": "storagePath"})
            image = await control.produce(lambda: produce(control.step))
            folder = storage_path if storage_path is not None else (await self.settings.get()).storage_path
            stored = await self.storage.save(image.data, image.extension, folder)
            try:
                await control.stored(stored)
                return await self.repository.add(build(image, stored))
            except BaseException:
                await self.storage.delete(stored)
                raise

        return Job(task_id=task_id, operation=operation, execute=execute)
