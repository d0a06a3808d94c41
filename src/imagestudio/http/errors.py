"""One table from error class to HTTP status, and the handlers that write the spec's error body.

Every non-2xx answer of every route goes through here: domain errors, the framework's own
(unknown route, wrong method, body too large, bad query parameter), the shell's refusals
(:func:`send_error`, written by ``ShellGuard`` itself so its CORS headers go with them) and
unexpected exceptions (500 with no stack trace and no secret in the body).

A framework exception's code comes from its status (:data:`_FRAMEWORK_CODES`), unless its class
names one (``code``), as :class:`InvalidHost` does: 400 ``INVALID_HOST``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
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
from imagestudio.http.schemas import ErrorResponse
from imagestudio.log import get_logger

__all__ = ["ERROR_STATUS", "EXCEPTION_HANDLERS", "InvalidHost", "error_response", "send_error", "status_for"]

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

_FRAMEWORK_CODES = {
    400: ("INVALID_PARAMETERS", "Invalid request"),
    401: ("UNAUTHORIZED", "Authentication required"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Resource not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    409: ("CONFLICT", "Conflict"),
    408: ("REQUEST_TIMEOUT", "The request was not received in time"),
    413: ("PAYLOAD_TOO_LARGE", "Request body is too large (at most 32 MiB)"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
    429: ("RATE_LIMITED", "Too many requests"),
}


class InvalidHost(HTTPException):
    """The request's ``Host`` is not a name this server answers to (DNS rebinding, a stray proxy)."""

    status_code = 400
    code = "INVALID_HOST"


def status_for(error: StudioError) -> int:
    for error_type, status in ERROR_STATUS:
        if isinstance(error, error_type):
            return status
    return HTTP_500_INTERNAL_SERVER_ERROR


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
    code, default_message = _FRAMEWORK_CODES.get(
        status, ("INTERNAL_ERROR" if status >= 500 else "ERROR", "Error")
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
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal server error")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    StudioError: _studio_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
