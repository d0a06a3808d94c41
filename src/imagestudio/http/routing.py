"""What every route shares: the ``Services`` dependency, the error answers it documents and the
base URL its image URLs are built on."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import SkipValidation

from imagestudio.domain.errors import (
    DatabaseError,
    DatabaseUnavailable,
    InvalidParameters,
    StudioError,
)
from imagestudio.http.errors import (
    FORBIDDEN,
    INTERNAL,
    INVALID_HOST,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    REQUEST_TIMEOUT,
    SERVER_FULL,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    Refusal,
    documented_errors,
)
from imagestudio.services import Services

__all__ = ["BODY", "CHANGES", "DATABASE", "PARAMETERS", "ServicesDep", "provide_services"]

ServicesDep = NamedDependency[SkipValidation[Services]]

Cause = type[StudioError] | Refusal

# What a route can meet, named once; a route lists the groups and the domain errors of its use case.
PARAMETERS: tuple[Cause, ...] = (InvalidParameters,)
"""Query, path or header parameters, which the framework or the domain can refuse."""
CHANGES: tuple[Cause, ...] = (FORBIDDEN, UNSUPPORTED_MEDIA_TYPE)
"""A state-changing method (POST, PUT, DELETE): refused cross-site, and with a body that is not JSON."""
BODY: tuple[Cause, ...] = (*CHANGES, PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT, InvalidParameters)
"""A JSON request body: too big, too slow, malformed or invalid."""
DATABASE: tuple[Cause, ...] = (DatabaseError, DatabaseUnavailable)
"""A use case that reads or writes the database."""
_EVERY_ROUTE: tuple[Cause, ...] = (INVALID_HOST, RATE_LIMITED, INTERNAL, SERVER_FULL)


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def _errors(*causes: Cause, needs_token: bool = True) -> dict[int, ResponseSpec]:
    """The error answers a route documents, generated from ``http/errors.py``'s status table: the
    domain errors its use case raises and the refusals it can meet (``causes``), plus those every
    route can meet (a foreign ``Host``, the rate limit, an unexpected failure, a full server) and,
    unless ``needs_token`` is false, a missing token.

    Litestar documents a 400 of its own shape (``{status_code, detail, extra}``, which this server
    never sends) for every route with parameters; these answers replace it, as every route
    documents a 400 (``INVALID_HOST`` at least)."""
    return documented_errors((*causes, *_EVERY_ROUTE, *((UNAUTHORIZED,) if needs_token else ())))


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")
