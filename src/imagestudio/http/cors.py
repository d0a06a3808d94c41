"""CORS: only allowed origins get ``Access-Control-Allow-Origin``; a refused preflight is 403.

Applied by :class:`ShellGuard` rather than by Litestar's CORS middleware, so that the Host check
runs before anything else, preflights included (``http/security.py`` says why).
"""

from __future__ import annotations

from typing import cast

from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.types import Message, Scope, Send

from imagestudio.http.scope import _header

__all__: list[str] = []

_SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})


class _Cors:
    """CORS for the allowed origins of a :class:`CORSConfig` (``http/app.py: cors_config``).

    Answers of an allowed origin carry ``Access-Control-Allow-Origin`` (that origin, never ``*``)
    and the exposed headers; every answer to a request with ``Origin`` carries ``Vary: Origin``.
    A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
    here: 204 with the allowed methods and headers, or 403 ``FORBIDDEN`` in the error shape for a
    foreign origin, a method or a header that is not allowed.
    """

    def __init__(self, config: CORSConfig) -> None:
        self.config = config
        self._methods = frozenset(method.upper() for method in config.allow_methods)
        self._headers = frozenset(name.lower() for name in config.allow_headers) | _SAFELISTED_HEADERS
        self._exposed = ", ".join(config.expose_headers).encode("latin-1")
        self._preflight_headers = [
            (b"access-control-allow-methods", ", ".join(sorted(self._methods)).encode("latin-1")),
            (b"access-control-allow-headers", ", ".join(config.allow_headers).encode("latin-1")),
            (b"access-control-max-age", str(config.max_age).encode()),
            (b"vary", b"Origin"),
        ]

    def allows(self, origin: str) -> bool:
        return self.config.is_origin_allowed(origin)

    def wrap(self, send: Send, origin: str) -> Send:
        """``send`` with the CORS headers for ``origin`` added to the answer (a new header list:
        the one handed in, perhaps a kept answer's, is never changed)."""
        added = [(b"vary", b"Origin")]
        if self.allows(origin):
            added = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", self._exposed),
                *added,
            ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                varies = any(key.lower() == b"vary" and b"origin" in value.lower() for key, value in headers)
                headers.extend(added[:-1] if varies else added)
                message = cast("Message", {**message, "headers": headers})
            await send(message)

        return send_with_cors

    def preflight_refusal(self, scope: Scope, origin: str) -> HTTPException | None:
        """Why a preflight from ``origin`` is refused, or ``None`` if it is allowed."""
        if not self.allows(origin):
            return PermissionDeniedException(
                detail=f"CORS preflight refused: origin {origin[:200]!r} is not allowed"
                " (IMAGESTUDIO_CORS_ORIGINS lists the allowed ones)"
            )
        method = (_header(scope, b"access-control-request-method") or "").strip().upper()
        if method not in self._methods:
            return PermissionDeniedException(
                detail=f"CORS preflight refused: method {method[:40]!r} is not allowed"
                f" (allowed: {', '.join(sorted(self._methods))})"
            )
        requested = _header(scope, b"access-control-request-headers") or ""
        refused = [name.strip() for name in requested.split(",") if name.strip().lower() not in self._headers]
        refused = [name for name in refused if name]
        if refused:
            return PermissionDeniedException(
                detail=f"CORS preflight refused: header {refused[0][:60]!r} is not allowed"
                f" (allowed: {', '.join(self.config.allow_headers)})"
            )
        return None

    async def answer_preflight(self, send: Send, origin: str) -> None:
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), *self._preflight_headers]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
