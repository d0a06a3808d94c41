"""A request body into a command: held against the byte budget of queued work, read, then
decoded and validated (off the event loop when it is big).

The generation and settings routes read their bodies this way (``http/bodies.py`` does the
reading and decoding); the hold is what refuses a flood of big bodies before they are buffered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from litestar import Request

from imagestudio.domain.errors import QueueFull
from imagestudio.domain.tasks import Hold
from imagestudio.http.bodies import OFF_LOOP_BYTES, prepare_body, read_body
from imagestudio.services import Services

__all__: list[str] = []

T = TypeVar("T")


class _BodyHold:
    """The bytes of one large request body, held against the byte budget of queued work
    (``IMAGESTUDIO_MAX_QUEUED_BYTES``) while the request lives.

    A body of :data:`OFF_LOOP_BYTES` or more is held from before its first byte is read (by its
    ``Content-Length``; a chunked body once it has arrived), so a flood of big bodies is refused
    with 503 ``QUEUE_FULL`` instead of being buffered: the body, and then the command decoded
    from it (a data URI is a string as long as the body), stay in memory until the answer.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._hold: Hold | None = None

    def take(self, size: int | None) -> None:
        if self._hold is None and size is not None and size >= OFF_LOOP_BYTES:
            self._hold = self._services.tasks.hold(size)

    def release(self) -> None:
        if self._hold is not None:
            self._hold.release()


@asynccontextmanager
async def _holding_body(services: Services) -> AsyncIterator[_BodyHold]:
    held = _BodyHold(services)
    try:
        yield held
    finally:
        held.release()


async def _prepared(
    request: Request[Any, Any, Any], prepare: Callable[[bytes | bytearray], T], held: _BodyHold
) -> T:
    """The body decoded and validated by ``prepare``, off the event loop when it is big; its bytes
    are counted in ``held`` first."""
    try:
        held.take(request.content_length)
    except QueueFull:
        # read and drop the body (in chunks, keeping none) so that the client, still sending,
        # reads the 503 instead of a connection reset; the server's body deadline bounds this
        async for _chunk in request.stream():
            pass
        raise
    raw = await read_body(request.stream(), request.content_length)
    held.take(len(raw))
    return await prepare_body(raw, prepare, request.app.state.body_limiter)
