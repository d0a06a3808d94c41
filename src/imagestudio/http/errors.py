"""One table from error class to HTTP status, and the handlers that write the spec's error body.

Every non-2xx answer of every route goes through here: domain errors, the framework's own
(unknown route, wrong method, body too large, bad query parameter), the shell's refusals
(:func:`send_error`, written by ``ShellGuard`` itself so its CORS headers go with them) and
unexpected exceptions (500 with no stack trace and no secret in the body).

A framework exception's code comes from its status (the :class:`Refusal` of that status in
:data:`REFUSALS`), unless its class names one (``code``), as :class:`InvalidHost` does: 400
``INVALID_HOST``.

The OpenAPI document's error answers come from the same tables (:func:`documented_errors`): a route
names the domain errors its use case raises and the refusals it can meet; their statuses, codes
and descriptions are looked up here, so the document cannot disagree with the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from inspect import getdoc
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Send

from imagestudio.domain.errors import (
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    GenerationCancelled,
    Interrupted,
    InvalidParameters,
    InvalidPrompt,
    InvalidStoragePath,
    NotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QueueFull,
    StorageError,
    StudioError,
)
from imagestudio.http.head import allow_head
from imagestudio.http.schemas import ErrorResponse
from imagestudio.log import get_logger

__all__ = [
    "ERROR_STATUS",
    "EXCEPTION_HANDLERS",
    "FORBIDDEN",
    "INTERNAL",
    "INVALID_HOST",
    "PAYLOAD_TOO_LARGE",
    "RATE_LIMITED",
    "REFUSALS",
    "REQUEST_TIMEOUT",
    "SERVER_FULL",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "InvalidHost",
    "Refusal",
    "documented_errors",
    "error_response",
    "send_error",
    "status_for",
    "status_of",
]

log = get_logger(__name__)

# Most specific first: the first class an error is an instance of decides its status.
ERROR_STATUS: tuple[tuple[type[StudioError], int], ...] = (
    (InvalidStoragePath, 400),
    (InvalidPrompt, 400),
    (InvalidParameters, 400),
    (NotFound, 404),
    (Conflict, 409),
    (GenerationCancelled, 409),
    (Interrupted, 500),
    (QueueFull, 503),
    (ProviderTimeout, 500),
    (ProviderUnavailable, 503),
    (ProviderError, 500),
    (StorageError, 500),
    (DatabaseUnavailable, 503),
    (DatabaseError, 500),
    (StudioError, 500),
)


@dataclass(frozen=True)
class Refusal:
    """An error answer of the framework, the shell or the server process rather than of a use case:
    its status, code and default message, and when it is given (what the OpenAPI document says)."""

    status: int
    code: str
    message: str
    when: str


INVALID_REQUEST = Refusal(
    400, "INVALID_PARAMETERS", "Invalid request", "A query, path or header parameter is not valid."
)
INVALID_HOST = Refusal(
    400, "INVALID_HOST", "Invalid host", "The `Host` header does not name this server (DNS rebinding)."
)
UNAUTHORIZED = Refusal(
    401,
    "UNAUTHORIZED",
    "Authentication required",
    "No valid API token (`Authorization: Bearer` or `X-API-Key`), when IMAGESTUDIO_API_TOKEN is set.",
)
FORBIDDEN = Refusal(403, "FORBIDDEN", "Forbidden", "Sent from a web page whose origin is not allowed.")
NOT_FOUND = Refusal(404, "NOT_FOUND", "Resource not found", "No such route.")
METHOD_NOT_ALLOWED = Refusal(405, "METHOD_NOT_ALLOWED", "Method not allowed", "The route has no such method.")
REQUEST_TIMEOUT = Refusal(
    408,
    "REQUEST_TIMEOUT",
    "The request was not received in time",
    "The request body arrived too slowly (IMAGESTUDIO_MIN_BODY_RATE); the connection is closed.",
)
CONFLICT = Refusal(409, "CONFLICT", "Conflict", "The request contradicts the current state.")
PAYLOAD_TOO_LARGE = Refusal(
    413,
    "PAYLOAD_TOO_LARGE",
    "Request body is too large (at most 32 MiB)",
    "The request body is over the body limit (32 MiB).",
)
UNSUPPORTED_MEDIA_TYPE = Refusal(
    415,
    "UNSUPPORTED_MEDIA_TYPE",
    "Unsupported media type",
    "A state-changing request whose body is not `application/json`.",
)
RATE_LIMITED = Refusal(
    429,
    "RATE_LIMITED",
    "Too many requests",
    "Over IMAGESTUDIO_RATE_LIMIT for this client; `Retry-After` says when to retry.",
)
INTERNAL = Refusal(
    500,
    "INTERNAL_ERROR",
    "Internal server error",
    "An unexpected failure; the answer says no more (the server's log does).",
)
SERVER_FULL = Refusal(
    503,
    "QUEUE_FULL",
    "The server is at its connection limit",
    "Every connection slot of the server is busy; `Retry-After` says when to retry.",
)

REFUSALS: dict[int, Refusal] = {
    refusal.status: refusal
    for refusal in (
        INVALID_REQUEST,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        REQUEST_TIMEOUT,
        CONFLICT,
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        RATE_LIMITED,
    )
}
"""The framework's exceptions by status: the code and default message of their answer."""


class InvalidHost(HTTPException):
    """The request's ``Host`` is not a name this server answers to (DNS rebinding, a stray proxy)."""

    status_code = INVALID_HOST.status
    code = INVALID_HOST.code


def status_of(error_type: type[StudioError]) -> int:
    """The status of an error of this class (its first entry in :data:`ERROR_STATUS`)."""
    for listed, status in ERROR_STATUS:
        if issubclass(error_type, listed):
            return status
    return HTTP_500_INTERNAL_SERVER_ERROR


def status_for(error: StudioError) -> int:
    return status_of(type(error))


def documented_errors(causes: Iterable[type[StudioError] | Refusal]) -> dict[int, ResponseSpec]:
    """The OpenAPI error answers of a route whose use case raises these domain errors and which can
    meet these refusals: one answer per status, in the error shape, its description listing each
    code it can carry and when (a domain error's docstring says when)."""
    by_status: dict[int, dict[str, list[str]]] = {}
    for cause in causes:
        if isinstance(cause, Refusal):
            status, code, when = cause.status, cause.code, cause.when
        else:
            status, code, when = status_of(cause), cause.code, (getdoc(cause) or "").split("\n\n")[0]
        reasons = by_status.setdefault(status, {}).setdefault(code, [])
        if (when := " ".join(when.split())) not in reasons:
            reasons.append(when)
    return {
        status: ResponseSpec(
            data_container=ErrorResponse,
            description=f"{HTTPStatus(status).phrase}, with `code`:\n\n"
            + "\n".join(f"- `{code}`: {' '.join(reasons)}" for code, reasons in codes.items()),
            generate_examples=False,
        )
        for status, codes in sorted(by_status.items())
    }


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorResponse]:
    body = (
        ErrorResponse(error=message, code=code, details=details)
        if details
        else ErrorResponse(error=message, code=code)
    )
    return Response(content=body, status_code=status, headers=headers)


def _studio_error(request: Request[Any, Any, Any], error: StudioError) -> Response[ErrorResponse]:
    # the console line of a refused or failed request is http/access.py's
    return error_response(status_for(error), error.code, error.message, error.details or None)


def _describe(
    error: HTTPException, method: str
) -> tuple[int, str, str, dict[str, Any] | None, dict[str, str] | None]:
    """Status, code, message, details and headers of a framework exception's answer."""
    status = error.status_code
    refusal = REFUSALS.get(status)
    code, default_message = (
        (refusal.code, refusal.message)
        if refusal
        else ("INTERNAL_ERROR" if status >= 500 else "ERROR", "Error")
    )
    code = getattr(error, "code", None) or code
    message = default_message
    details: dict[str, Any] | None = None
    if status == 404:
        message = "Resource not found"
    elif status == 405:
        message = f"Method {method} is not allowed here"
    elif isinstance(error, ValidationException):
        fields = [item for item in (error.extra or []) if isinstance(item, dict)]
        if fields:
            first = fields[0]
            key = first.get("key")
            message = f"Invalid value for {key}: {first.get('message')}" if key else str(first.get("message"))
            details = {"field": key} if key else None
        else:
            message = error.detail or default_message
    elif status < 500 and error.detail:
        message = error.detail if status != 413 else default_message
    headers = {k: v for k, v in (error.headers or {}).items()} or None
    if status == 405 and headers:  # every GET route answers HEAD too (http/head.py)
        headers = {k: allow_head(v) if k.lower() == "allow" else v for k, v in headers.items()}
    return status, code, message, details, headers


def _http_exception(request: Request[Any, Any, Any], error: HTTPException) -> Response[ErrorResponse]:
    return error_response(*_describe(error, request.method))


async def send_error(send: Send, error: HTTPException, method: str = "GET") -> None:
    """Write ``error``'s answer in the error shape straight to ASGI ``send`` (outside any route)."""
    status, code, message, details, headers = _describe(error, method)
    body = msgspec.json.encode(
        ErrorResponse(error=message, code=code, details=details)
        if details
        else ErrorResponse(error=message, code=code)
    )
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[ErrorResponse]:
    log.error("unexpected error", path=request.url.path, error_type=type(error).__name__, exc_info=error)
    return error_response(INTERNAL.status, INTERNAL.code, INTERNAL.message)


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    StudioError: _studio_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
