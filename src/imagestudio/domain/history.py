"""Use cases over the history of generations."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from imagestudio.domain.errors import NotFound, StorageError
from imagestudio.domain.model import (
    Generation,
    GenerationPatch,
    HistoryPage,
    HistoryQuery,
    TagCount,
    TagQuery,
    thumbnail_owner,
)
from imagestudio.domain.ports import (
    ChangeWatch,
    GenerationRepository,
    ImageStorage,
    StoredStream,
    ThumbnailMaker,
    read_stream,
)
from imagestudio.domain.rules import MAX_GENERATION_ID

__all__ = ["DeleteGeneration", "GetGeneration", "ListHistory", "ListTags", "OpenImage", "UpdateGeneration"]

GENERATION_NOT_FOUND = "Generation not found"


def _check_id(generation_id: int) -> None:
    """Ids are positive 64-bit integers: anything else cannot name a generation."""
    if not 1 <= generation_id <= MAX_GENERATION_ID:
        raise NotFound(GENERATION_NOT_FOUND)


@dataclass(frozen=True, kw_only=True)
class ListHistory:
    """A page of the history, newest first, with the total matching the filter.

    ``version()`` lets a caller keep pages it has already made: a page read after
    ``version()`` returned ``v`` is still right for as long as ``version()`` keeps returning ``v``
    (read the version *before* the page). ``None`` means no version can be told (no ``watch``, or
    a database that cannot say cheaply): do not keep pages.
    """

    repository: GenerationRepository
    watch: ChangeWatch | None = None

    async def __call__(self, query: HistoryQuery) -> HistoryPage:
        return await self.repository.list(query)

    def version(self) -> object | None:
        return None if self.watch is None else self.watch.token()


@dataclass(frozen=True, kw_only=True)
class GetGeneration:
    """One generation by id; ``NotFound`` ("Generation not found") when there is none."""

    repository: GenerationRepository

    async def __call__(self, generation_id: int) -> Generation:
        _check_id(generation_id)
        generation = await self.repository.get(generation_id)
        if generation is None:
            raise NotFound(GENERATION_NOT_FOUND)
        return generation


@dataclass(frozen=True, kw_only=True)
class DeleteGeneration:
    """Remove a generation's record and then its files (the image and its thumbnail).

    Rules:
    - the record goes first: a crash in between leaves an unreferenced file (which
      ``imagestudio doctor`` can clean), never a record whose file is gone;
    - a file outside the storage roots (written there by an older version) is left in place:
      the record goes, nothing outside the roots is ever removed;
    - a second delete of the same id is ``NotFound``.
    """

    repository: GenerationRepository
    storage: ImageStorage

    async def __call__(self, generation_id: int) -> Generation:
        _check_id(generation_id)
        generation = await self.repository.delete(generation_id)
        if generation is None:
            raise NotFound(GENERATION_NOT_FOUND)
        await self.storage.delete(generation.image)
        return generation


@dataclass(frozen=True, kw_only=True)
class UpdateGeneration:
    """Mark a generation as a favourite (or not), set its tags, write or clear its notes.

    Rules:
    - only the fields given change; ``tags`` replaces all the tags, ``notes: null`` clears them;
    - tags are stored trimmed and case-folded (``Sunset`` and ``sunset `` are one tag), without
      duplicates (the first kept), in the order given: at most 32 of them, 1 to 64 characters
      each once trimmed, with no control characters or line breaks;
    - notes are at most 10,000 characters, with no control characters but tabs and line breaks;
    - all or nothing: a refused patch changes nothing, and one that is applied is applied whole;
    - the answer is the generation as it now is; an unknown id is ``NotFound``.
    """

    repository: GenerationRepository

    async def __call__(self, generation_id: int, patch: GenerationPatch) -> Generation:
        _check_id(generation_id)
        generation = await self.repository.update(generation_id, patch)
        if generation is None:
            raise NotFound(GENERATION_NOT_FOUND)
        return generation


@dataclass(frozen=True, kw_only=True)
class ListTags:
    """The tags of the history, each with how many generations carry it.

    Rules:
    - the most used first, ties by name; only tags some generation carries;
    - ``q``: only tags that start with it (trimmed and case-folded, as tags are stored); one that
      no tag could start with finds none;
    - at most ``limit`` (default 100, at most 1000).
    """

    repository: GenerationRepository

    async def __call__(self, query: TagQuery) -> list[TagCount]:
        if query.hopeless:
            return []
        return await self.repository.count_tags(query)


@dataclass(frozen=True, kw_only=True)
class OpenImage:
    """The bytes behind a ``/generated/<key>`` URL (an image or its thumbnail), opened as a stream
    the caller closes.

    Rules:
    - only images that belong to a generation are served, from the folder their row records
      (also one outside the storage roots, written there by an older version: it is the user's
      history), and only the thumbnails of those (``<key>.thumb.webp``);
    - a file swapped for a link that leaves its folder is not found;
    - a missing or unreadable image is an error before anything is sent, never a broken answer;
    - a generation's missing thumbnail (a row from before thumbnails, or one removed by hand) is
      made from its image on first request and stored, so later requests read it; where it
      cannot be stored (a folder outside the storage roots, a full disk) it is made and sent
      without being kept;
    - :meth:`serve` answers with a short-lived URL of the storage itself instead of the bytes
      when the storage hands them out (``ImageStorage.link``: an object store told to redirect),
      after the same checks; a missing thumbnail made on that request is sent as bytes.
    """

    repository: GenerationRepository
    storage: ImageStorage
    thumbnails: ThumbnailMaker

    async def __call__(self, key: str) -> tuple[Generation, StoredStream]:
        owner = thumbnail_owner(key)
        if owner is not None:
            generation = await self._generation(owner)
            return generation, await self._thumbnail(generation)
        generation = await self._generation(key)
        return generation, await self.storage.open(generation.image)

    async def serve(self, key: str) -> tuple[Generation, StoredStream | str]:
        """What the image route answers for ``key``: a URL to redirect to, when the storage
        hands them out, else the opened stream (the caller closes it); errors as for a call."""
        owner = thumbnail_owner(key)
        generation = await self._generation(owner or key)
        image = generation.image if owner is None else generation.image.thumbnail
        try:
            url = await self.storage.link(image)
        except NotFound:
            if owner is None:
                raise
            return generation, await self._thumbnail(generation)  # missing: made, stored, sent once
        if url is not None:
            return generation, url
        if owner is None:
            return generation, await self.storage.open(image)
        return generation, await self._thumbnail(generation)

    async def local_path(self, key: str) -> str | None:
        """The image's file on this machine, or ``None`` for a storage without local files (then
        open it); the same rules and errors as a call."""
        owner = thumbnail_owner(key)
        if owner is not None:
            generation = await self._generation(owner)
            await (await self._thumbnail(generation)).chunks.aclose()  # made if it was missing
            return await self.storage.local_path(generation.image.thumbnail)
        return await self.storage.local_path((await self._generation(key)).image)

    async def _thumbnail(self, generation: Generation) -> StoredStream:
        try:
            return await self.storage.open(generation.image.thumbnail)
        except NotFound:
            pass
        data = await read_stream(await self.storage.open(generation.image))
        thumbnail = await self.thumbnails.thumbnail(data)
        try:
            stored = await self.storage.save_thumbnail(generation.image, thumbnail)
        except StorageError:
            return StoredStream(size=len(thumbnail), media_type="image/webp", chunks=_once(thumbnail))
        if await self.repository.get_by_key(generation.image.key) is None:
            await self.storage.delete(stored)  # the generation was deleted meanwhile
            raise NotFound("Image not found")
        return await self.storage.open(stored)

    async def _generation(self, key: str) -> Generation:
        generation = await self.repository.get_by_key(key)
        if generation is None:
            raise NotFound("Image not found")
        return generation


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data
