"""Object store adapter for the ``ImageStorage`` port: any S3-compatible bucket, through obstore.

``IMAGESTUDIO_STORAGE_URL=s3://bucket/prefix`` names the bucket and a prefix inside it; the
endpoint, region and credentials come from the usual ``AWS_*`` variables, which obstore reads
(``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``; ``AWS_ALLOW_HTTP=true`` for an endpoint without TLS). Every server given
the same URL shares every image.

Layout: a root (``StoredImage.root``, what rows keep) is a relative prefix under the URL's prefix,
the ``storagePath`` setting made canonical (``./generated`` -> ``generated``, ``.`` the prefix
itself); an image is ``<prefix>/<root>/<YYYY-MM-DD>/<32 hex>.<ext>`` and its thumbnail beside it,
with the names ``adapters/naming.py`` gives (the folder storage's, so a folder copied into the
bucket is found under the same rows). A ``storagePath`` that is absolute or climbs (``..``) is no
prefix of the bucket: ``ensure_writable`` refuses it on ``storagePath``, and a root of that form
(a row written to a local folder before the server used the bucket) is outside this storage: its
images are not found here, and nothing is written, listed or deleted there.

Objects are written with one request each (a put is atomic: no temporaries), with the image's
``Content-Type`` and the ``Cache-Control`` the image route sends, so a client redirected to the
object (``link``) gets the same answer. Reads check the object's size (from the answer's headers)
before a byte of the body is read; ``open`` streams the body in chunks of at least
``CHUNK_BYTES`` as the client takes them, never holding the whole object.

``link`` hands out a presigned ``GET`` URL valid for ``LINK_LIFETIME`` when the storage was made
with ``redirect=True`` (``IMAGESTUDIO_STORAGE_REDIRECT``), after checking that the object is there.

Failures become ``StorageError`` with a short reason; the store's own message (which names the
endpoint and request ids) goes to the log only, never into an answer.

Exit: a request obstore has answered still lets go of its Python buffers a moment later, on one
of its own threads; if the interpreter is already shutting down then, that thread cannot take
the GIL and the process aborts (SIGABRT; one short CLI run in thirty did). So an ``atexit`` hook
waits until ``_SETTLE_SECONDS`` have passed since the last request answered (a process that made
none, or made it earlier, waits not at all).
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Final

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from imagestudio.adapters.naming import (
    ALLOWED_EXTENSIONS,
    CHUNK_BYTES,
    DAY_FOLDER,
    DEFAULT_MAX_READ_BYTES,
    IMAGE_KEY,
    IMAGE_NAME,
    PROBE_NAME,
    TEMP_NAME,
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

if TYPE_CHECKING:
    from obstore import BytesStream, GetResult, ObjectMeta
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["CACHE_CONTROL", "LINK_LIFETIME", "ObjectImageStorage"]

log = get_logger(__name__)

LINK_LIFETIME: Final = dt.timedelta(minutes=10)
"""How long a presigned URL handed out by ``link`` stays valid."""
CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
"""What an object's ``Cache-Control`` says: a stored name is never reused for other bytes."""
_CLIENT: Final[ClientConfig] = {
    "connect_timeout": dt.timedelta(seconds=5),
    # a whole request, body included: a slow client takes a big image at its own pace
    "timeout": dt.timedelta(minutes=10),
    "read_timeout": dt.timedelta(seconds=60),  # but a store that stops sending is given up
}
_RETRY: Final[RetryConfig] = {"max_retries": 3, "retry_timeout": dt.timedelta(seconds=20)}
_OUTSIDE_BUCKET = (
    "With object storage (IMAGESTUDIO_STORAGE_URL), storagePath is a folder inside the bucket:"
    " a relative path such as ./generated, without '..'"
)
_NOT_IN_BUCKET = (
    "The storage folder in the settings is not a folder inside the bucket, so nothing is written"
    " there: set storagePath (PUT /api/settings) to a relative folder such as ./generated"
)
_DRIVE = re.compile(r"[A-Za-z]:")
_SETTLE_SECONDS: Final = 0.25
"""How long after its last answered request a process waits before the interpreter shuts down."""


class _Settling:
    """When the last request of this process was answered, and the wait at exit for it to settle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: float | None = None

    def mark(self) -> None:
        with self._lock:
            self._last = time.monotonic()

    def wait(self) -> None:
        with self._lock:
            last = self._last
        if last is not None:
            time.sleep(max(0.0, last + _SETTLE_SECONDS - time.monotonic()))


_settling = _Settling()
atexit.register(_settling.wait)


class ObjectImageStorage:
    """Stores images in an S3-compatible bucket under the prefix of ``url`` (``s3://bucket/prefix``).

    ``store`` is the obstore store for that bucket and prefix (:meth:`from_url` makes it from the
    URL and the ``AWS_*`` environment); ``redirect`` makes ``link`` hand out presigned URLs.
    """

    def __init__(
        self,
        store: S3Store,
        *,
        url: str,
        redirect: bool = False,
        max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
        link_lifetime: dt.timedelta = LINK_LIFETIME,
    ) -> None:
        self.store = store
        self.url = url.rstrip("/")
        self.redirect = redirect
        self.max_read_bytes = max_read_bytes
        self.link_lifetime = link_lifetime

    @classmethod
    def from_url(
        cls, url: str, *, redirect: bool = False, max_read_bytes: int = DEFAULT_MAX_READ_BYTES
    ) -> ObjectImageStorage:
        """The storage of ``url``; obstore reads the endpoint, region and credentials from the
        ``AWS_*`` variables of the environment now."""
        client: ClientConfig = {**_CLIENT}
        if os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true", "yes", "on"):
            client["allow_http"] = True  # obstore reads it only when no client options are given
        store = S3Store.from_url(url, client_options=client, retry_config=_RETRY)
        return cls(store, url=url, redirect=redirect, max_read_bytes=max_read_bytes)

    def owns(self, key: str) -> bool:
        return IMAGE_KEY.fullmatch(key) is not None

    def location(self, root: str) -> str:
        canonical = _canonical(root)
        if canonical is None:
            return root  # a local folder of some machine: not in the bucket
        return self.url if canonical == "." else f"{self.url}/{canonical}"

    # --- port -----------------------------------------------------------------------------

    async def save(self, data: bytes, extension: str, storage_path: str) -> StoredImage:
        if extension not in ALLOWED_EXTENSIONS:
            raise StorageError(f"Refusing to store an image with extension {extension!r}")
        root = _canonical(storage_path)
        if root is None:
            raise InvalidStoragePath(_NOT_IN_BUCKET, details={"field": "storagePath"})
        image = StoredImage(key=new_image_key(extension), root=root)
        await self._put(_object_path(root, image.key), data, image.key, "write the image")
        return image

    async def save_thumbnail(self, image: StoredImage, data: bytes) -> StoredImage:
        if not self.owns(image.key):
            raise StorageError("Refusing to store a thumbnail for a file this storage did not name")
        root = _canonical(image.root)
        if root is None:
            raise InvalidStoragePath(_NOT_IN_BUCKET, details={"field": "storagePath"})
        thumbnail = image.thumbnail
        await self._put(_object_path(root, thumbnail.key), data, thumbnail.key, "write the thumbnail")
        return thumbnail

    async def read(self, image: StoredImage) -> bytes:
        return await self._read_bounded(self._path_of(image))

    async def read_reference(self, key: str, storage_path: str) -> bytes:
        if not self.owns(key):  # decided on the text alone: nothing is asked of the store
            raise InvalidParameters("Not the name of an image this storage made")
        root = _canonical(storage_path)
        if root is None:
            raise InvalidStoragePath(_NOT_IN_BUCKET, details={"field": "storagePath"})
        return await self._read_bounded(_object_path(root, key))

    async def delete(self, image: StoredImage) -> None:
        root = _canonical(image.root)
        if root is None or not _plain_key(image.key):
            # a row of a local folder (before the bucket): its row goes, nothing here is touched
            log.warning("image outside the object store left alone", key=image.key, root=image.root)
            return
        doomed = [image.thumbnail, image] if self.owns(image.key) else [image]  # no thumbnail outlives it
        for file in doomed:
            try:
                await obstore.delete_async(self.store, _object_path(root, file.key))
            except FileNotFoundError:
                continue
            except (BaseError, OSError, ValueError) as error:
                raise _failure(error, "delete the image") from error
            finally:
                _settling.mark()

    async def open(self, image: StoredImage) -> StoredStream:
        result = await self._get(self._path_of(image))
        meta = result.meta
        return StoredStream(
            size=meta["size"],
            media_type=media_type(image.key),
            chunks=_ObjectChunks(result.stream(min_chunk_size=CHUNK_BYTES), meta["size"]),
            modified_at=meta["last_modified"],
            etag=_entity_tag(meta),
        )

    async def local_path(self, image: StoredImage) -> str | None:
        await self._head(self._path_of(image))  # NotFound / StorageError as for open
        return None

    async def link(self, image: StoredImage) -> str | None:
        if not self.redirect:
            return None
        path = self._path_of(image)
        await self._head(path)  # a missing image is a 404 here, not an error page of the store
        try:
            return await obstore.sign_async(self.store, "GET", path, self.link_lifetime)
        except (BaseError, OSError, ValueError) as error:
            raise _failure(error, "sign a link to the image") from error
        finally:
            _settling.mark()

    async def ensure_writable(self, storage_path: str) -> str:
        root = _canonical(storage_path)
        if root is None:  # before anything is written
            raise InvalidParameters(_OUTSIDE_BUCKET, field="storagePath")
        probe = _object_path(root, probe_name())
        try:
            await obstore.put_async(self.store, probe, b"")
            await obstore.delete_async(self.store, probe)
        except (BaseError, OSError, ValueError) as error:
            _settling.mark()
            reason = _failure(error, "write to the bucket").message
            raise InvalidStoragePath(
                f"Storage cannot be written: {reason}", details={"field": "storagePath"}
            ) from error
        _settling.mark()
        return self.location(root)

    async def root_of(self, storage_path: str) -> str:
        canonical = _canonical(storage_path)
        return storage_path.strip() if canonical is None else canonical

    async def confined(self, root: str) -> bool:
        return _canonical(root) is not None

    async def scan(self, root: str) -> list[StoredFile]:
        canonical = _canonical(root)
        if canonical is None:
            raise InvalidStoragePath("Refusing to scan a folder outside the bucket")
        start = "" if canonical == "." else canonical + "/"
        found: list[StoredFile] = []
        try:
            async for batch in obstore.list(self.store, prefix=start or None, chunk_size=1000):
                for meta in batch:
                    name = meta["path"][len(start) :]
                    temporary = _temporary(name)
                    if temporary is None:
                        continue
                    found.append(
                        StoredFile(
                            image=StoredImage(key=name, root=root),
                            temporary=temporary,
                            size=meta["size"],
                            modified_at=meta["last_modified"],
                        )
                    )
        except (BaseError, OSError, ValueError) as error:
            raise _failure(error, "list the storage") from error
        finally:
            _settling.mark()
        return sorted(found, key=lambda file: file.image.key)

    # --- requests ---------------------------------------------------------------------------

    def _path_of(self, image: StoredImage) -> str:
        """The object of a stored image; ``NotFound`` for one this bucket cannot hold (a root of a
        local folder, a key that climbs)."""
        root = _canonical(image.root)
        if root is None or not _plain_key(image.key):
            raise NotFound("Image not found")
        return _object_path(root, image.key)

    async def _put(self, path: str, data: bytes, key: str, doing: str) -> None:
        attributes = {"Content-Type": media_type(key), "Cache-Control": CACHE_CONTROL}
        try:
            await obstore.put_async(self.store, path, data, attributes=attributes)
        except (BaseError, OSError, ValueError) as error:
            raise _failure(error, doing) from error
        finally:
            _settling.mark()

    async def _get(self, path: str) -> GetResult:
        try:
            return await obstore.get_async(self.store, path)
        except FileNotFoundError as error:
            raise NotFound("Image not found") from error
        except (BaseError, OSError, ValueError) as error:
            raise _failure(error, "read the image") from error
        finally:
            _settling.mark()

    async def _head(self, path: str) -> ObjectMeta:
        try:
            return await obstore.head_async(self.store, path)
        except FileNotFoundError as error:
            raise NotFound("Image not found") from error
        except (BaseError, OSError, ValueError) as error:
            raise _failure(error, "read the image") from error
        finally:
            _settling.mark()

    async def _read_bounded(self, path: str) -> bytes:
        """The object's bytes, at most ``max_read_bytes``: its size (from the answer's headers) is
        checked before a byte of its body is read."""
        result = await self._get(path)
        if result.meta["size"] > self.max_read_bytes:
            raise InvalidParameters(too_large(self.max_read_bytes))
        chunks = _ObjectChunks(result.stream(min_chunk_size=CHUNK_BYTES), self.max_read_bytes + 1)
        data = bytearray()
        try:
            async for chunk in chunks:
                data += chunk
                if len(data) > self.max_read_bytes:
                    raise InvalidParameters(too_large(self.max_read_bytes))
        finally:
            await chunks.aclose()
        return bytes(data)


class _ObjectChunks:
    """The body of a get, a chunk at a time as the reader asks for it; never more than ``limit``
    bytes (the size announced). ``aclose()`` drops the stream, which ends its request."""

    def __init__(self, stream: BytesStream, limit: int) -> None:
        self._stream: BytesStream | None = stream
        self._left = limit

    def __aiter__(self) -> _ObjectChunks:
        return self

    async def __anext__(self) -> bytes:
        stream = self._stream
        if stream is None or self._left <= 0:
            self._stream = None
            raise StopAsyncIteration
        try:
            chunk = await stream.__anext__()
        except StopAsyncIteration:
            self._stream = None
            raise
        except (BaseError, OSError, ValueError) as error:
            self._stream = None
            raise _failure(error, "read the image") from error
        finally:
            _settling.mark()
        chunk = chunk[: self._left]
        self._left -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._stream = None


def _canonical(text: str) -> str | None:
    """A storage path or root as a prefix inside the bucket (``./generated`` -> ``generated``,
    ``.`` for the prefix itself), or ``None`` when it is none: absolute (``/``, ``~``, a drive),
    climbing (``..``) or written with backslashes."""
    text = text.strip()
    if not text or "\\" in text or text.startswith(("/", "~")) or _DRIVE.match(text):
        return None
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts) or "."


def _plain_key(key: str) -> bool:
    """Whether a key names an object below its root (no empty, ``.`` or ``..`` part)."""
    return bool(key) and all(part not in ("", ".", "..") for part in key.split("/"))


def _object_path(root: str, key: str) -> str:
    return key if root == "." else f"{root}/{key}"


def _temporary(name: str) -> bool | None:
    """For a name under a root: ``False`` for an image or thumbnail this storage gives, ``True``
    for one of its temporaries, ``None`` for anything else (never listed)."""
    parts = name.split("/")
    if len(parts) == 1:
        return True if PROBE_NAME.fullmatch(name) else None
    if len(parts) != 2 or not DAY_FOLDER.fullmatch(parts[0]):
        return None
    if IMAGE_NAME.fullmatch(parts[1]) or THUMBNAIL_NAME.fullmatch(parts[1]):
        return False
    return True if TEMP_NAME.fullmatch(parts[1]) else None


def _entity_tag(meta: ObjectMeta) -> str | None:
    tag = meta["e_tag"]
    if not tag:
        return None
    return tag if tag.startswith(('"', 'W/"')) else f'"{tag}"'


def _failure(error: Exception, doing: str) -> StorageError:
    """A ``StorageError`` saying what failed in a few words; the store's message is logged."""
    if isinstance(error, PermissionDeniedError):
        reason = "the object store denied access"
    elif isinstance(error, UnauthenticatedError):
        reason = "the object store refused the credentials"
    elif isinstance(error, FileNotFoundError) or "404 Not Found" in str(error):
        reason = "the bucket was not found"  # a write or a listing: no such bucket
    else:
        reason = "the object store could not be reached or failed"
    detail = str(error).strip().splitlines()
    log.warning(
        "object store request failed",
        doing=doing,
        error=type(error).__name__,
        detail=detail[0] if detail else "",
    )
    return StorageError(f"Could not {doing}: {reason}")
