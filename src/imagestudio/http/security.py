"""The shell's protections as one ASGI layer, :class:`ShellGuard`: Host allowlist, CORS, rate
limit, API token, JSON-only state changes, WebSocket origins. Each is checked by its own module
(``hosts``, ``cors``, ``ratelimit``, ``auth``, ``cross_site``); this one puts them in order.

A server on localhost with no token and no rate limit behaves exactly as the spec describes;
the token and the rate limit switch on with their settings (``IMAGESTUDIO_API_TOKEN``,
``IMAGESTUDIO_RATE_LIMIT``). The rest is always on, because it costs a well-behaved client
nothing and stops a web page the user merely visited from acting for them or reading their data:

- a request whose ``Host`` is not a name of this server is refused first (DNS rebinding: a page
  whose host name was rebound to 127.0.0.1 is "same-origin" to the browser, but its requests
  carry its own host name), see :class:`HostAllowlist`;
- CORS: only allowed origins get ``Access-Control-Allow-Origin``; a refused preflight is 403;
- state-changing requests must carry JSON (a cross-site HTML form cannot send
  ``application/json`` without a preflight, which is refused) and must not come from a foreign
  ``Origin``; a WebSocket opened from a foreign ``Origin`` is refused.

All of it is one ASGI layer, :class:`ShellGuard`, which also answers ``HEAD`` as ``GET`` without
the body (``http/head.py``) and hands ``GET /api/history`` and ``/health`` to the response cache
(``http/cache.py``) once the checks have passed. CORS lives here rather than in Litestar's CORS
middleware so that the Host check runs before anything else, preflights included, and so that
every refusal here carries the CORS headers a page needs to read it. :func:`guard` puts it in
front of the app's router (route middleware would run only after routing), so a path no route
serves is checked too before its 404.

HTTP refusals are written in the spec's error shape by ``http/errors.py``'s :func:`send_error`.
WebSocket refusals are written here: an error message and close code 1008 after the handshake
(a bad token, too many requests), or a refused handshake (a foreign Host or origin).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import cast

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotAuthorizedException, TooManyRequestsException
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from imagestudio.config import RateLimit
from imagestudio.http.access import RefusalLog, socket_refused
from imagestudio.http.auth import OPEN_PATHS, _TokenCheck
from imagestudio.http.cache import ResponseCache
from imagestudio.http.cors import _Cors
from imagestudio.http.cross_site import _cross_site_refusal
from imagestudio.http.errors import InvalidHost, send_error
from imagestudio.http.head import as_get, with_head_allowed, without_body
from imagestudio.http.hosts import HostAllowlist, _host_header
from imagestudio.http.ratelimit import RateLimiter, _period
from imagestudio.http.scope import _header
from imagestudio.http.websocket import SocketError, encode_message

__all__ = ["OPEN_PATHS", "HostAllowlist", "RateLimiter", "ShellGuard", "guard"]

_POLICY_VIOLATION = 1008
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _refuse_socket(receive: Receive, send: Send, code: str, message: str) -> None:
    """Accept the handshake, say why in one error message, and close with 1008."""
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    text = encode_message(SocketError(code=code, error=message))
    await send({"type": "websocket.send", "text": text, "bytes": None})
    await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": code})


class ShellGuard:
    """The protections as one ASGI layer, in this order: Host, CORS, rate limit, preflight,
    WebSocket origin, token, cross-site checks; then the response cache.

    The Host check comes first so that nothing, not even a preflight or a cached answer, is given
    to a rebound name. The rate limit comes next so that failed token guesses count too. One
    layer rather than one middleware each: every request passes through it, and on a one-worker
    server each layer costs a measurable share of a small request's time (BENCHMARKS.md, P4).

    - Host: see :class:`HostAllowlist`; a refusal is 400 ``INVALID_HOST`` (a WebSocket's
      handshake is refused).
    - CORS and preflights: see :class:`_Cors`.
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
        hosts: HostAllowlist | None = None,
        token: str | None = None,
        limiter: RateLimiter | None = None,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.app = app
        self.cors = _Cors(cors)
        self.hosts = hosts or HostAllowlist()
        self.limiter = limiter
        self.token = _TokenCheck(token) if token is not None else None
        self.response_cache = response_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == ScopeType.HTTP:
            await self._http(cast("HTTPScope", scope), receive, send)
        elif kind == ScopeType.WEBSOCKET:
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _host_refusal(self, scope: Scope) -> InvalidHost | None:
        value, count = _host_header(scope)
        if count == 1 and self.hosts.allows(value):
            return None
        if count == 0 and scope.get("http_version") == "1.0" and scope["type"] == ScopeType.HTTP:
            return None  # HTTP/1.0 has no Host; browsers never speak it
        if count == 0:
            return InvalidHost(detail="The request has no Host header")
        if count > 1:
            return InvalidHost(detail="The request has more than one Host header")
        shown = (value or b"").decode("latin-1")[:100]
        return InvalidHost(
            detail=f"Host {shown!r} is not served here: use localhost or 127.0.0.1, or add the"
            " name to IMAGESTUDIO_ALLOWED_HOSTS"
        )

    async def _http(self, http: HTTPScope, receive: Receive, send: Send) -> None:
        asked = http
        if http["method"] == "HEAD":  # answered as the GET, without its body (http/head.py)
            http, send = as_get(http), without_body(send)
        elif http["method"] == "OPTIONS":
            send = with_head_allowed(send)
        watch = RefusalLog(send)  # sees the GET's error body; reports the method asked
        try:
            await self._checked_http(http, receive, watch.send)
        finally:
            watch.report(asked)

    async def _checked_http(self, http: HTTPScope, receive: Receive, send: Send) -> None:
        method = http["method"]
        refused: HTTPException | None = self._host_refusal(http)
        if refused is not None:
            await send_error(send, refused, method)
            return
        origin = _header(http, b"origin")
        reply = send if origin is None else self.cors.wrap(send, origin)
        refused = self._rate_refusal(http)
        if refused is None and origin is not None and _is_preflight(http):
            refused = self.cors.preflight_refusal(http, origin)
            if refused is None:
                await self.cors.answer_preflight(send, origin)
                return
            reply = send  # a refused preflight gets no CORS headers
        if refused is None and self.token is not None:
            refused = self._token_refusal(http)
        if refused is None and method in _STATE_CHANGING:
            refused = _cross_site_refusal(http, method, self.cors.config)
        if refused is not None:
            await send_error(reply, refused, method)
            return
        cache = self.response_cache
        if method == "GET" and cache is not None and cache.serves(http):  # HEAD is a GET here
            await cache(http, receive, reply, self.app)
            return
        await self.app(http, receive, reply)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._host_refusal(scope) is not None:
            socket_refused(scope, "INVALID_HOST", "host not allowed")
            await _refuse_handshake(receive, send, "host not allowed")
            return
        refused = self._rate_refusal(scope)
        if refused is not None:
            socket_refused(scope, "RATE_LIMITED", refused.detail)
            await _refuse_socket(receive, send, "RATE_LIMITED", refused.detail)
            return
        origin = _header(scope, b"origin")
        if origin is not None and not self.cors.allows(origin):
            socket_refused(scope, "FORBIDDEN", "origin not allowed")
            await _refuse_handshake(receive, send, "origin not allowed")
            return
        if self.token is not None:
            why = self.token.refusal(scope)
            if why is not None:
                socket_refused(scope, "UNAUTHORIZED", why[0])
                await _refuse_socket(receive, send, "UNAUTHORIZED", why[0] + " (or ?token=)")
                return
        await self.app(scope, receive, send)

    def _token_refusal(self, scope: Scope) -> HTTPException | None:
        assert self.token is not None
        refused = self.token.refusal(scope)
        if refused is None:
            return None
        message, sent = refused
        challenge = 'Bearer realm="imagestudio"' + (', error="invalid_token"' if sent else "")
        return NotAuthorizedException(detail=message, headers={"WWW-Authenticate": challenge})

    def _rate_refusal(self, scope: Scope) -> HTTPException | None:
        if self.limiter is None:
            return None
        wait = self.limiter.take(_client(scope))
        if wait is None:
            return None
        retry_after = max(1, math.ceil(wait))
        limit = self.limiter.limit
        message = f"Too many requests: at most {limit.requests} per {_period(limit)}"
        message += f"; retry in {retry_after} s"
        return TooManyRequestsException(detail=message, headers={"Retry-After": str(retry_after)})


def _is_preflight(http: HTTPScope) -> bool:
    return http["method"] == "OPTIONS" and _header(http, b"access-control-request-method") is not None


async def _refuse_handshake(receive: Receive, send: Send, reason: str) -> None:
    """Refuse a WebSocket before accepting it (the server answers the upgrade with 403)."""
    event = await receive()
    if event["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": reason})


def guard(
    app: Litestar,
    *,
    cors: CORSConfig,
    token: str | None,
    rate_limit: RateLimit | None,
    hosts: HostAllowlist | None = None,
    clock: Callable[[], float] | None = None,
    response_cache: ResponseCache | None = None,
) -> Litestar:
    """Put one :class:`ShellGuard` with the protections the settings ask for in front of ``app``'s
    router: it sees every request before routing, so a path no route serves is checked too (its
    Host, rate limit and token) before the 404."""
    limiter = RateLimiter(rate_limit, clock=clock or time.monotonic) if rate_limit is not None else None
    app.asgi_handler = ShellGuard(
        app.asgi_handler,
        cors=cors,
        hosts=hosts or HostAllowlist(),
        token=token,
        limiter=limiter,
        response_cache=response_cache,
    )
    return app
