"""The names the image storages give their files, shared by the folder and the object store.

Images are ``<YYYY-MM-DD>/<32 hex>.<ext>`` (a fresh UUID per file, so two generations never share
a name, and a folder per day, so no folder or listing grows without bound); each thumbnail lies
beside its image as ``<YYYY-MM-DD>/<32 hex>.<ext>.thumb.webp`` (the domain's
``StoredImage.thumbnail``). Temporaries are ``<YYYY-MM-DD>/.tmp-<32 hex>`` (a folder's interrupted
writes) and ``.tmp-probe-<32 hex>`` (a write probe). A storage lists and removes only these names,
so ``imagestudio doctor`` never mistakes a user's own files for leftovers. Both storages use the
same names, so a folder copied into a bucket (or back) needs no renaming.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import re
import uuid
from typing import Final

from imagestudio.domain.model import THUMBNAIL_SUFFIX

__all__ = [
    "ALLOWED_EXTENSIONS",
    "CHUNK_BYTES",
    "DAY_FOLDER",
    "DEFAULT_MAX_READ_BYTES",
    "IMAGE_KEY",
    "IMAGE_NAME",
    "PROBE_NAME",
    "TEMP_NAME",
    "TEMP_PREFIX",
    "THUMBNAIL_NAME",
    "media_type",
    "new_image_key",
    "probe_name",
    "too_large",
]

TEMP_PREFIX: Final = ".tmp-"
DEFAULT_MAX_READ_BYTES: Final = 32 * 1024 * 1024
"""The largest file read as an input image: the request body limit (``Config.max_body_size``)."""
CHUNK_BYTES: Final = 1024 * 1024
"""The bytes ``open`` hands out at a time (Litestar's ``File`` used the same)."""
ALLOWED_EXTENSIONS: Final = frozenset({"jpg", "png", "webp"})
DAY_FOLDER: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
IMAGE_NAME: Final = re.compile(r"[0-9a-f]{32}\.(?:jpg|png|webp)")
IMAGE_KEY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9a-f]{32}\.(?:jpg|png|webp)")
THUMBNAIL_NAME: Final = re.compile(r"[0-9a-f]{32}\.(?:jpg|png|webp)" + re.escape(THUMBNAIL_SUFFIX))
TEMP_NAME: Final = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{32}")
PROBE_NAME: Final = re.compile(re.escape(TEMP_PREFIX) + r"probe-[0-9a-f]{32}")


def new_image_key(extension: str) -> str:
    """A fresh image key of today (UTC): ``<YYYY-MM-DD>/<32 hex>.<extension>``."""
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"{day}/{uuid.uuid4().hex}.{extension}"


def probe_name() -> str:
    """A fresh name for a write probe (``.tmp-probe-<32 hex>``)."""
    return f"{TEMP_PREFIX}probe-{uuid.uuid4().hex}"


def media_type(key: str) -> str:
    """The media type a stored file is served with, told by its name."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def too_large(limit: int) -> str:
    """The message for an input image over ``limit`` bytes."""
    return f"The image file is larger than {limit / 2**20:g} MiB, the most an input image may be"
