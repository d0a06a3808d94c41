"""One console line per refused or failed request, written by :class:`ShellGuard`.

Every answer with a status of 400 or more is reported once, whoever gave it (a protection, a route,
the error handlers): ``request refused`` (info) for a 4xx, ``request failed`` (warning) for a 5xx,
with the method, the path (never the query, which may hold a token), the status, the error's
``code`` and message as the client read them, and the client's address. Successful requests are
logged only at ``debug`` (uvicorn's access lines).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.types import HTTPScope, Message, Send

from imagestudio.log import get_logger

__all__ = ["RefusalLog"]

log = get_logger("imagestudio.http")

_MAX_BODY = 4096  # an error answer is small; a bigger body is not read for its code


class _ErrorBody(msgspec.Struct):
    code: str | None = None
    error: str | None = None


class RefusalLog:
    """Watches one request's answer through its ``send`` and reports it if it was an error."""

    __slots__ = ("_body", "_send", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._body = b""
        self.status = 0

    async def send(self, message: Message) -> None:
        event: dict[str, Any] = message  # type: ignore[assignment]
        kind = event["type"]
        if kind == "http.response.start":
            self.status = event["status"]
        elif self.status >= 400 and kind == "http.response.body" and len(self._body) < _MAX_BODY:
            self._body += event.get("body", b"")[:_MAX_BODY]
        await self._send(message)

    def report(self, scope: HTTPScope) -> None:
        if self.status < 400:
            return
        try:
            body = msgspec.json.decode(self._body, type=_ErrorBody)
        except msgspec.DecodeError:
            body = _ErrorBody()
        values: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": self.status,
            "code": body.code,
            "error": body.error,
            "client": client[0] if (client := scope.get("client")) else None,
        }
        if self.status >= 500:
            log.warning("request failed", **values)
        else:
            log.info("request refused", **values)


def socket_refused(scope: Any, code: str, reason: str) -> None:
    """Report a WebSocket refused before its route (a foreign Host or origin, a token, a rate)."""
    client = scope.get("client")
    log.info(
        "websocket refused",
        path=scope.get("path"),
        code=code,
        error=reason,
        client=client[0] if client else None,
    )
