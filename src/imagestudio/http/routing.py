"""What every route shares: the ``Services`` dependency, the error answers it documents and the
base URL its image URLs are built on."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import SkipValidation

from imagestudio.http.schemas import ErrorResponse
from imagestudio.services import Services

__all__ = ["ServicesDep", "provide_services"]

ServicesDep = NamedDependency[SkipValidation[Services]]


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def _errors(*statuses: int, needs_token: bool = True) -> dict[int, ResponseSpec]:
    """The error answers a route documents; 401 and 429 go with every route that can give them."""
    descriptions = {
        400: "Invalid request (INVALID_PROMPT, INVALID_PARAMETERS, STORAGE_ERROR for a bad storagePath;"
        " INVALID_HOST when the Host header is not a name of this server)",
        401: "No valid API token, when IMAGESTUDIO_API_TOKEN is set (UNAUTHORIZED)",
        403: "Sent from a web page whose origin is not allowed (FORBIDDEN)",
        404: "Not found (NOT_FOUND)",
        409: "Conflict (CONFLICT: a reused taskId or Idempotency-Key, a finished task; CANCELLED)",
        413: "Request body over 32 MiB (PAYLOAD_TOO_LARGE)",
        415: "The body is not `application/json` (UNSUPPORTED_MEDIA_TYPE)",
        429: "Over IMAGESTUDIO_RATE_LIMIT for this client; `Retry-After` says when to retry (RATE_LIMITED)",
        500: "Generation, storage or database failure"
        " (API_TIMEOUT, API_ERROR, STORAGE_ERROR, DATABASE_ERROR, INTERNAL_ERROR)",
        503: "Provider, database or queue unavailable (API_ERROR, DATABASE_ERROR, QUEUE_FULL)",
    }
    # INVALID_HOST can answer any route; 401 and 429 any route the token and the rate limit cover
    statuses = (*statuses, 400, 401, 429) if needs_token else (*statuses, 400, 429)
    return {
        status: ResponseSpec(
            data_container=ErrorResponse, description=descriptions[status], generate_examples=False
        )
        for status in statuses
    }


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")
