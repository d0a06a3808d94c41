"""The consistency of the history and the image files: the check and repair of ``imagestudio doctor``.

The history and the files can disagree only in ways a crash or an outside hand leaves behind:

- a temporary file of a write that never finished (the storage adapter names them; the
  filesystem's are ``<YYYY-MM-DD>/.tmp-<32 hex>``): the process died mid-write;
- a finished image that no row names: the process died between renaming the image into place and
  committing its row, or between deleting a row and deleting its file;
- a row whose file is gone: someone removed or moved the file. The generation pipeline never leaves
  this itself, because an image is written before its row and removed only after it;
- a row whose file is there but cannot be read (permissions, a disk error): reported, never repaired;
- a row whose image is there without its thumbnail: a row from before thumbnails, or one removed
  by hand (the pipeline writes the thumbnail before the row). A thumbnail whose image no row names
  is an unreferenced file like an image.

Beside them the check proves the current storage writable (a folder, or an object store's
bucket, reached with the server's credentials): a storage that cannot be written is a problem
no repair fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum

from imagestudio.domain.errors import InvalidParameters, NotFound, StorageError
from imagestudio.domain.model import HistoryCursor, HistoryQuery, HistorySort, StoredImage, thumbnail_owner
from imagestudio.domain.ports import (
    Clock,
    GenerationRepository,
    ImageStorage,
    SettingsRepository,
    StoredFile,
    ThumbnailMaker,
    read_stream,
)

__all__ = [
    "DEFAULT_MIN_AGE",
    "CheckConsistency",
    "ConsistencyReport",
    "Finding",
    "Problem",
]

DEFAULT_MIN_AGE = timedelta(minutes=2)
"""Files younger than this are not judged: a running server may be about to record them."""


class Problem(StrEnum):
    """The kinds of disagreement between the history and the files."""

    MISSING_FILE = "missing-file"
    """A row whose image file is gone."""
    UNREFERENCED_FILE = "unreferenced-file"
    """A finished image that no row names."""
    STALE_TEMPORARY = "stale-temporary"
    """A temporary file of a write that never finished."""
    UNREADABLE_FILE = "unreadable-file"
    """A row whose file exists but cannot be read; only a person can tell what to do with it."""
    MISSING_THUMBNAIL = "missing-thumbnail"
    """A row whose image is there but its thumbnail is not; a repair makes it from the image."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One disagreement between the history and the files, and whether it was repaired."""

    problem: Problem
    image: StoredImage
    generation_id: int | None = None
    """The row, for ``missing-file``, ``unreadable-file`` and ``missing-thumbnail`` (whose
    ``image`` is the thumbnail's place)."""
    size: int | None = None
    """The file's size in bytes, for the file problems."""
    repaired: bool = False
    note: str | None = None
    """Why a finding was left alone, or where a missing file might be."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsistencyReport:
    """What one check found (and, with a repair, what it fixed)."""

    roots: tuple[str, ...]
    """The storage folders that were scanned: the current one first (when it is scanned)."""
    rows: int
    """History rows checked."""
    files: int
    """Finished image files found in the roots (thumbnails not counted)."""
    findings: tuple[Finding, ...]
    recent: tuple[StoredFile, ...]
    """Files without a row that are too young to judge; they are neither problems nor touched."""
    current: str = ""
    """The storage folder of the settings (in ``roots`` or in ``outside``)."""
    outside: tuple[str, ...] = ()
    """Storage folders in use (the settings', or rows') that lie outside the storage roots: not
    scanned, and nothing in them is ever removed."""
    thumbnails: int = 0
    """Thumbnail files found in the roots."""
    unwritable: str | None = None
    """Why the current storage folder (or bucket) cannot be written, or ``None`` when it can (or
    is outside the roots, where nothing is written anyway)."""
    locations: Mapping[str, str] = field(default_factory=dict)
    """Where each root of ``roots`` and ``outside`` is (``ImageStorage.location``)."""

    def location(self, root: str) -> str:
        """Where the folder ``root`` is: its absolute path, or the object store's URL of it."""
        return self.locations.get(root, root)

    @property
    def remaining(self) -> tuple[Finding, ...]:
        """The findings that were not repaired."""
        return tuple(f for f in self.findings if not f.repaired)

    @property
    def repaired(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.repaired)

    @property
    def consistent(self) -> bool:
        """True when no problem remains (and the storage can be written)."""
        return not self.remaining and self.unwritable is None


@dataclass(frozen=True, kw_only=True)
class CheckConsistency:
    """Compare the history with the files of every storage root in use, and optionally repair.

    Rules:
    - the folders checked are the current ``storagePath``'s and the root of every row, but only
      those inside the storage roots (``ImageStorage.confined``): a folder outside them is listed in
      ``outside``, never scanned, and nothing in it is removed (a row there whose file is gone may
      still be pruned: that deletes the row only);
    - only files the storage itself names are considered (``ImageStorage.scan``), so files a
      user keeps in the storage folder are never reported or removed;
    - a file younger than ``min_age`` is not judged: a running server may be between writing it
      and recording its row (or still writing a temporary);
    - a finished image is unreferenced when no row names its key; one that a row names under
      another root is a moved file and is kept (its row is reported missing, with a note);
    - just before an image is reported unreferenced it is looked up again (``get_by_key``), and
      a row just before it is reported missing, so work a running server did meanwhile is not
      mistaken for a problem;
    - a thumbnail belongs to the row of its image (``thumbnail_owner``); one whose image no row
      names is unreferenced like an image. A row whose image the scan found without its
      thumbnail beside it is ``missing-thumbnail`` (checked again just before it is reported);
    - ``repair`` removes stale temporaries and unreferenced images and thumbnails, and makes
      each missing thumbnail from its image (``ThumbnailMaker``); one that cannot be made is
      reported with the reason;
    - ``prune_missing`` deletes the rows whose file is gone, after checking once more that it
      still is, and never a row whose file exists under another root; their thumbnails go too;
    - a row whose file is there but unreadable is reported and never pruned;
    - the current storage folder, when inside the roots, is proved writable
      (``ImageStorage.ensure_writable``: created if missing, a probe written and removed); why it
      cannot be is ``unwritable``.
    """

    repository: GenerationRepository
    storage: ImageStorage
    settings: SettingsRepository
    clock: Clock
    thumbnails: ThumbnailMaker
    page_size: int = 500

    async def __call__(
        self, *, repair: bool = False, prune_missing: bool = False, min_age: timedelta = DEFAULT_MIN_AGE
    ) -> ConsistencyReport:
        rows = await self._rows()
        settings = await self.settings.get()
        current = await self.storage.root_of(settings.storage_path)
        in_use = (current, *sorted({image.root for image in rows.values()} - {current}))
        confined = [await self.storage.confined(root) for root in in_use]
        roots = tuple(root for root, inside in zip(in_use, confined, strict=True) if inside)
        outside = tuple(root for root, inside in zip(in_use, confined, strict=True) if not inside)
        files = [found for root in roots for found in await self.storage.scan(root)]
        unwritable = await self._unwritable(settings.storage_path) if current in roots else None
        finished = [f for f in files if not f.temporary]
        images = [f for f in finished if thumbnail_owner(f.image.key) is None]
        thumbnails = {(f.image.root, f.image.key) for f in finished if thumbnail_owner(f.image.key)}

        findings: list[Finding] = []
        present = {(f.image.root, f.image.key) for f in images}
        found_in = {f.image.key: f.image.root for f in images}
        for generation_id, image in rows.items():
            if (image.root, image.key) not in present:
                finding = await self._missing(generation_id, image, found_in.get(image.key), prune_missing)
            elif (image.root, image.thumbnail.key) not in thumbnails:
                finding = await self._missing_thumbnail(generation_id, image, repair)
            else:
                finding = None
            if finding is not None:
                findings.append(finding)

        named = {image.key for image in rows.values()}
        cutoff = self.clock.now() - min_age
        recent: list[StoredFile] = []
        for found in files:
            if not found.temporary and (thumbnail_owner(found.image.key) or found.image.key) in named:
                continue
            if found.modified_at > cutoff:
                recent.append(found)
                continue
            finding = await self._leftover(found, repair)
            if finding is not None:
                findings.append(finding)

        return ConsistencyReport(
            roots=roots,
            rows=len(rows),
            files=len(images),
            findings=tuple(findings),
            recent=tuple(recent),
            current=current,
            outside=outside,
            thumbnails=len(thumbnails),
            unwritable=unwritable,
            locations={root: self.storage.location(root) for root in in_use},
        )

    async def _unwritable(self, storage_path: str) -> str | None:
        try:
            await self.storage.ensure_writable(storage_path)
        except (InvalidParameters, StorageError) as error:
            return error.message
        return None

    async def _rows(self) -> dict[int, StoredImage]:
        """The image of every row by id, read oldest first in keyset pages (stable while rows are
        added or deleted); only ids and images are kept, so a large history fits in memory."""
        rows: dict[int, StoredImage] = {}
        cursor: HistoryCursor | None = None
        while True:
            page = await self.repository.list(
                HistoryQuery(limit=self.page_size, sort=HistorySort.OLDEST, cursor=cursor)
            )
            rows.update((g.id, g.image) for g in page.items if g.id is not None)
            if page.next_cursor is None or not page.items:
                return rows
            cursor = HistoryCursor.after(page.items[-1], HistorySort.OLDEST)

    async def _file_problem(self, image: StoredImage) -> tuple[Problem, str | None] | None:
        """``None`` when the image's file is there and readable, else what is wrong with it."""
        try:
            stream = await self.storage.open(image)  # opened and closed: no byte is read
        except NotFound:
            return Problem.MISSING_FILE, None
        except StorageError as error:
            return Problem.UNREADABLE_FILE, error.message
        await stream.chunks.aclose()
        return None

    async def _missing(
        self, generation_id: int, image: StoredImage, elsewhere: str | None, prune: bool
    ) -> Finding | None:
        found = await self._file_problem(image)
        if found is None:
            return None  # a name the scan does not list (an older layout), but the file is there
        if await self.repository.get(generation_id) is None:
            return None  # deleted meanwhile, file and all
        problem, reason = found
        if problem is Problem.UNREADABLE_FILE:
            return Finding(problem=problem, image=image, generation_id=generation_id, note=reason)
        note = None if elsewhere is None else f"a file of this name is in {self.storage.location(elsewhere)}"
        finding = Finding(problem=problem, image=image, generation_id=generation_id, note=note)
        if not prune:
            return finding
        if elsewhere is not None:
            return replace(finding, note=f"{note}; row kept (move the file back, or delete the row)")
        again = await self._file_problem(image)
        if again is None:
            return None  # put back meanwhile
        if again[0] is not Problem.MISSING_FILE:
            return finding
        await self.repository.delete(generation_id)
        await self.storage.delete(image)  # its thumbnail, if it is still there
        return replace(finding, repaired=True)

    async def _missing_thumbnail(
        self, generation_id: int, image: StoredImage, repair: bool
    ) -> Finding | None:
        try:
            await (await self.storage.open(image.thumbnail)).chunks.aclose()
            return None  # made meanwhile (a request for it makes a missing one)
        except NotFound:
            pass
        except StorageError as error:
            return Finding(
                problem=Problem.UNREADABLE_FILE,
                image=image.thumbnail,
                generation_id=generation_id,
                note=error.message,
            )
        if await self.repository.get(generation_id) is None:
            return None  # deleted meanwhile
        finding = Finding(
            problem=Problem.MISSING_THUMBNAIL, image=image.thumbnail, generation_id=generation_id
        )
        if not repair:
            return finding
        try:
            thumbnail = await self.thumbnails.thumbnail(await read_stream(await self.storage.open(image)))
            await self.storage.save_thumbnail(image, thumbnail)
        except (NotFound, StorageError) as error:
            return replace(finding, note=f"not made: {error.message}")
        return replace(finding, repaired=True)

    async def _leftover(self, found: StoredFile, repair: bool) -> Finding | None:
        if found.temporary:
            problem = Problem.STALE_TEMPORARY
        else:
            owner = await self.repository.get_by_key(thumbnail_owner(found.image.key) or found.image.key)
            if owner is not None:
                return None  # recorded meanwhile
            problem = Problem.UNREFERENCED_FILE
        finding = Finding(problem=problem, image=found.image, size=found.size)
        if not repair:
            return finding
        await self.storage.delete(found.image)
        return replace(finding, repaired=True)
