"""Sending one Runware task and getting its results, without ever paying for it twice.

The rules (CONTRACT.md section 2, RUNWARE.md points 2, 3, 7 and 8, and how Runware's own SDK
behaves in ``runware.transport.rest``, ``runware.utils.retry`` and ``runware.client``):

- inference and upscale tasks go with ``deliveryMethod: "async"``: Runware acknowledges them and
  the result is fetched with ``getResponse``, first after ``poll_first`` (1 s), then at intervals
  growing by 1.5x up to 10 s; ``processing`` and partial items (an ``imageUUID`` without its
  image yet) mean "not yet". The time budget (``RUNWARE_TIMEOUT``) bounds the whole wait;
- a try that may have reached Runware (a connection lost after the body went out, a 502/504, a
  429) is resent with the **same** ``taskUUID``: Runware runs a task once per UUID, answers a
  resend of a known one with 409 ``conflictTaskUUID``, and that answer means "already running":
  the result is then fetched by polling. Only a task Runware reports as failed is sent again
  under a new UUID (a failed task is not billed);
- a request that gets no answer within the budget is a :class:`ProviderTimeout` and is not
  resent (Runware may still be running it); polls are free and are simply tried again;
- backoff between tries: about 1 s doubling (cap 30 s) plus up to 1 s of jitter, at most
  ``retries`` tries, or the server's ``Retry-After`` when it sends one; a wait that would
  overrun the budget ends the call at once;
- transient error codes are retried whatever the HTTP status; refusals (bad key, no credit,
  bad parameter, content policy) are :class:`ProviderRejected` with Runware's code and message;
  a 401 with an empty body is ``invalidApiKey``;
- a task with ``numberResults: N`` has N result items under its one ``taskUUID``. Runware makes
  them in parallel and delivers them as they are ready: an answer may hold some of them, and a
  ``getResponse`` answer repeats those delivered before (the SDK's ``_AsyncCollector`` in
  ``runware.client`` says REST polling returns the cumulative state) or not. Each item is kept the
  first time it comes, known by its ``resultIndex`` when it has one, else by its ``imageUUID``
  (as the SDK does), and polling goes on until N are in. What came in is never thrown away by a
  poll that fails or answers less; if N have not come within the budget, the call is a
  :class:`ProviderTimeout` naming how many did (the caller then keeps none: all or nothing);
- a task of several results that Runware reports failed is not sent again: some of its images
  may have been made (and billed) before the failure.

The API key travels only in the ``Authorization`` header; provider text is redacted of it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.to_thread
import httpx
import msgspec

from imagestudio.adapters.runware.protocol import (
    ProviderFailure,
    is_terminal,
    is_transient,
    items_of,
    provider_error,
    read_json,
    retry_after,
)
from imagestudio.domain.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from imagestudio.log import get_logger

__all__ = ["Progress", "RunwareTransport", "Sleep", "TaskRejected", "TooLarge", "ms_since", "read_bounded"]

Sleep = Callable[[float], Awaitable[Any]]
Progress = Callable[[int, int], None]

_RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_CONNECT_TIMEOUT: Final = 10.0
_ANSWER_LIMIT: Final = 4 * 1024 * 1024  # a task answer is a few hundred bytes of JSON
_PROVIDER_TEXT_LIMIT: Final = 500
_INLINE_IMAGE: Final = 64 * 1024  # bodies larger than this are encoded off the event loop
_MESSAGES_BY_CODE: Final = {
    "invalidApiKey": "Generation failed: Runware did not accept the API key",
    "insufficientCredits": "Generation failed: the Runware account does not have enough credit",
}
_TIMEOUT_MESSAGE: Final = "Generation failed: Runware did not answer in time"

logger = get_logger("imagestudio.adapters.runware")


class TaskRejected(ProviderRejected):
    """A refusal, with the parameter Runware named (so a caller can fall back, e.g. to bytes)."""

    def __init__(self, message: str, *, parameter: str | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.parameter = parameter


class TooLarge(Exception):
    """A response body grew past its size bound."""


class _Retry(Exception):
    """One try failed in a way worth another try with the same body."""

    def __init__(self, error: ProviderUnavailable, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.wait = wait


class _TaskFailed(Exception):
    """Runware ran the task and reports it failed transiently: another task may succeed."""

    def __init__(self, failure: ProviderFailure) -> None:
        super().__init__(failure.code)
        self.failure = failure


class _Lost(Exception):
    """A poll found no such task."""


class _Results:
    """The result items of one task gathered over its answers, each once, until ``expected`` are in."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self._items: dict[object, dict[str, Any]] = {}
        self.running = 0
        """The progress (0-99) Runware last reported on an image still being made."""

    def add(self, item: dict[str, Any]) -> None:
        self._items.setdefault(_identity(item, len(self._items)), item)

    @property
    def items(self) -> list[dict[str, Any]]:
        """The items in the order they came."""
        return list(self._items.values())

    @property
    def complete(self) -> bool:
        return len(self._items) >= self.expected

    def report(self, progress: Progress | None) -> None:
        """The task's progress: the images received and the part of the next one Runware reports."""
        if progress is None:
            return
        total = 100 * self.expected
        progress(min(100 * len(self._items) + self.running, total - 1), total)


def _identity(item: dict[str, Any], arrival: int) -> object:
    """What tells one result item of a task from another: Runware's ``resultIndex``, else the
    ``imageUUID`` (as ``runware.client._AsyncCollector._stable_id``), else its place of arrival."""
    index = item.get("resultIndex")
    if isinstance(index, int) and not isinstance(index, bool):
        return ("index", index)
    image_uuid = item.get("imageUUID")
    if isinstance(image_uuid, str) and image_uuid:
        return ("uuid", image_uuid)
    return ("arrival", arrival)


@dataclass
class _Budget:
    deadline: float
    tries_left: int

    @property
    def remaining(self) -> float:
        return self.deadline - anyio.current_time()


class RunwareTransport:
    """Runs Runware tasks over REST: submit (with retries), poll, and map failures to domain errors."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        api_url: str,
        timeout: float,
        request_timeout: float = 30.0,
        retries: int = 4,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        jitter: float = 1.0,
        poll_first: float = 1.0,
        poll_growth: float = 1.5,
        poll_cap: float = 10.0,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("a Runware API key is required")
        if not timeout > 0 or not request_timeout > 0:
            raise ValueError("timeouts must be positive")
        if retries < 1:
            raise ValueError("retries counts tries and must be at least 1")
        self._client = client
        self._api_key = api_key
        self._api_url = api_url
        self.timeout = timeout
        self._request_timeout = request_timeout
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._jitter = jitter
        self._poll_first = poll_first
        self._poll_growth = poll_growth
        self._poll_cap = poll_cap
        self._sleep = sleep

    @property
    def api_url(self) -> str:
        return self._api_url

    def redact(self, text: str) -> str:
        """Provider text goes into error details; make sure it cannot carry our key back out."""
        return text.replace(self._api_key, "[redacted]")[:_PROVIDER_TEXT_LIMIT]

    # --- the public calls ---------------------------------------------------------------------

    async def run(
        self, task: dict[str, Any], progress: Progress | None = None, *, asynchronous: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """Run one task to its (first) result item: ``(taskUUID, item)``.

        ``asynchronous`` sends ``deliveryMethod: "async"`` and polls; utility tasks whose schema
        has no ``deliveryMethod`` (``imageUpload``, ``modelSearch``) are answered at once.
        """
        task_uuid, items = await self.run_all(task, progress, asynchronous=asynchronous)
        return task_uuid, items[0]

    async def run_all(
        self, task: dict[str, Any], progress: Progress | None = None, *, asynchronous: bool = True
    ) -> tuple[str, list[dict[str, Any]]]:
        """Run one task to all its result items, ``numberResults`` of them (1 when it has none),
        in the order they came: ``(taskUUID, items)``. ``progress`` covers them all."""
        budget = _Budget(deadline=anyio.current_time() + self.timeout, tries_left=self._retries)
        task_type = str(task["taskType"])
        expected = task.get("numberResults", 1)
        expected = expected if isinstance(expected, int) and expected > 1 else 1
        while True:
            task_uuid = str(uuid.uuid4())
            wire = {**task, "taskUUID": task_uuid}
            if asynchronous:
                wire["deliveryMethod"] = "async"
            body = await _encode([wire])
            try:
                items = await self._submit(body, task_type, task_uuid, budget)
                if not asynchronous and items:  # answered in full at once, whatever its item holds
                    return task_uuid, [self._checked(items[0], task_uuid)]
                results = _Results(expected)
                self._take(items, task_uuid, results)
                if not results.complete:
                    await self._poll(task_type, task_uuid, budget, progress, results)
                return task_uuid, results.items
            except _TaskFailed as failed:
                if (
                    expected > 1
                    or budget.tries_left < 1
                    or not await self._back_off(budget, 1, None, task_type, failed)
                ):
                    raise ProviderUnavailable(
                        f"Generation failed: Runware could not run the task ({failed.failure.code})",
                        details=self._details(failed.failure),
                    ) from None
                logger.info("runware.resubmit", task_type=task_type, failed_uuid=task_uuid)

    # --- submitting, with retries of the same body ----------------------------------------------

    async def _submit(
        self, body: bytes, task_type: str, task_uuid: str, budget: _Budget
    ) -> list[dict[str, Any]]:
        """Send until Runware takes the task; the items of the answer that are ours (none when an
        earlier try had got through: the task runs, and polling fetches its results)."""
        attempt = 0
        while True:
            attempt += 1
            budget.tries_left -= 1
            try:
                status, answer, headers = await self._post(body, task_type, task_uuid, attempt, budget)
                return self._submitted(status, answer, headers, task_uuid)
            except _Retry as retry:
                if budget.tries_left < 1 or not await self._back_off(
                    budget, attempt, retry.wait, task_type, retry
                ):
                    raise retry.error from retry.__cause__

    def _submitted(
        self, status: int, answer: bytes, headers: httpx.Headers, task_uuid: str
    ) -> list[dict[str, Any]]:
        document = read_json(answer)
        failure = provider_error(document, task_uuid)
        if status == 200:
            if document is None or not isinstance(document, dict):
                raise ProviderUnavailable("Generation failed: Runware sent an answer that is not JSON")
            mine = [item for item in items_of(document) if item.get("taskUUID") == task_uuid]
            if mine:
                return mine
            if failure is not None:
                raise self._failure_error(failure, status)
            if not isinstance(document.get("data"), list):
                raise ProviderUnavailable("Generation failed: Runware sent an answer without a data list")
            raise ProviderUnavailable("Generation failed: Runware's answer did not include our task")
        if failure is not None and failure.code == "conflictTaskUUID":
            return []  # an earlier try of ours got through: the task runs, fetch it by polling
        if status in _RETRYABLE_STATUSES or (failure is not None and is_transient(failure.code)):
            unavailable = ProviderUnavailable(
                f"Generation failed: Runware is unavailable (HTTP {status})", details=self._details(failure)
            )
            raise _Retry(unavailable, f"HTTP {status}", retry_after(headers.get("Retry-After")))
        if failure is None:
            if status == 401:
                failure = ProviderFailure("invalidApiKey", "Runware answered 401 without a body")
            elif 400 <= status <= 499:
                raise ProviderUnavailable(
                    f"Generation failed: Runware answered HTTP {status} outside its protocol"
                )
            else:
                raise ProviderUnavailable(
                    f"Generation failed: Runware answered with unexpected HTTP status {status}"
                )
        raise self._rejection(failure)

    def _checked(self, item: dict[str, Any], task_uuid: str) -> dict[str, Any]:
        """Our item of an answer, unless it reports an error: then that error is raised."""
        if item.get("status") == "error":
            failure = provider_error({"data": [item]}, task_uuid) or ProviderFailure(
                "taskFailed", "Runware reported the task failed"
            )
            if is_transient(failure.code):
                raise _TaskFailed(failure)
            raise self._rejection(failure)
        return item

    def _take(self, mine: list[dict[str, Any]], task_uuid: str, results: _Results) -> None:
        """Keep the results among our items of an answer, and the progress of those still running."""
        running: int | None = None
        for item in mine:
            if is_terminal(self._checked(item, task_uuid)):
                results.add(item)
                continue
            done = item.get("progress")
            if isinstance(done, int) and not isinstance(done, bool):
                running = max(running or 0, max(0, min(done, 99)))
        if running is not None:
            results.running = running

    # --- polling ------------------------------------------------------------------------------

    async def _poll(
        self, task_type: str, task_uuid: str, budget: _Budget, progress: Progress | None, results: _Results
    ) -> None:
        """Ask for the task's results until ``results`` holds all of them."""
        body = _dumps([{"taskType": "getResponse", "taskUUID": task_uuid}])
        delay = self._poll_first
        polls = 0
        while True:
            if budget.remaining <= delay:
                raise _late(task_type, task_uuid, polls, results)
            await self._sleep(delay)
            delay = min(delay * self._poll_growth, self._poll_cap)
            polls += 1
            try:
                status, answer, _ = await self._post(body, "getResponse", task_uuid, polls, budget)
            except _Retry as retry:
                logger.info("runware.poll_retry", task_uuid=task_uuid, reason=retry.reason)
                continue
            except ProviderTimeout:
                if budget.remaining <= 0:
                    raise _late(task_type, task_uuid, polls, results) from None
                continue
            document = read_json(answer)
            failure = provider_error(document, task_uuid)
            mine = [item for item in items_of(document) if item.get("taskUUID") == task_uuid]
            if status == 200 and mine:
                self._take(mine, task_uuid, results)
                if results.complete:
                    return
                results.report(progress)
                continue
            if status in _RETRYABLE_STATUSES or (failure is not None and is_transient(failure.code)):
                continue
            if failure is not None:
                raise self._failure_error(failure, status)
            if status == 200:
                continue  # nothing about our task yet
            raise ProviderUnavailable(f"Generation failed: Runware answered a poll with HTTP {status}")

    def _failure_error(self, failure: ProviderFailure, status: int) -> Exception:
        if is_transient(failure.code):
            return _TaskFailed(failure)
        return self._rejection(failure)

    # --- one HTTP exchange ----------------------------------------------------------------------

    async def _post(
        self, body: bytes, task_type: str, task_uuid: str, attempt: int, budget: _Budget
    ) -> tuple[int, bytes, httpx.Headers]:
        started = anyio.current_time()
        remaining = budget.deadline - started
        if remaining <= 0:
            raise ProviderTimeout(_TIMEOUT_MESSAGE)
        wait = min(remaining, self._request_timeout)
        timeout = httpx.Timeout(wait, connect=min(_CONNECT_TIMEOUT, wait))
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        log = logger.bind(task_type=task_type, task_uuid=task_uuid, attempt=attempt)
        try:
            with anyio.fail_after(wait):
                async with self._client.stream(
                    "POST", self._api_url, content=body, headers=headers, timeout=timeout
                ) as response:
                    status = response.status_code
                    answer = await read_bounded(response, _ANSWER_LIMIT)
                    response_headers = response.headers
        except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout) as error:
            log.warning("runware.timeout", duration_ms=ms_since(started))
            raise ProviderTimeout(_TIMEOUT_MESSAGE) from error
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            log.warning("runware.unreachable", error=type(error).__name__, duration_ms=ms_since(started))
            unavailable = ProviderUnavailable("Generation failed: Runware could not be reached")
            raise _Retry(unavailable, type(error).__name__) from error
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            log.warning("runware.connection_lost", error=type(error).__name__, duration_ms=ms_since(started))
            unavailable = ProviderUnavailable("Generation failed: the connection to Runware broke off")
            raise _Retry(unavailable, type(error).__name__) from error
        except TooLarge as error:
            raise ProviderUnavailable(
                "Generation failed: Runware sent an answer that is far too large"
            ) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            log.warning("runware.request_failed", error=type(error).__name__)
            raise ProviderUnavailable("Generation failed: Runware could not be reached") from error
        log.info("runware.answered", status=status, duration_ms=ms_since(started))
        return status, answer, response_headers

    async def _back_off(
        self, budget: _Budget, attempt: int, wait: float | None, task_type: str, reason: Exception
    ) -> bool:
        """Sleep before the next try; ``False`` (no sleep) if it would overrun the budget."""
        delay = wait if wait is not None else self._backoff(attempt)
        if budget.remaining <= delay:
            return False
        logger.info(
            "runware.retry", task_type=task_type, attempt=attempt, reason=str(reason), delay_s=round(delay, 3)
        )
        await self._sleep(delay)
        return True

    def _backoff(self, attempt: int) -> float:
        """About 1 s doubling, capped, plus jitter (``runware.utils.retry.calculate_retry_delay``)."""
        step = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        return step + random.uniform(0.0, self._jitter)  # noqa: S311 - jitter spreads retries, guards no secret

    # --- errors -------------------------------------------------------------------------------

    def _rejection(self, failure: ProviderFailure) -> TaskRejected:
        code = failure.code
        message = _MESSAGES_BY_CODE.get(code) or f"Generation failed: Runware rejected the request ({code})"
        return TaskRejected(
            message,
            parameter=failure.parameter,
            provider_code=self.redact(code),
            provider_message=self.redact(failure.message),
        )

    def _details(self, failure: ProviderFailure | None) -> dict[str, Any]:
        if failure is None:
            return {}
        return {"providerCode": self.redact(failure.code), "providerMessage": self.redact(failure.message)}


def _late(task_type: str, task_uuid: str, polls: int, results: _Results) -> ProviderTimeout:
    """The budget ran out before every result came: a timeout, saying how many did."""
    received = len(results.items)
    logger.warning(
        "runware.poll_timeout",
        task_type=task_type,
        task_uuid=task_uuid,
        polls=polls,
        received=received,
        expected=results.expected,
    )
    if not received:
        return ProviderTimeout(_TIMEOUT_MESSAGE)
    return ProviderTimeout(
        f"Generation failed: Runware delivered {received} of the {results.expected} images in time"
    )


async def _encode(tasks: list[dict[str, Any]]) -> bytes:
    """Runware's envelope: a JSON array of tasks. Large inline images are encoded off the loop."""
    inline = any(isinstance(value, str) and len(value) > _INLINE_IMAGE for value in _values(tasks))
    if inline:
        return await anyio.to_thread.run_sync(_dumps, tasks)
    return _dumps(tasks)


def _values(tasks: list[dict[str, Any]]) -> list[Any]:
    found: list[Any] = []
    for task in tasks:
        for value in task.values():
            if isinstance(value, dict):
                found += [
                    v for inner in value.values() for v in (inner if isinstance(inner, list) else [inner])
                ]
            else:
                found.append(value)
    return found


def _dumps(value: object) -> bytes:
    """Compact JSON. msgspec rather than ``json.dumps``: on a 20 MB inline image it takes 10 ms,
    not 130 (BENCHMARKS.md, P7). Every number in a task comes from a validated, finite domain value."""
    return msgspec.json.encode(value)


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def ms_since(started: float) -> int:
    return round((anyio.current_time() - started) * 1000)
