"""Reading a raw ASGI scope: a request header's value as text.

The protections (``http/security.py`` and its parts) run before Litestar has made a ``Request``
of the scope, so they read its headers themselves.
"""

from __future__ import annotations

from litestar.types import Scope

from imagestudio.http.cache import header

__all__: list[str] = []


def _header(scope: Scope, name: bytes) -> str | None:
    value = header(scope.get("headers", ()), name)
    return None if value is None else value.decode("latin-1")
