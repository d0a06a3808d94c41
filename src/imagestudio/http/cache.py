"""Encoded answers of ``GET /api/history``, ``GET /api/tags`` and ``GET /health`` kept between
requests, with ``ETag`` and ``304 Not Modified``.

A gallery asks for the same pages of the history over and over while nothing changes; making
each answer again means a database read and 50 items mapped and encoded, about 1.5 ms of a
one-worker server's time. A monitor polls ``/health``, whose answer never changes while the
server runs. This cache keeps the bytes of recent answers and serves them again for as long as
their *version* stays the one they were made under:

- a history page's version (and the tag list's) is ``ListHistory.version()`` (on SQLite the
  database's ``data_version``: any commit by any process moves it). It is read *before* the
  page is made, so a page is never kept under a newer version than the data it shows;
- ``/health`` has one version for the life of the server (its engine and version are fixed).

Each kept answer carries an ``ETag`` (a hash of its bytes) and ``Cache-Control: no-cache``; a
client that sends it back in ``If-None-Match`` gets ``304 Not Modified`` and no body while the
answer is unchanged. Where no version can be told (PostgreSQL, a database in memory) history
pages are not kept and carry no ``ETag``.

Only 200 answers are kept, keyed on everything they depend on: the path, the query string and
the base URL (scheme, ``Host``, root path) that image URLs are built from. CORS headers are not
part of a kept answer: ``ShellGuard`` adds them to each request's copy for that request's
``Origin``, and every kept answer says ``Vary: Origin``, so no origin is ever shown another's
``Access-Control-Allow-Origin``. At most
``max_entries`` answers of at most ``max_entry_bytes`` each and ``max_bytes`` in all, the least
recently used dropped first. ``ShellGuard`` (``http/security.py``) calls the cache after its
checks, so the token and the rate limit apply to every request.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from litestar.types import ASGIApp, HTTPScope, Message, Receive, Send

__all__ = ["ResponseCache", "header"]

_MB = 1024 * 1024
_HEALTH = ("health",)
_VARY = (b"vary", b"Origin")


def _is_cors(name: bytes) -> bool:
    return name.lower().startswith(b"access-control-")


def _history_version(services: Any) -> object | None:
    version: object | None = services.list_history.version()
    return version


def _health_version(_services: Any) -> object:
    return _HEALTH


_VERSIONS: dict[str, Callable[[Any], object | None]] = {
    "/api/history": _history_version,
    "/api/history/": _history_version,
    "/api/tags": _history_version,
    "/health": _health_version,
    "/health/": _health_version,
}


@dataclass(frozen=True, slots=True)
class _Entry:
    version: object
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of the header ``name`` (lower case) in ASGI ``headers``."""
    for key, value in headers:
        if key.lower() == name:
            return bytes(value)
    return None


def _matches(if_none_match: bytes | None, etag: bytes) -> bool:
    """RFC 9110 weak comparison of ``If-None-Match`` against our (strong) tag."""
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(b","):
        tag = candidate.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


class ResponseCache:
    """Serves repeated ``GET`` answers of the cached paths from memory while their version holds."""

    def __init__(
        self, *, max_entries: int = 64, max_entry_bytes: int = 2 * _MB, max_bytes: int = 16 * _MB
    ) -> None:
        self.max_entries = max_entries
        self.max_entry_bytes = max_entry_bytes
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def serves(http: HTTPScope) -> bool:
        """Whether this request is one the cache answers (the caller checks the method is GET)."""
        return http["path"] in _VERSIONS

    async def __call__(self, http: HTTPScope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Answer from memory, or from ``next_app`` and keep the answer."""
        services = getattr(http["litestar_app"].state, "services", None)
        version = None if services is None else _VERSIONS[http["path"]](services)
        if version is None:
            await next_app(http, receive, send)
            return
        headers = http["headers"]
        key = (
            http["path"],
            http["query_string"],
            http["scheme"],
            header(headers, b"host") or repr(http.get("server")).encode(),
            http.get("root_path", ""),
        )
        if_none_match = header(headers, b"if-none-match")
        entry = self._entries.get(key)
        if entry is not None and entry.version == version:
            self._entries.move_to_end(key)
            await self._answer(send, entry, if_none_match)
            return
        await next_app(http, receive, self._capture(send, key, version, if_none_match))

    async def _answer(self, send: Send, entry: _Entry, if_none_match: bytes | None) -> None:
        if _matches(if_none_match, entry.etag):
            not_modified = [(b"etag", entry.etag), (b"cache-control", b"no-cache"), _VARY]
            await send({"type": "http.response.start", "status": 304, "headers": not_modified})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # a copy: a layer outside may add to the headers it is handed, and they must not stick
        await send({"type": "http.response.start", "status": 200, "headers": list(entry.headers)})
        await send({"type": "http.response.body", "body": entry.body, "more_body": False})

    def _keep(self, key: tuple[Any, ...], entry: _Entry) -> None:
        replaced = self._entries.pop(key, None)
        if replaced is not None:
            self._bytes -= len(replaced.body)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped.body)

    @property
    def kept_bytes(self) -> int:
        """The bytes of the answers kept now (at most ``max_bytes``)."""
        return self._bytes

    def _capture(
        self, send: Send, key: tuple[Any, ...], version: object, if_none_match: bytes | None
    ) -> Send:
        """A ``send`` that holds a 200 answer until its body is complete, then keeps and sends it.

        Anything else (another status, a body over ``max_entry_bytes``) passes through as it came.
        """
        held: dict[str, Any] | None = None
        chunks: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal held, size
            if message["type"] == "http.response.start" and message["status"] == 200:
                held = dict(message)
                return
            if message["type"] != "http.response.body" or held is None:
                await send(message)
                return
            chunk = bytes(message.get("body", b""))
            chunks.append(chunk)
            size += len(chunk)
            more = bool(message.get("more_body", False))
            if size > self.max_entry_bytes:  # too big to keep: let it through from here on
                start, held = held, None
                await send(cast("Message", start))
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": more})
                chunks.clear()
                return
            if more:
                return
            body = b"".join(chunks)
            etag = b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'
            headers = [
                *(item for item in held.get("headers", ()) if not _is_cors(item[0])),
                (b"etag", etag),
                (b"cache-control", b"no-cache"),
                _VARY,
            ]
            entry = _Entry(version=version, headers=headers, body=body, etag=etag)
            self._keep(key, entry)
            held = None
            await self._answer(send, entry, if_none_match)

        return capture
