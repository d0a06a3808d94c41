"""The cross-site checks of state-changing requests: JSON only, and no foreign ``Origin``.

Always on: they cost a well-behaved client nothing and stop a web page the user merely visited
from acting for them (a cross-site HTML form cannot send ``application/json`` without a
preflight, which is refused). :class:`ShellGuard` (``http/security.py``) applies them.
"""

from __future__ import annotations

from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.types import Scope

from imagestudio.http.scope import _header

__all__: list[str] = []

_JSON = "application/json"


def _cross_site_refusal(scope: Scope, method: str, cors: CORSConfig) -> HTTPException | None:
    """State-changing requests (POST, PUT, PATCH, DELETE) from a web page the user merely visited.

    - An ``Origin`` that is not an allowed CORS origin is 403 ``FORBIDDEN``. Browsers send
      ``Origin`` with every such request, including "same-origin" ones from a page whose host name
      was rebound to 127.0.0.1 (DNS rebinding), which CORS alone would let through; programs send
      none and are not affected.
    - POST, PUT and PATCH carry ``application/json``, a DELETE nothing or JSON; anything else is
      415 ``UNSUPPORTED_MEDIA_TYPE``: HTML forms (``application/x-www-form-urlencoded``,
      ``multipart/form-data``, ``text/plain``) are what a cross-site page can send without a preflight.
    """
    origin = _header(scope, b"origin")
    if origin is not None and not cors.is_origin_allowed(origin):
        return PermissionDeniedException(
            detail=f"{method} requests from a page at another origin are not allowed"
            " (IMAGESTUDIO_CORS_ORIGINS lists the allowed ones)"
        )
    content_type = _header(scope, b"content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    length = (_header(scope, b"content-length") or "").strip()
    has_body = (length not in ("", "0")) or _header(scope, b"transfer-encoding") is not None
    if media_type != _JSON and (method != "DELETE" or has_body):
        shown = media_type or "no Content-Type"
        return HTTPException(
            status_code=415,
            detail=f"{method} requests must send Content-Type: application/json, not {shown}",
            headers={"Accept": _JSON},
        )
    return None
