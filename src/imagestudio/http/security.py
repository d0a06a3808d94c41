"""The shell's protections: API token, rate limit, JSON-only state changes, WebSocket origins.

A server on localhost with no token and no rate limit behaves exactly as the spec describes;
each protection below switches on with its setting (``IMAGESTUDIO_API_TOKEN``,
``IMAGESTUDIO_RATE_LIMIT``), except the two that cost a well-behaved client nothing and stop a
web page the user merely visited from acting for them: state-changing requests must carry JSON
(a cross-site HTML form cannot send ``application/json`` without a CORS preflight, which the
allowed origins refuse) and must not come from a foreign ``Origin``, and a WebSocket opened from
a foreign ``Origin`` is refused.

All of it is one ASGI layer, :class:`ShellGuard`, which also hands ``GET /api/history`` and
``/health`` to the response cache (``http/cache.py``) once the checks have passed.

HTTP refusals raise the framework's exceptions, so ``http/errors.py`` writes them in the spec's
error shape and the CORS layer (outside every middleware) adds its headers. WebSocket refusals
are written here: an error message and close code 1008 after the handshake (a bad token, too
many requests), or a refused handshake (a foreign origin).
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl

import msgspec
from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from imagestudio.config import RateLimit
from imagestudio.http.cache import ResponseCache, header

__all__ = ["OPEN_PATHS", "RateLimiter", "ShellGuard", "security_middleware"]

OPEN_PATHS = frozenset(
    {
        "/health",
        "/docs",
        "/docs/oauth2-redirect.html",
        "/redoc",
        "/openapi.json",
        "/openapi.yaml",
        "/openapi.yml",
    }
)
"""Paths that stay open when a token is required: the health check and the API's documentation."""

_POLICY_VIOLATION = 1008
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = "application/json"


class RateLimiter:
    """Token buckets, one per client address: ``requests`` may come at once, then they refill
    evenly over ``period`` (``100/minute``: a burst of 100, then one every 0.6 s).

    At most ``max_clients`` buckets are kept; the least recently seen client is forgotten first,
    so memory stays bounded whatever addresses arrive. Runs on the event loop only (no awaits
    inside), so it needs no lock.
    """

    def __init__(
        self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000
    ) -> None:
        self.limit = limit
        self._rate = limit.requests / limit.period
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float | None:
        """Spend one request of ``client``: ``None`` if allowed, else the seconds until one is."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(client, (float(self.limit.requests), now))
        tokens = min(float(self.limit.requests), tokens + (now - stamp) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)


def _header(scope: Scope, name: bytes) -> str | None:
    value = header(scope.get("headers", ()), name)
    return None if value is None else value.decode("latin-1")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _refuse_socket(receive: Receive, send: Send, code: str, message: str) -> None:
    """Accept the handshake, say why in one error message, and close with 1008."""
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    text = msgspec.json.encode({"type": "error", "code": code, "error": message}).decode()
    await send({"type": "websocket.send", "text": text, "bytes": None})
    await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": code})


def _period(limit: RateLimit) -> str:
    names = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return names.get(limit.period, f"{limit.period:g} seconds")


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
        if path in OPEN_PATHS or any(accepted):
            return None
        message = (
            "Invalid API token"
            if credentials
            else "Authentication required: send Authorization: Bearer <token>"
        )
        return message, bool(credentials)


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


class ShellGuard:
    """The protections as one ASGI layer, in this order: rate limit, WebSocket origin, token,
    cross-site checks; then the history page cache for ``GET /api/history``.

    The rate limit comes first so that failed token guesses count too. One layer rather than one
    middleware each: every request passes through it, and on a one-worker server each layer
    costs a measurable share of a small request's time (BENCHMARKS.md, P4).

    - Rate limit: too many requests from one address is 429 ``RATE_LIMITED`` with ``Retry-After``.
    - WebSocket origin: a socket opened by a browser page must come from an allowed CORS origin;
      without ``Origin`` (a program) it is allowed; a foreign origin's handshake is refused
      (close 1008 before accepting), so the page learns nothing.
    - Token: a refusal is 401 ``UNAUTHORIZED`` with ``WWW-Authenticate``.
    - Cross-site: see :func:`_cross_site_refusal` (403 ``FORBIDDEN``, 415).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cors: CORSConfig,
        token: str | None = None,
        limiter: RateLimiter | None = None,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.app = app
        self.cors = cors
        self.limiter = limiter
        self.token = _TokenCheck(token) if token is not None else None
        self.response_cache = response_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == ScopeType.HTTP:
            http = cast("HTTPScope", scope)
            if self.limiter is not None:
                self._take(scope)
            if self.token is not None:
                refused = self.token.refusal(scope)
                if refused is not None:
                    message, sent = refused
                    challenge = 'Bearer realm="imagestudio"' + (', error="invalid_token"' if sent else "")
                    raise NotAuthorizedException(detail=message, headers={"WWW-Authenticate": challenge})
            method = http["method"]
            if method in _STATE_CHANGING:
                error = _cross_site_refusal(scope, method, self.cors)
                if error is not None:
                    raise error
            elif self.response_cache is not None and self.response_cache.serves(http):
                await self.response_cache(http, receive, send, self.app)
                return
        elif kind == ScopeType.WEBSOCKET:
            if self.limiter is not None:
                try:
                    self._take(scope)
                except TooManyRequestsException as error:
                    await _refuse_socket(receive, send, "RATE_LIMITED", error.detail)
                    return
            origin = _header(scope, b"origin")
            if origin is not None and not self.cors.is_origin_allowed(origin):
                event = await receive()
                if event["type"] == "websocket.connect":
                    reason = "origin not allowed"
                    await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": reason})
                return
            if self.token is not None:
                refused = self.token.refusal(scope)
                if refused is not None:
                    await _refuse_socket(receive, send, "UNAUTHORIZED", refused[0] + " (or ?token=)")
                    return
        await self.app(scope, receive, send)

    def _take(self, scope: Scope) -> None:
        assert self.limiter is not None
        wait = self.limiter.take(_client(scope))
        if wait is None:
            return
        retry_after = max(1, math.ceil(wait))
        limit = self.limiter.limit
        message = f"Too many requests: at most {limit.requests} per {_period(limit)}"
        message += f"; retry in {retry_after} s"
        raise TooManyRequestsException(detail=message, headers={"Retry-After": str(retry_after)})


def security_middleware(
    *,
    cors: CORSConfig,
    token: str | None,
    rate_limit: RateLimit | None,
    clock: Callable[[], float] | None = None,
    response_cache: ResponseCache | None = None,
) -> list[Any]:
    """The shell's middleware: one :class:`ShellGuard` with the protections the settings ask for."""
    limiter = RateLimiter(rate_limit, clock=clock or time.monotonic) if rate_limit is not None else None
    guard = DefineMiddleware(
        ShellGuard, cors=cors, token=token, limiter=limiter, response_cache=response_cache
    )
    return [guard]
