"""``HEAD`` wherever ``GET`` is: the same status and headers (``Content-Length`` of the body a
``GET`` would get), no body (RFC 9110, 9.3.2).

:class:`ShellGuard` (``http/security.py``) answers a ``HEAD`` request as the ``GET`` of the same
target, before its checks, so everything a ``GET`` goes through applies alike: the Host check,
CORS, the rate limit, the token, the response cache, the route's own answer or error; only the
body is dropped on the way out. One place rather than a ``HEAD`` on every route: a route cannot
forget it, the OpenAPI document lists ``GET`` operations only (``HEAD`` is implied by HTTP and
would double every operation of a generated client), and Litestar, which sends a route's body
whatever the method, needs no care. Where an ``Allow`` header names ``GET`` (a 405, an
``OPTIONS`` answer) it names ``HEAD`` too.

The ``HEAD`` request keeps its own scope (uvicorn's access log says ``HEAD``); the application
sees a copy whose method is ``GET``.
"""

from __future__ import annotations

from typing import cast

from litestar.types import HTTPScope, Message, Send

__all__ = ["allow_head", "as_get", "with_head_allowed", "without_body"]

_ALLOW = b"allow"


def as_get(scope: HTTPScope) -> HTTPScope:
    """A copy of the ``HEAD`` request's scope as the ``GET`` of the same target."""
    return cast("HTTPScope", {**scope, "method": "GET"})


def without_body(send: Send) -> Send:
    """``send`` for a ``HEAD`` answer: the start as it is, then one empty body, nothing after.

    The first body message (of whatever kind) ends the answer, so the client has it at once; the
    rest of a long body (an image being streamed) is dropped as the application sends it.
    """
    ended = False

    async def send_head(message: Message) -> None:
        nonlocal ended
        if message["type"] == "http.response.start":
            await send(message)
            return
        if ended:
            return
        ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_head


def allow_head(value: str) -> str:
    """An ``Allow`` header's value with ``HEAD`` beside ``GET`` (``http/errors.py`` uses it for 405)."""
    methods = [method.strip() for method in value.split(",") if method.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


def with_head_allowed(send: Send) -> Send:
    """``send`` that names ``HEAD`` in the answer's ``Allow`` header where it names ``GET``
    (for ``OPTIONS``, which Litestar answers with the route's methods)."""

    async def send_allow(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            if any(name.lower() == _ALLOW for name, _ in headers):
                fixed = [
                    (
                        name,
                        allow_head(value.decode("latin-1")).encode("latin-1")
                        if name.lower() == _ALLOW
                        else value,
                    )
                    for name, value in headers
                ]
                message = {**message, "headers": fixed}
        await send(message)

    return send_allow
