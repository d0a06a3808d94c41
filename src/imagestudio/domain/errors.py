"""The one error tree of imagestudio: every class, and the error code it carries.

* StudioError                   INTERNAL_ERROR
  + InvalidPrompt               INVALID_PROMPT
  + InvalidParameters           INVALID_PARAMETERS
  + NotFound                    NOT_FOUND
  + Conflict                    CONFLICT
  + QueueFull                   QUEUE_FULL
  + GenerationCancelled         CANCELLED
  + Interrupted                 INTERRUPTED
  + StorageError                STORAGE_ERROR
    - InvalidStoragePath        STORAGE_ERROR
  + DatabaseError               DATABASE_ERROR
    - DatabaseUnavailable       DATABASE_ERROR
    - IncompatibleDatabase      DATABASE_ERROR
  + ProviderError               API_ERROR
    - ProviderRejected          API_ERROR
    - ProviderUnavailable       API_ERROR
    - ProviderTimeout           API_TIMEOUT

Every failure the library can report is a :class:`StudioError` carrying one of the
specification's error codes. Adapters catch library exceptions at their boundary and
re-raise one of these ``from`` the original; the HTTP shell maps each class to a status
in a single table (``imagestudio.http.errors.ERROR_STATUS``). A subclass shares its parent's
code and tells a different status or handling apart (``InvalidStoragePath`` is the client's
fault: 400, where other storage failures are 500).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "GenerationCancelled",
    "IncompatibleDatabase",
    "Interrupted",
    "InvalidParameters",
    "InvalidPrompt",
    "InvalidStoragePath",
    "NotFound",
    "ProviderError",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QueueFull",
    "StorageError",
    "StudioError",
    "error_from_code",
]


class StudioError(Exception):
    """Root of every error imagestudio reports on purpose."""

    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidPrompt(StudioError):
    """The prompt is missing, blank, too short or too long."""

    code = "INVALID_PROMPT"


class InvalidParameters(StudioError):
    """A request value is out of range, of the wrong type or unknown."""

    code = "INVALID_PARAMETERS"

    def __init__(
        self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class NotFound(StudioError):
    """A generation, image, task or route does not exist."""

    code = "NOT_FOUND"


class Conflict(StudioError):
    """The request contradicts the current state (a reused key, a finished task)."""

    code = "CONFLICT"


class QueueFull(StudioError):
    """Too many generations are already waiting."""

    code = "QUEUE_FULL"


class GenerationCancelled(StudioError):
    """The task was cancelled before it produced an image."""

    code = "CANCELLED"


class Interrupted(StudioError):
    """The server stopped while the task was queued or running."""

    code = "INTERRUPTED"


class StorageError(StudioError):
    """An image could not be written or read."""

    code = "STORAGE_ERROR"


class InvalidStoragePath(StorageError):
    """A storage folder chosen by the user cannot be created or written (a client fault)."""


class DatabaseError(StudioError):
    """The database failed."""

    code = "DATABASE_ERROR"


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached or is locked for too long."""


class IncompatibleDatabase(DatabaseError):
    """The database's schema is one this version cannot use (made by a newer imagestudio)."""


class ProviderError(StudioError):
    """The image provider failed. Base of the provider errors."""

    code = "API_ERROR"


class ProviderRejected(ProviderError):
    """The provider refused the request (bad key, bad parameter, no credit)."""

    def __init__(
        self,
        message: str,
        *,
        provider_code: str | None = None,
        provider_message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        merged = dict(details or {})
        if provider_code is not None:
            merged["providerCode"] = provider_code
        if provider_message is not None:
            merged["providerMessage"] = provider_message
        super().__init__(message, details=merged)


class ProviderUnavailable(ProviderError):
    """The provider could not be reached, was overloaded, or did not speak its protocol."""


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    code = "API_TIMEOUT"


def error_from_code(code: str, message: str) -> StudioError:
    """Rebuild an error recorded as its code and message (a finished task's outcome)."""
    for error_type in _BY_CODE:
        if error_type.code == code:
            return error_type(message)
    error = StudioError(message)
    error.code = code
    return error


# One class per code: the most general of each family, so the rebuilt error maps to its usual status.
_BY_CODE: tuple[type[StudioError], ...] = (
    InvalidPrompt,
    InvalidParameters,
    NotFound,
    Conflict,
    QueueFull,
    GenerationCancelled,
    Interrupted,
    StorageError,
    DatabaseError,
    ProviderTimeout,
    ProviderError,
)
