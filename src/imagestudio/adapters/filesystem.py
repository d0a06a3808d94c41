"""Filesystem adapter for the ``ImageStorage`` port.

Images live under a storage folder with the names ``adapters/naming.py`` gives
(``<YYYY-MM-DD>/<uuid>.<ext>``, thumbnails beside them as ``<...>.thumb.webp``). Writes are
atomic: the bytes go to a hidden temporary file in the target folder, are flushed to disk, and
are then renamed into place. Every call runs in a worker thread. ``delete`` of an image removes
its thumbnail first.

``scan`` lists only those names (images, thumbnails, ``<YYYY-MM-DD>/.tmp-<32 hex>`` temporaries
and ``.tmp-probe-<32 hex>`` free-space probes), never following a symbolic link, so
``imagestudio doctor`` cannot mistake a user's own files in the storage folder for leftovers.

Roots as rows keep them (``StoredImage.root``): a folder inside the data dir is written relative
to it (``generated``, or ``.`` for the data dir itself), so the history stays right when the data
dir moves, and another machine (or an object store, where the same text is a prefix in the
bucket) finds the same images under its own; only a folder outside the data dir (in another
storage root) is kept as an absolute path. Both forms are read: :meth:`canonical_root` turns an
absolute root inside the data dir (a row of an older version) into the relative one.

Storage roots (CONTRACT.md sections 1, 5, 11): the folders given at construction (the data dir
first). Nothing is created, written, scanned or deleted outside them, symbolic links followed:

- ``ensure_writable`` refuses a folder outside the roots with ``InvalidParameters`` (field
  ``storagePath``) before creating anything, and one whose disk has less than ``min_free_bytes``
  free with ``InvalidStoragePath``;
- ``save`` into a folder outside the roots (a storage path recorded by an older version) is
  ``InvalidStoragePath``; ``scan`` of one is refused; ``delete`` of an image outside them leaves
  the file in place;
- recorded images outside the roots are still read and served (``read``, ``open``,
  ``local_path``): they are the user's history;
- ``read_reference`` reads only names this storage gives (``owns``), inside a folder within the
  roots; every read checks the opened file's size before reading a byte and reads at most
  ``max_read_bytes``.

``open`` opens the file once (the descriptor it checked is the one it streams from) and reads it in
``CHUNK_BYTES`` chunks in a worker thread; an image no larger than one chunk is read and closed in
a single hop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import stat
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from imagestudio.adapters.naming import (
    ALLOWED_EXTENSIONS,
    CHUNK_BYTES,
    DAY_FOLDER,
    DEFAULT_MAX_READ_BYTES,
    IMAGE_KEY,
    IMAGE_NAME,
    PROBE_NAME,
    TEMP_NAME,
    TEMP_PREFIX,
    THUMBNAIL_NAME,
    media_type,
    new_image_key,
    probe_name,
    too_large,
)
from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound, StorageError
from imagestudio.domain.model import StoredImage
from imagestudio.domain.ports import StoredFile, StoredStream
from imagestudio.log import get_logger

__all__ = ["CHUNK_BYTES", "DEFAULT_MAX_READ_BYTES", "MIN_FREE_BYTES", "TEMP_PREFIX", "FilesystemImageStorage"]

log = get_logger(__name__)

MIN_FREE_BYTES = 64 * 1024 * 1024
"""A storage folder whose disk has less free space than this is refused: room for a few dozen
ordinary images, or a handful of 4096 px upscales."""
_OUTSIDE_ROOTS = (
    "storagePath must be a folder inside the data dir or a storage root"
    " (IMAGESTUDIO_STORAGE_ROOTS, --storage-root), symbolic links followed"
)
_STALE_FOLDER = (
    "The storage folder in the settings lies outside the storage roots, so nothing is written there:"
    " set storagePath (PUT /api/settings) to a folder inside the data dir or a storage root"
)


class FilesystemImageStorage:
    """Stores images in folders on the local disk, inside the storage ``roots``.

    ``data_dir`` anchors relative storage paths (CONTRACT.md section 1: "a relative
    ``storagePath`` resolves against the data dir"); ``roots`` default to the data dir alone.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        roots: Sequence[str | os.PathLike[str]] = (),
        max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.roots = tuple(Path(root).expanduser().resolve() for root in roots) or (self.data_dir,)
        self.max_read_bytes = max_read_bytes
        self.min_free_bytes = min_free_bytes

    def root_for(self, storage_path: str) -> Path:
        """The absolute folder that ``storage_path`` names (lexically; links are not followed)."""
        try:
            path = Path(storage_path).expanduser()
        except RuntimeError as error:  # "~someone" for a user this machine does not have
            raise InvalidStoragePath(
                "storagePath names the home folder of an unknown user", details={"field": "storagePath"}
            ) from error
        if not path.is_absolute():
            path = self.data_dir / path
        return Path(os.path.normpath(path))

    def folder_of(self, root: str) -> Path:
        """The absolute folder of a ``StoredImage.root``: a relative one lies in the data dir."""
        path = Path(root)
        return Path(os.path.normpath(path if path.is_absolute() else self.data_dir / path))

    def row_root(self, folder: Path) -> str:
        """How rows name the absolute ``folder``: relative to the data dir (POSIX separators,
        ``.`` for the data dir itself) when it lies inside it, lexically; else its absolute path."""
        if _is_inside(folder, self.data_dir):
            return folder.relative_to(self.data_dir).as_posix()
        return str(folder)

    def canonical_root(self, root: str) -> str:
        """The form a row should keep for ``root``: an absolute folder inside the data dir (how
        older versions wrote every row) becomes relative; any other root stays as it is."""
        return self.row_root(self.folder_of(root))

    def location(self, root: str) -> str:
        return str(self.folder_of(root))

    def is_confined(self, folder: Path) -> bool:
        """Whether ``folder`` (existing or not) lies inside a storage root once links are followed."""
        try:
            real = folder.resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            return False
        return any(_is_inside(real, root) for root in self.roots)

    def owns(self, key: str) -> bool:
        return IMAGE_KEY.fullmatch(key) is not None

    # --- port -----------------------------------------------------------------------------

    async def save(self, data: bytes, extension: str, storage_path: str) -> StoredImage:
        if extension not in ALLOWED_EXTENSIONS:
            raise StorageError(f"Refusing to store an image with extension {extension!r}")
        root = self.root_for(storage_path)
        return await anyio.to_thread.run_sync(self._save_sync, data, extension, root)

    async def save_thumbnail(self, image: StoredImage, data: bytes) -> StoredImage:
        if not self.owns(image.key):
            raise StorageError("Refusing to store a thumbnail for a file this storage did not name")
        return await anyio.to_thread.run_sync(self._save_thumbnail_sync, image, data)

    async def read(self, image: StoredImage) -> bytes:
        return await anyio.to_thread.run_sync(self._read_stored_sync, image)

    async def read_reference(self, key: str, storage_path: str) -> bytes:
        if not self.owns(key):  # decided on the text alone: nothing is looked up on disk
            raise InvalidParameters("Not the name of an image this storage made")
        root = self.root_for(storage_path)
        return await anyio.to_thread.run_sync(self._read_reference_sync, key, root)

    async def delete(self, image: StoredImage) -> None:
        await anyio.to_thread.run_sync(self._delete_sync, image)

    async def open(self, image: StoredImage) -> StoredStream:
        return await anyio.to_thread.run_sync(self._open_sync, image)

    async def local_path(self, image: StoredImage) -> str | None:
        return await anyio.to_thread.run_sync(self._local_path_sync, image)

    async def link(self, image: StoredImage) -> str | None:
        return None  # a folder has no URL of its own: the server streams its files

    async def ensure_writable(self, storage_path: str) -> str:
        root = self.root_for(storage_path)
        await anyio.to_thread.run_sync(self._ensure_writable_sync, root)
        return str(root)

    async def root_of(self, storage_path: str) -> str:
        return self.row_root(self.root_for(storage_path))

    async def confined(self, root: str) -> bool:
        return await anyio.to_thread.run_sync(self.is_confined, self.folder_of(root))

    async def scan(self, root: str) -> list[StoredFile]:
        return await anyio.to_thread.run_sync(self._scan_sync, root)

    # --- blocking implementations -----------------------------------------------------------

    def _save_sync(self, data: bytes, extension: str, root: Path) -> StoredImage:
        if not self.is_confined(root):  # checked before any folder is made
            raise InvalidStoragePath(_STALE_FOLDER, details={"field": "storagePath"})
        key = new_image_key(extension)
        self._write_sync(root, key, data, "image")
        return StoredImage(key=key, root=self.row_root(root))

    def _save_thumbnail_sync(self, image: StoredImage, data: bytes) -> StoredImage:
        root = self.folder_of(image.root)
        if not self.is_confined(root):
            raise InvalidStoragePath(_STALE_FOLDER, details={"field": "storagePath"})
        thumbnail = image.thumbnail
        self._write_sync(root, thumbnail.key, data, "thumbnail")
        return thumbnail

    def _write_sync(self, root: Path, key: str, data: bytes, what: str) -> None:
        """Write ``root / key`` atomically: a temporary in its folder, flushed, then renamed."""
        final = root / key
        temp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if not self.is_confined(final.parent):  # a day folder that is a link leading out
                raise InvalidStoragePath(_STALE_FOLDER, details={"field": "storagePath"})
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        except OSError as error:
            raise StorageError(f"Could not write the {what}: {_describe(error)}") from error

    def _path_of(self, image: StoredImage) -> Path:
        root = self.folder_of(image.root)
        path = root / image.key
        if not _is_inside(path, root):
            raise StorageError("A stored image points outside its storage folder")
        return path

    def _real_file_of(self, image: StoredImage) -> Path:
        """The file behind a stored image after following links; it must still lie in its folder.

        A link planted in storage in place of an image (or of a day folder) that leads elsewhere
        makes the image missing: nothing outside the storage folder is ever read or served.
        """
        path = self._path_of(image)
        try:
            real = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError, RuntimeError) as error:  # RuntimeError: a loop
            raise NotFound("Image not found") from error
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise NotFound("Image not found") from error
            raise StorageError(f"Could not read the image: {_describe(error)}") from error
        if not _is_inside(real, self.folder_of(image.root).resolve()) or not real.is_file():
            raise NotFound("Image not found")
        return real

    def _read_stored_sync(self, image: StoredImage) -> bytes:
        return _read_bounded(self._real_file_of(image), self.max_read_bytes)

    def _read_reference_sync(self, key: str, root: Path) -> bytes:
        if not self.is_confined(root):
            raise InvalidStoragePath(_STALE_FOLDER, details={"field": "storagePath"})
        image = StoredImage(key=key, root=self.row_root(root))
        return _read_bounded(self._real_file_of(image), self.max_read_bytes)

    def _open_sync(self, image: StoredImage) -> StoredStream:
        real = self._real_file_of(image)
        handle, info = _open_regular(real)
        return StoredStream(
            size=info.st_size,
            media_type=media_type(image.key),
            chunks=_FileChunks(handle, info.st_size),
            modified_at=dt.datetime.fromtimestamp(info.st_mtime, dt.UTC),
            # the shape Litestar's ``File`` gave (mtime-size-checksum of the path), so caches keep theirs
            etag=f'"{info.st_mtime}-{info.st_size}-{zlib.adler32(str(real).encode()) & 0xFFFFFFFF}"',
        )

    def _local_path_sync(self, image: StoredImage) -> str:
        real = self._real_file_of(image)
        # Open it once, so that an image which is there but cannot be read is a storage error now.
        handle, _ = _open_regular(real)
        handle.close()
        return str(real)

    def _delete_sync(self, image: StoredImage) -> None:
        path = self._path_of(image)
        root = self.folder_of(image.root)
        if not self.is_confined(root):
            # An image an older version wrote outside the roots: its row goes, the file stays.
            log.warning("image outside the storage roots left in place", key=image.key, root=image.root)
            return
        try:
            if not _is_inside(path.parent.resolve(), root.resolve()):
                return  # its day folder is now a link that leads out of storage: not ours to remove
        except RuntimeError:  # a symlink loop where the day folder was
            return
        if self.owns(image.key):  # an image: its thumbnail first, so none outlives it
            _unlink(self._path_of(image.thumbnail))
        _unlink(path)

    def _ensure_writable_sync(self, root: Path) -> None:
        if not self.is_confined(root):  # before anything is created
            raise InvalidParameters(_OUTSIDE_ROOTS, field="storagePath")
        try:
            free = _free_bytes(root)
            if free < self.min_free_bytes:
                raise InvalidStoragePath(
                    f"Storage folder's disk has {free // 2**20} MiB free; at least"
                    f" {self.min_free_bytes // 2**20} MiB is needed",
                    details={"field": "storagePath"},
                )
            root.mkdir(parents=True, exist_ok=True)
            if not self.is_confined(root):  # a link swapped in meanwhile
                raise InvalidParameters(_OUTSIDE_ROOTS, field="storagePath")
            probe = root / probe_name()
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            os.close(fd)
            probe.unlink()
        except OSError as error:
            raise InvalidStoragePath(
                f"Storage folder cannot be created or written: {_describe(error)}",
                details={"field": "storagePath"},
            ) from error

    def _scan_sync(self, root: str) -> list[StoredFile]:
        folder = self.folder_of(root)
        if not self.is_confined(folder):
            raise InvalidStoragePath("Refusing to scan a folder outside the storage roots")
        found: list[StoredFile] = []
        try:
            for entry in _entries(folder):
                if PROBE_NAME.fullmatch(entry.name):
                    _add_file(found, root, entry, entry.name, temporary=True)
                elif DAY_FOLDER.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                    for item in _entries(Path(entry.path)):
                        key = f"{entry.name}/{item.name}"
                        if IMAGE_NAME.fullmatch(item.name) or THUMBNAIL_NAME.fullmatch(item.name):
                            _add_file(found, root, item, key, temporary=False)
                        elif TEMP_NAME.fullmatch(item.name):
                            _add_file(found, root, item, key, temporary=True)
        except OSError as error:
            raise StorageError(f"Could not list the storage folder: {_describe(error)}") from error
        return found


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _unlink(path: Path) -> None:
    """Remove a file of storage; one that is already gone is not an error."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as error:
        raise StorageError(f"Could not delete the image: {_describe(error)}") from error


def _free_bytes(folder: Path) -> int:
    """Bytes an unprivileged user may still write on the disk of ``folder`` (or of its nearest
    existing parent, when it does not exist yet)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    info = os.statvfs(probe)
    return info.f_bavail * info.f_frsize


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; none when it does not exist (or is not a folder)."""
    try:
        with os.scandir(folder) as listing:
            return list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _add_file(
    found: list[StoredFile], root: str, entry: os.DirEntry[str], key: str, *, temporary: bool
) -> None:
    """Append ``entry`` if it is a regular file (not a link); one that vanished meanwhile is skipped."""
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        return
    found.append(
        StoredFile(
            image=StoredImage(key=key, root=root),
            temporary=temporary,
            size=info.st_size,
            modified_at=dt.datetime.fromtimestamp(info.st_mtime, dt.UTC),
        )
    )


def _open_regular(real: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open a file whose real path was checked to be inside storage; it must be a regular file.

    ``NotFound`` if it is gone, was swapped for a link (``O_NOFOLLOW``) or is not a regular file
    (``O_NONBLOCK``: a FIFO put in its place must not hang the worker thread); ``StorageError`` if
    it cannot be opened.
    """
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError as error:
        raise NotFound("Image not found") from error
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotFound("Image not found") from error
        raise StorageError(f"Could not read the image: {_describe(error)}") from error
    handle = os.fdopen(fd, "rb")
    try:
        info = os.fstat(handle.fileno())
    except OSError as error:
        handle.close()
        raise StorageError(f"Could not read the image: {_describe(error)}") from error
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise NotFound("Image not found")
    return handle, info


class _FileChunks:
    """The chunks of an opened file, read in a worker thread; closed at the end, on an error, or
    by ``aclose()``. A file no larger than one chunk is read and closed in one hop."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self._handle: BinaryIO | None = handle
        self._left = size  # never more than the size announced, even if the file grows meanwhile

    def __aiter__(self) -> _FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._handle is None:
            raise StopAsyncIteration
        chunk = await anyio.to_thread.run_sync(self._next_sync)
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def _next_sync(self) -> bytes:
        handle = self._handle
        if handle is None:
            return b""
        wanted = min(CHUNK_BYTES, self._left)
        try:
            chunk = handle.read(wanted) if wanted else b""
        except OSError as error:
            self._close_sync()
            raise StorageError(f"Could not read the image: {_describe(error)}") from error
        self._left -= len(chunk)
        if len(chunk) < CHUNK_BYTES or not self._left:
            self._close_sync()  # the end: nothing left to hold
        return chunk

    def _close_sync(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    async def aclose(self) -> None:
        self._close_sync()


def _read_bounded(real: Path, limit: int) -> bytes:
    """Read a file whose real path was checked to be inside storage, at most ``limit`` bytes.

    The size is taken from the opened descriptor (so the file checked is the file read) before
    any byte is read; a file that grows past ``limit`` meanwhile is refused too.
    """
    handle, info = _open_regular(real)
    with handle:
        if info.st_size > limit:
            raise InvalidParameters(too_large(limit))
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise StorageError(f"Could not read the image: {_describe(error)}") from error
    if len(data) > limit:
        raise InvalidParameters(too_large(limit))
    return data


def _is_inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([path, root]) == str(root)
    except ValueError:  # different drives on Windows
        return False


_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is larger than the file system or a file size limit allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a file stands where a storage folder should be",
    errno.EEXIST: "a file stands where a storage folder should be",
    errno.EISDIR: "a folder stands where the image file should be",
    errno.EIO: "the disk reported an input/output error",
}


def _describe(error: OSError) -> str:
    """A readable reason without echoing filesystem paths back to clients."""
    if error.errno in _REASONS:
        return _REASONS[error.errno]
    return error.strerror or type(error).__name__
