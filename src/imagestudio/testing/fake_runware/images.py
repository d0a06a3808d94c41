"""The images a fake Runware keeps: results and uploads stored, input images resolved, downloads served.

Input images may be an ``imageUUID`` the fake handed out, a data URI, bare base64 or one of its
image URLs (Runware fetches public URLs; the fake only knows its own images, so only those
resolve). The store keeps the most recent ``keep_images``, under the lock of :class:`~.state._State`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from typing import Any, Final
from urllib.parse import urlsplit

from imagestudio.testing.fake_runware.pictures import _MEDIA_TYPES, _image_extension
from imagestudio.testing.fake_runware.protocol import (
    _IMAGE_PATH,
    _UUID,
    Scope,
    Send,
    _capitalised,
    _headers,
    _send,
    _task_error,
)
from imagestudio.testing.fake_runware.state import _Image, _State

_DATA_URI: Final = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,", re.ASCII)


class _ImageStore(_State):
    """A fake Runware's image store and image downloads."""

    def _store(self, data: bytes, extension: str) -> str:
        image_uuid = str(uuid.uuid4())
        with self._lock:
            self._images[image_uuid] = _Image(data, extension)
            while len(self._images) > self._keep_images:
                self._images.popitem(last=False)
        return image_uuid

    async def _image_parameter(
        self, inputs: dict[str, Any], name: str, base_url: str, *, required: bool
    ) -> _Image | None:
        value = inputs.get(name)
        if value is None:
            if required:
                raise _task_error(
                    f"missing{_capitalised(name)}",
                    f"Missing required parameter 'inputs.{name}'.",
                    parameter=f"inputs.{name}",
                )
            return None
        return await self._image_value(value, f"inputs.{name}", base_url)

    async def _image_value(self, value: Any, parameter: str, base_url: str) -> _Image:
        """An input image given as an image UUID, a data URI, bare base64 or one of our image URLs."""
        leaf = parameter.rsplit(".", 1)[-1]
        invalid = _task_error(
            f"invalid{_capitalised(leaf)}",
            f"Invalid value for '{parameter}'. Send an image UUID, a data URI, base64 data or a public"
            " image URL of a PNG, JPG or WEBP image.",
            parameter=parameter,
        )
        if not isinstance(value, str) or not value:
            raise invalid
        data: bytes | None
        if _UUID.fullmatch(value):
            with self._lock:
                stored = self._images.get(value.lower())
            data = stored.data if stored else None
        elif value.startswith(("http://", "https://")):
            data = self._own_image(value, base_url)
        else:
            data = _decode_base64(value)
        extension = await asyncio.to_thread(_image_extension, data) if data else None
        if data is None or extension is None:
            raise invalid
        return _Image(data, extension)

    def _own_image(self, url: str, base_url: str) -> bytes | None:
        """Runware fetches public URLs; the fake only knows its own images, so only those resolve."""
        parts = urlsplit(url)
        match = _IMAGE_PATH.fullmatch(parts.path)
        if match is None or parts.netloc != urlsplit(base_url).netloc:
            return None
        with self._lock:
            stored = self._images.get(match[1])
        return stored.data if stored is not None and stored.extension == match[2] else None

    async def _serve_image(self, scope: Scope, send: Send, image_uuid: str, extension: str) -> None:
        with self._lock:
            self._downloads += 1
            if "authorization" in _headers(scope):
                self._downloads_with_credentials += 1
            stored = self._images.get(image_uuid)
        if stored is None or stored.extension != extension:
            await _send(send, 404, b"Not Found", "text/plain")
            return
        await _send(send, 200, stored.data, _MEDIA_TYPES[extension])


def _decode_base64(value: str) -> bytes | None:
    """A data URI's or bare base64's bytes; ``None`` if it is neither."""
    prefix = _DATA_URI.match(value)
    try:
        return base64.b64decode(value[prefix.end() :] if prefix else value, validate=True)
    except (binascii.Error, ValueError):
        return None
