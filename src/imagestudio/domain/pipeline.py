"""What every generating use case shares: input images and the generation job.

Rules:
- the input image of image-to-image and upscale is resolved here (CONTRACT.md section 5);
- the image is stored before its row is written; if the row cannot be written the file is
  removed again, so a failure leaves neither a file nor a row;
- the task lifecycle (queued, generating, one terminal event) is the ``TaskManager``'s.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from imagestudio.domain.errors import InvalidParameters
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
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def new_task_id() -> str:
    return str(uuid.uuid4())


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED) + 1


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
