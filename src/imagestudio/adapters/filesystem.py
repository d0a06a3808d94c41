"""Filesystem adapter for the ``ImageStorage`` port.

Images live under a storage folder as ``<YYYY-MM-DD>/<uuid>.<ext>``: a fresh UUID per file, so two
generations never share a name, and a folder per day, so no directory grows without bound.
Writes are atomic: the bytes go to a hidden temporary file in the target folder, are flushed to
disk, and are then renamed into place. Every call runs in a worker thread.

``scan`` lists only the names this adapter gives (``<YYYY-MM-DD>/<32 hex>.<ext>`` images, ``.tmp-*``
temporaries), never following a symbolic link, so ``imagestudio doctor`` cannot mistake a user's
own files in the storage folder for leftovers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import stat
import uuid
from pathlib import Path

import anyio.to_thread

from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, NotFound, StorageError
from imagestudio.domain.model import StoredImage
from imagestudio.domain.ports import StoredFile

__all__ = ["TEMP_PREFIX", "FilesystemImageStorage"]

TEMP_PREFIX = ".tmp-"
_ALLOWED_EXTENSIONS = frozenset({"jpg", "png", "webp"})
_MAX_REFERENCE = 4096
_DAY_FOLDER = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_IMAGE_NAME = re.compile(r"[0-9a-f]{32}\.(?:jpg|png|webp)")
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{32}")
_PROBE_NAME = re.compile(re.escape(TEMP_PREFIX) + r"probe-[0-9a-f]{32}")


class FilesystemImageStorage:
    """Stores images in folders on the local disk.

    ``data_dir`` anchors relative storage paths (CONTRACT.md section 1: "a relative
    ``storagePath`` resolves against the data dir").
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir).resolve()

    def root_for(self, storage_path: str) -> Path:
        """The absolute folder that ``storage_path`` names."""
        try:
            path = Path(storage_path).expanduser()
        except RuntimeError as error:  # "~someone" for a user this machine does not have
            raise InvalidStoragePath(
                "storagePath names the home folder of an unknown user", details={"field": "storagePath"}
            ) from error
        if not path.is_absolute():
            path = self.data_dir / path
        return Path(os.path.normpath(path))

    # --- port -----------------------------------------------------------------------------

    async def save(self, data: bytes, extension: str, storage_path: str) -> StoredImage:
        if extension not in _ALLOWED_EXTENSIONS:
            raise StorageError(f"Refusing to store an image with extension {extension!r}")
        root = self.root_for(storage_path)
        return await anyio.to_thread.run_sync(self._save_sync, data, extension, root)

    async def read(self, image: StoredImage) -> bytes:
        return await anyio.to_thread.run_sync(self._read_stored_sync, image)

    async def read_reference(self, reference: str, storage_path: str) -> bytes:
        root = self.root_for(storage_path)
        return await anyio.to_thread.run_sync(self._read_reference_sync, reference, root)

    async def delete(self, image: StoredImage) -> None:
        await anyio.to_thread.run_sync(self._delete_sync, image)

    async def locate(self, image: StoredImage) -> str:
        return await anyio.to_thread.run_sync(self._locate_sync, image)

    async def ensure_writable(self, storage_path: str) -> str:
        root = self.root_for(storage_path)
        await anyio.to_thread.run_sync(self._ensure_writable_sync, root)
        return str(root)

    async def root_of(self, storage_path: str) -> str:
        return str(self.root_for(storage_path))

    async def scan(self, root: str) -> list[StoredFile]:
        return await anyio.to_thread.run_sync(self._scan_sync, Path(root))

    # --- blocking implementations -----------------------------------------------------------

    def _save_sync(self, data: bytes, extension: str, root: Path) -> StoredImage:
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        key = f"{day}/{uuid.uuid4().hex}.{extension}"
        final = root / key
        temp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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
            raise StorageError(f"Could not write the image: {_describe(error)}") from error
        return StoredImage(key=key, root=str(root))

    def _path_of(self, image: StoredImage) -> Path:
        root = Path(image.root)
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
        if not _is_inside(real, Path(image.root).resolve()) or not real.is_file():
            raise NotFound("Image not found")
        return real

    def _read_stored_sync(self, image: StoredImage) -> bytes:
        return _read_resolved(self._real_file_of(image))

    def _locate_sync(self, image: StoredImage) -> str:
        real = self._real_file_of(image)
        try:
            # Open it once, so that an image which is there but cannot be read is a storage error
            # now, rather than a response that breaks off after its headers have gone out.
            os.close(os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)))
        except FileNotFoundError as error:
            raise NotFound("Image not found") from error
        except OSError as error:
            raise StorageError(f"Could not read the image: {_describe(error)}") from error
        return str(real)

    def _read_reference_sync(self, reference: str, root: Path) -> bytes:
        if not reference or len(reference) > _MAX_REFERENCE or "\x00" in reference:
            raise InvalidParameters("Image path is not valid")
        # no "~" expansion: a client names files in storage, not in this machine's home folders
        candidate = Path(reference.replace("\\", "/"))
        if ".." in candidate.parts:
            raise InvalidParameters("Image path must not contain '..'")
        if not candidate.is_absolute():
            candidate = root / candidate
        # Compare the lexical path first: an absolute path elsewhere is refused without touching it.
        if not _is_inside(Path(os.path.normpath(candidate)), root):
            raise InvalidParameters("Image path must be inside the storage folder")
        try:
            real = candidate.resolve(strict=True)
        except FileNotFoundError as error:
            raise NotFound("Image not found") from error
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
            raise InvalidParameters("Image path cannot be resolved") from error
        if not _is_inside(real, root.resolve()):
            raise InvalidParameters("Image path must be inside the storage folder")
        if not real.is_file():
            raise NotFound("Image not found")
        return _read_resolved(real)

    def _delete_sync(self, image: StoredImage) -> None:
        path = self._path_of(image)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as error:
            raise StorageError(f"Could not delete the image: {_describe(error)}") from error

    def _ensure_writable_sync(self, root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f"{TEMP_PREFIX}probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise InvalidStoragePath(
                f"Storage folder cannot be created or written: {_describe(error)}",
                details={"field": "storagePath"},
            ) from error

    def _scan_sync(self, root: Path) -> list[StoredFile]:
        found: list[StoredFile] = []
        try:
            for entry in _entries(root):
                if _PROBE_NAME.fullmatch(entry.name):
                    _add_file(found, root, entry, entry.name, temporary=True)
                elif _DAY_FOLDER.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                    for item in _entries(Path(entry.path)):
                        key = f"{entry.name}/{item.name}"
                        if _IMAGE_NAME.fullmatch(item.name):
                            _add_file(found, root, item, key, temporary=False)
                        elif _TEMP_NAME.fullmatch(item.name):
                            _add_file(found, root, item, key, temporary=True)
        except OSError as error:
            raise StorageError(f"Could not list the storage folder: {_describe(error)}") from error
        return found


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; none when it does not exist (or is not a folder)."""
    try:
        with os.scandir(folder) as listing:
            return list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _add_file(
    found: list[StoredFile], root: Path, entry: os.DirEntry[str], key: str, *, temporary: bool
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
            image=StoredImage(key=key, root=str(root)),
            temporary=temporary,
            size=info.st_size,
            modified_at=dt.datetime.fromtimestamp(info.st_mtime, dt.UTC),
        )
    )


def _read_resolved(real: Path) -> bytes:
    """Read a file whose real path was checked to be inside storage."""
    try:
        # O_NOFOLLOW: if the last component was swapped for a link since it was resolved, refuse it
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except FileNotFoundError as error:
        raise NotFound("Image not found") from error
    except OSError as error:
        raise StorageError(f"Could not read the image: {_describe(error)}") from error


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
