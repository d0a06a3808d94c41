"""Runware's wire protocol: reading answers and errors in every documented form.

Sources: RUNWARE.md and the official SDK (``runware.errors.parse_api_error`` and ``derive_code``,
``runware.client._is_terminal``). An error may come as ``{"errors": [...]}``, as a single
``{"error": {...}, "taskUUID"}``, or as a ``data`` item with ``status: "error"`` carrying
``error``; a 401 with an empty body is a bad key. Whether a code is worth another try follows
the SDK's classification (rate limits, timeouts, server and provider failures are; validation,
authentication, credit and content-policy refusals are not), whatever the HTTP status.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

from imagestudio.domain.errors import ProviderUnavailable

__all__ = [
    "ProviderFailure",
    "Result",
    "is_terminal",
    "is_transient",
    "items_of",
    "provider_error",
    "read_json",
    "read_result",
    "retry_after",
]

_SAFETY: Final = frozenset(
    {
        "contentPolicyViolation", "providerContentPolicyViolation", "sensitiveContentDetected",
        "unsafeContentDetected", "nsfwContentDetected", "promptBlocked", "imageBlocked",
        "moderationFailed", "invalidProviderContent",
    }
)  # fmt: skip
_SERVER: Final = frozenset(
    {
        "internalServerError", "serviceUnavailable", "serverUnavailable", "standardError",
        "unknownError", "undefinedError", "defaultError", "unrecognizedResponse",
    }
)  # fmt: skip
_PROVIDER: Final = frozenset(
    {
        "inferenceError", "processingFailed", "taskFailed", "downloadFailed", "uploadFailed",
        "noAvailableServer", "modelUnavailable", "modelNotReady", "timeoutProvider",
    }
)  # fmt: skip
_RESULT_SUFFIXES: Final = ("URL", "Base64Data", "DataURI")


@dataclass(frozen=True, slots=True)
class ProviderFailure:
    """One error Runware reported: its code, message and, when it names one, the parameter."""

    code: str
    message: str
    parameter: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    image_url: str
    image_uuid: str | None
    seed: int | None
    cost: float | None


def is_transient(code: str) -> bool:
    """Whether another try may succeed (``runware.errors.derive_code`` + ``is_retryable``)."""
    if code in _SAFETY or "ApiKey" in code or any(word in code for word in ("Credits", "Quota", "Balance")):
        return False
    if "RateLimit" in code or code in ("rateLimitExceeded", "tooManyRequests"):
        return True
    if "Timeout" in code or code.startswith("timeout"):
        return True
    return code in _SERVER or code in _PROVIDER or (code.startswith("provider") and code not in _SAFETY)


def read_json(answer: bytes) -> Any:
    try:
        return json.loads(answer) if answer.strip() else None
    except ValueError:
        return None


def _failure(entry: object) -> ProviderFailure | None:
    if not isinstance(entry, dict):
        return None
    code = entry.get("code")
    if not isinstance(code, str) or not code:
        return None
    message = entry.get("message")
    parameter = entry.get("parameter")
    if isinstance(parameter, list):
        parameter = next((p for p in parameter if isinstance(p, str)), None)
    return ProviderFailure(
        code=code,
        message=message if isinstance(message, str) else "",
        parameter=parameter if isinstance(parameter, str) else None,
    )


def provider_error(document: Any, task_uuid: str) -> ProviderFailure | None:
    """Runware's explanation of a failure in any of its forms, ours first; ``None`` if there is none."""
    candidates: list[tuple[object, object]] = []  # (error entry, its taskUUID)
    if isinstance(document, list):
        candidates += [(entry, entry.get("taskUUID")) for entry in document if isinstance(entry, dict)]
    elif isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list):
            candidates += [(entry, entry.get("taskUUID")) for entry in errors if isinstance(entry, dict)]
        single = document.get("error")
        if isinstance(single, dict):
            candidates.append((single, single.get("taskUUID", document.get("taskUUID"))))
        for item in items_of(document):
            if item.get("status") == "error":
                candidates.append((item.get("error") or {}, item.get("taskUUID")))
    usable = [(failure, owner) for entry, owner in candidates if (failure := _failure(entry)) is not None]
    if not usable:
        return None
    return next((failure for failure, owner in usable if owner == task_uuid), usable[0][0])


def items_of(document: Any) -> list[dict[str, Any]]:
    data = document.get("data") if isinstance(document, dict) else None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def is_terminal(item: dict[str, Any]) -> bool:
    """A finished item: ``status: success``, or one carrying its image (``runware.client._is_terminal``)."""
    if item.get("status") == "success":
        return True
    return any(key.endswith(_RESULT_SUFFIXES) and item.get(key) is not None for key in item)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), if it is usable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        from datetime import UTC, datetime

        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def read_result(item: dict[str, Any]) -> Result:
    """The image URL, UUID, seed and cost of one result item, each checked against the protocol."""
    image_url = item.get("imageURL")
    if not isinstance(image_url, str) or not _is_http_url(image_url):
        raise ProviderUnavailable("Generation failed: Runware's answer has no usable imageURL")
    seed = item.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 1):
        raise ProviderUnavailable("Generation failed: Runware's answer has an invalid seed")
    cost = item.get("cost")
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
            raise ProviderUnavailable("Generation failed: Runware's answer has an invalid cost")
        cost = float(cost)
    image_uuid = item.get("imageUUID")
    return Result(
        image_url=image_url,
        image_uuid=image_uuid if isinstance(image_uuid, str) and image_uuid else None,
        seed=seed,
        cost=cost,
    )


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
