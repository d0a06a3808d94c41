"""The API token (``IMAGESTUDIO_API_TOKEN``): which paths need it and how a request presents it.

Off unless set; the health check and the API's documentation stay open. :class:`ShellGuard`
(``http/security.py``) turns a refusal into 401 ``UNAUTHORIZED`` (a WebSocket's into close 1008).
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.types import Scope

from imagestudio.http.docs import ASSETS_PATH
from imagestudio.http.scope import _header

__all__ = ["OPEN_PATHS", "OPEN_PREFIX"]

OPEN_PATHS = frozenset(
    {
        "/health",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/openapi.yaml",
        "/openapi.yml",
        "/asyncapi.json",
    }
)
"""Paths that stay open when a token is required: the health check and the API's documentation."""

OPEN_PREFIX = ASSETS_PATH + "/"
"""The documentation pages' files (``http/docs.py``) stay open too: a page cannot send the token
when it loads a script."""


def _is_open(path: str) -> bool:
    if path in OPEN_PATHS:
        return True
    # no dot segment: the open prefix must not lead anywhere else
    return path.startswith(OPEN_PREFIX) and not {".", ".."} & set(path.split("/"))


class _TokenCheck:
    """Every path but :data:`OPEN_PATHS` needs ``Authorization: Bearer <token>`` or ``X-API-Key``.

    The WebSocket may also carry it as ``?token=`` (browsers cannot set headers on one).
    Comparisons take constant time.
    """

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def _valid(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        try:
            presented = candidate.encode("ascii")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(presented, self._token)

    def _credentials(self, scope: Scope) -> list[str]:
        found = []
        authorization = _header(scope, b"authorization")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                found.append(value.strip())
        api_key = _header(scope, b"x-api-key")
        if api_key:
            found.append(api_key.strip())
        if scope["type"] == ScopeType.WEBSOCKET:
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            found.extend(value for name, value in parse_qsl(query) if name == "token")
        return found

    def refusal(self, scope: Scope) -> tuple[str, bool] | None:
        """``None`` if the request may pass, else why not and whether credentials were sent."""
        path = scope["path"].rstrip("/") or "/"
        credentials = self._credentials(scope)
        # evaluate every credential so the time taken does not tell which one was checked
        accepted = [self._valid(candidate) for candidate in credentials]
        if _is_open(path) or any(accepted):
            return None
        message = (
            "Invalid API token"
            if credentials
            else "Authentication required: send Authorization: Bearer <token>"
        )
        return message, bool(credentials)
