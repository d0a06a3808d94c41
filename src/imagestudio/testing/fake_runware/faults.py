"""How the fake misbehaves on request: :class:`Fault`, what each answers, and an injected one's queue entry.

A test injects faults with :meth:`FakeRunware.inject` (and slows every task with ``latency``); out
of process, ``POST /_fake/control`` and ``--fault NAME[=TIMES]`` do the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Fault"]


class Fault(StrEnum):
    """Ways the fake can be told to misbehave; the value is the CLI spelling."""

    HANG = "hang"
    """Never answer: hold the request until the client gives up (or the fake stops)."""
    RATE_LIMITED = "429"
    """429 with Runware's error body."""
    RATE_LIMITED_RETRY_AFTER = "429-retry-after"
    """429 with Runware's error body and ``Retry-After: 2``."""
    SERVER_ERROR = "500"
    """500 with Runware's error body."""
    UNAVAILABLE = "503"
    """503 ``serviceUnavailable``."""
    FLAKY = "flaky"
    """Every other call fails with 503, starting with the first."""
    INSUFFICIENT_CREDITS = "402"
    """402 ``insufficientCredits`` for every task of the request."""
    ERROR_OBJECT = "error-object"
    """402 ``insufficientCredits`` in the single-error form ``{"error": {...}, "taskUUID"}``."""
    EMPTY_401 = "401-empty"
    """401 with an empty body (a bad key, as Runware's gateway reports it)."""
    NO_AVAILABLE_SERVER = "no-available-server"
    """400 ``noAvailableServer``: a transient code under a status that does not say so."""
    DROP_AFTER_BODY = "drop-after-body"
    """Read the body, start (and bill) the tasks, then break the connection without an answer."""
    ACCEPTED_502 = "502-after-accept"
    """Start (and bill) the tasks, then answer 502 from the gateway (no Runware body)."""
    ACCEPTED_504 = "504-after-accept"
    """Start (and bill) the tasks, then answer 504 from the gateway (no Runware body)."""
    TASK_ERROR = "task-error"
    """The task runs and fails: a ``status: "error"`` item (``contentPolicyViolation``)."""
    TASK_TRANSIENT = "task-transient"
    """The task runs and fails transiently: a ``status: "error"`` item (``timeoutProvider``)."""
    PARTIAL = "partial"
    """The first ``getResponse`` of the task is a partial item: ``imageUUID``, no image yet."""
    STAGGERED = "staggered"
    """The results of the task (``numberResults`` N, async delivery) come one more per
    ``getResponse``, the last image first, each answer repeating those delivered before and
    ``processing`` for the rest (Runware makes them in parallel and polling is cumulative)."""
    STAGGERED_ONCE = "staggered-once"
    """The results of the task come one per ``getResponse``, first to last, each in one answer only."""
    SHORT_BATCH = "short-batch"
    """The last result of the task never comes: ``getResponse`` answers the others and
    ``processing`` for it, for ever."""
    MALFORMED_JSON = "malformed-json"
    """200 whose body is not valid JSON."""
    NOT_AN_ARRAY = "not-an-array"
    """200 whose ``data`` is an object rather than an array."""
    MISSING_DATA = "missing-data"
    """200 whose body has no ``data`` at all."""
    IMAGE_404 = "image-404"
    """A normal answer whose ``imageURL`` answers 404."""
    IMAGE_NOT_AN_IMAGE = "image-not-an-image"
    """A normal answer whose ``imageURL`` serves bytes that are not an image."""


_STATUS_FAULTS: Final = {
    Fault.RATE_LIMITED: (429, "rateLimitExceeded", "Queue capacity exceeded. Please retry later."),
    Fault.RATE_LIMITED_RETRY_AFTER: (429, "rateLimitExceeded", "Too many requests. Retry later."),
    Fault.SERVER_ERROR: (500, "internalServerError", "An unexpected error occurred."),
    Fault.UNAVAILABLE: (503, "serviceUnavailable", "The service is temporarily unavailable."),
    Fault.FLAKY: (503, "serviceUnavailable", "The service is temporarily unavailable."),
    Fault.INSUFFICIENT_CREDITS: (402, "insufficientCredits", "Insufficient credits to run this task."),
    Fault.NO_AVAILABLE_SERVER: (400, "noAvailableServer", "No server is available for this model now."),
}
_DELIVERY_FAULTS: Final = frozenset({Fault.STAGGERED, Fault.STAGGERED_ONCE, Fault.SHORT_BATCH})
"""Faults of a task's submission that shape how ``getResponse`` delivers its results."""
_TASK_FAILURES: Final = {
    Fault.TASK_ERROR: ("contentPolicyViolation", "The request was refused by the content policy."),
    Fault.TASK_TRANSIENT: ("timeoutProvider", "The provider did not answer in time."),
}


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int | None
    polls: bool
    seen: int = 0
