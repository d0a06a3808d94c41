"""The shell's protections: Host allowlist, CORS, rate limit, API token, JSON-only state changes,
WebSocket origins.

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

All of it is one ASGI layer, :class:`ShellGuard`, which also hands ``GET /api/history`` and
``/health`` to the response cache (``http/cache.py``) once the checks have passed. CORS lives
here rather than in Litestar's CORS middleware so that the Host check runs before anything else,
preflights included, and so that every refusal here carries the CORS headers a page needs to read
it. Litestar runs route middleware after routing: a path no route serves is a plain 404.

HTTP refusals are written in the spec's error shape by ``http/errors.py``'s :func:`send_error`.
WebSocket refusals are written here: an error message and close code 1008 after the handshake
(a bad token, too many requests), or a refused handshake (a foreign Host or origin).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
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
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from imagestudio.config import ConfigError, RateLimit
from imagestudio.http.cache import ResponseCache, header
from imagestudio.http.errors import InvalidHost, send_error

__all__ = ["OPEN_PATHS", "HostAllowlist", "RateLimiter", "ShellGuard", "security_middleware"]

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


_HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?)(?::[0-9]{0,5})?")
_MAX_REMEMBERED_HOSTS = 256


def _host_name(value: str) -> str | None:
    """The name in a ``Host`` value, lower case, without port or trailing dot (IPv6 literals in
    brackets, in their compressed form); ``None`` if it is not a host name or address."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    literal, name = match.groups()
    if literal is None:
        return str(name)
    try:
        return f"[{ipaddress.IPv6Address(literal).compressed}]"
    except ValueError:
        return None


def _is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


class HostAllowlist:
    """The ``Host`` names this server answers to (CONTRACT.md section 11), with any port:

    - loopback names: ``localhost``, ``127.0.0.1`` and every other ``127.x.y.z``, ``[::1]``;
    - the address it was told to bind (``--host``), unless that is a wildcard (``0.0.0.0``,
      ``::``), which names no host;
    - the names in ``IMAGESTUDIO_ALLOWED_HOSTS``: exact names or addresses, case-insensitive;
      ``*.example.com`` allows every name under ``example.com`` (not ``example.com`` itself).

    A request without ``Host`` is refused too, except over HTTP/1.0, which has none. Verdicts on
    recent values are remembered (at most 256), so a request costs one dictionary lookup.
    """

    def __init__(self, bind_host: str = "127.0.0.1", allowed: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        bind = _host_name(f"[{bind_host}]" if bind_host.count(":") > 1 else bind_host)
        if bind is not None and not _is_unspecified(bind):
            self._names.add(bind)
        for entry in allowed:
            text = entry.strip()
            if text.startswith("*."):
                suffix = _host_name(text[2:])
                if suffix is None or suffix.startswith("["):
                    raise ConfigError(f"IMAGESTUDIO_ALLOWED_HOSTS: {entry!r} is not a host name pattern")
                self._suffixes.append("." + suffix)
                continue
            name = _host_name(f"[{text}]" if text.count(":") > 1 and "[" not in text else text)
            if name is None:
                raise ConfigError(
                    f"IMAGESTUDIO_ALLOWED_HOSTS: {entry!r} is not a host name or address"
                    " (list names such as studio.lan or 192.168.1.20; '*.example.com' for a domain)"
                )
            self._names.add(name)
        self._verdicts: dict[bytes, bool] = {}

    def allows(self, value: bytes | None) -> bool:
        """Whether a request with this ``Host`` header value is served."""
        if value is None:
            return False
        verdict = self._verdicts.get(value)
        if verdict is None:
            verdict = self._decide(value.decode("latin-1"))
            if len(self._verdicts) < _MAX_REMEMBERED_HOSTS:
                self._verdicts[value] = verdict
        return verdict

    def _decide(self, value: str) -> bool:
        name = _host_name(value)
        if name is None:
            return False
        if name in self._names or _is_loopback_name(name):
            return True
        return any(name.endswith(suffix) for suffix in self._suffixes)


def _is_unspecified(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).is_unspecified
    except ValueError:
        return False


def _host_header(scope: Scope) -> tuple[bytes | None, int]:
    """The ``Host`` value of a request and how many ``Host`` headers it sent."""
    found: bytes | None = None
    count = 0
    for key, value in scope["headers"]:
        if key == b"host" or key.lower() == b"host":
            found = bytes(value)
            count += 1
    return found, count


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


# CORS ---------------------------------------------------------------------------------------

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
        if method not in _STATE_CHANGING and cache is not None and cache.serves(http):
            await cache(http, receive, reply, self.app)
            return
        await self.app(http, receive, reply)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._host_refusal(scope) is not None:
            await _refuse_handshake(receive, send, "host not allowed")
            return
        refused = self._rate_refusal(scope)
        if refused is not None:
            await _refuse_socket(receive, send, "RATE_LIMITED", refused.detail)
            return
        origin = _header(scope, b"origin")
        if origin is not None and not self.cors.allows(origin):
            await _refuse_handshake(receive, send, "origin not allowed")
            return
        if self.token is not None:
            why = self.token.refusal(scope)
            if why is not None:
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


def security_middleware(
    *,
    cors: CORSConfig,
    token: str | None,
    rate_limit: RateLimit | None,
    hosts: HostAllowlist | None = None,
    clock: Callable[[], float] | None = None,
    response_cache: ResponseCache | None = None,
) -> list[Any]:
    """The shell's middleware: one :class:`ShellGuard` with the protections the settings ask for."""
    limiter = RateLimiter(rate_limit, clock=clock or time.monotonic) if rate_limit is not None else None
    guard = DefineMiddleware(
        ShellGuard,
        cors=cors,
        hosts=hosts or HostAllowlist(),
        token=token,
        limiter=limiter,
        response_cache=response_cache,
    )
    return [guard]
