"""Runware adapter for the ``ImageGenerator`` port: Runware's REST API over httpx.

One call is one Runware task (``imageInference`` or ``upscale``) sent in Runware's
synchronous mode, then one plain GET of the ``imageURL`` Runware answers with. The
protocol is described in ``RUNWARE.md``; the error mapping follows CONTRACT.md section 2:

- no answer within ``timeout`` -> :class:`ProviderTimeout`; a timed-out task is never sent
  again, because Runware may still be running (and billing) it;
- connection failures, 408, 429 and 5xx are retried with exponential backoff and full
  jitter, and still failing after ``retries`` tries -> :class:`ProviderUnavailable`;
- any answer that is not Runware's protocol, and an image URL that does not serve an
  image -> :class:`ProviderUnavailable`;
- a refusal Runware explains with its ``errors`` list (bad key, bad parameter, no credit)
  -> :class:`ProviderRejected` carrying Runware's code and message.

Every try, retries and backoff included, fits in ``timeout``. Each try carries its own
fresh ``taskUUID``: Runware refuses a reused one (``conflictTaskUUID``) and a failed try may
already have registered it. The API key travels only in the ``Authorization`` header of
the task request; it never reaches a log line, an exception or a ``repr``.
"""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
import msgspec
import structlog
from httpx_aiohttp import AiohttpTransport

from imagestudio.domain.errors import (
    InvalidParameters,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from imagestudio.domain.model import GeneratedImage, ImageSpec, SourceImage
from imagestudio.domain.ports import ImageInspector, ProgressCallback

__all__ = ["DEFAULT_API_URL", "RunwareImageGenerator", "runware_client"]

DEFAULT_API_URL: Final = "https://api.runware.ai/v1"

_OUTPUT_FORMATS: Final = frozenset({"JPG", "PNG", "WEBP"})
_RESULT_EXTENSIONS: Final = frozenset({"jpg", "png", "webp"})
_MEDIA_TYPES: Final = {"jpg": "image/jpeg", "tif": "image/tiff"}
_RETRYABLE_STATUSES: Final = frozenset({408, 429})
_CONNECT_TIMEOUT: Final = 10.0
_ANSWER_LIMIT: Final = 4 * 1024 * 1024  # a task answer is a few hundred bytes of JSON
_PROVIDER_TEXT_LIMIT: Final = 500
_MESSAGES_BY_CODE: Final = {
    "invalidApiKey": "Generation failed: Runware did not accept the API key",
    "insufficientCredits": "Generation failed: the Runware account does not have enough credit",
}

Sleep = Callable[[float], Awaitable[Any]]

logger = structlog.get_logger(__name__)


class _TooLarge(Exception):
    """A response body grew past its size bound."""


class _RetryableFailure(Exception):
    """One try failed in a way worth another try; carries the error to raise if none is left."""

    def __init__(self, error: ProviderUnavailable, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


class RunwareImageGenerator:
    """``ImageGenerator`` on Runware's REST API.

    ``client`` is shared and owned by the composition root (opened and closed there).
    ``timeout`` bounds the whole task request, retries included; the image download has
    its own ``download_timeout`` and ``download_limit``. ``sleep`` is the backoff's sleep,
    replaceable in tests.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 120.0,
        inspector: ImageInspector,
        download_limit: int = 64 * 1024 * 1024,
        output_format: str = "JPG",
        retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Sleep = anyio.sleep,
        download_timeout: float = 60.0,
    ) -> None:
        if not api_key:
            raise ValueError("a Runware API key is required")
        if not timeout > 0 or not download_timeout > 0:
            raise ValueError("timeouts must be positive")
        if retries < 1:
            raise ValueError("retries counts tries and must be at least 1")
        if download_limit < 1:
            raise ValueError("download_limit must be positive")
        if output_format.upper() not in _OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {sorted(_OUTPUT_FORMATS)}")
        self._client = client
        self._api_key = api_key
        self._api_url = api_url
        self._timeout = timeout
        self._inspector = inspector
        self._download_limit = download_limit
        self._download_timeout = download_timeout
        self._output_format = output_format.upper()
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_url={self._api_url!r}, timeout={self._timeout!r})"

    @property
    def name(self) -> str:
        return "runware"

    # --- the port ---------------------------------------------------------------------------

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        task = self._inference_task(spec)
        return await self._generate("imageInference", task, progress, sent_seed=spec.seed)

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage:
        task = self._inference_task(spec)
        task["seedImage"] = await anyio.to_thread.run_sync(_data_uri, source)
        task["strength"] = strength
        return await self._generate("imageInference", task, progress, sent_seed=spec.seed)

    async def upscale(self, source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
        task: dict[str, Any] = {
            "inputImage": await anyio.to_thread.run_sync(_data_uri, source),
            "upscaleFactor": scale,
            "outputFormat": self._output_format,
            "includeCost": True,
        }
        return await self._generate("upscale", task, progress, sent_seed=None)

    # --- one generation -----------------------------------------------------------------------

    def _inference_task(self, spec: ImageSpec) -> dict[str, Any]:
        task: dict[str, Any] = {"positivePrompt": spec.prompt}
        if spec.negative_prompt is not None:
            task["negativePrompt"] = spec.negative_prompt
        task.update(
            model=spec.model,
            width=spec.width,
            height=spec.height,
            steps=spec.steps,
            CFGScale=spec.cfg_scale,
            seed=spec.seed,
            numberResults=1,
            outputType="URL",
            outputFormat=self._output_format,
            includeCost=True,
        )
        return task

    async def _generate(
        self, task_type: str, task: dict[str, Any], progress: ProgressCallback, *, sent_seed: int | None
    ) -> GeneratedImage:
        started = anyio.current_time()
        log = logger.bind(task_type=task_type)
        progress(0, 1)
        try:
            task_uuid, item = await self._submit(task_type, task, started + self._timeout)
            image_url, seed, cost = _read_result(item)
            data = await self._download(image_url, task_uuid)
            facts = await self._check_image(data)
        except (ProviderRejected, ProviderTimeout, ProviderUnavailable) as error:
            log.warning(
                "runware.failed",
                code=error.code,
                error=error.message,
                provider_code=error.details.get("providerCode"),
                duration_ms=_ms_since(started),
            )
            raise
        progress(1, 1)
        log.info(
            "runware.generated",
            task_uuid=task_uuid,
            width=facts.width,
            height=facts.height,
            size=len(data),
            cost=cost,
            duration_ms=_ms_since(started),
        )
        return GeneratedImage(
            data=data,
            extension=facts.format,
            width=facts.width,
            height=facts.height,
            seed=seed if seed is not None else sent_seed,
            remote_url=image_url,
            cost=cost,
        )

    # --- the task request, with retries ---------------------------------------------------------

    async def _submit(
        self, task_type: str, task: dict[str, Any], deadline: float
    ) -> tuple[str, dict[str, Any]]:
        """Send the task until Runware answers it or the tries run out; return its result item."""
        failure: _RetryableFailure | None = None
        for attempt in range(1, self._retries + 1):
            if anyio.current_time() >= deadline:
                break
            task_uuid = str(uuid.uuid4())
            body = await _encode({"taskType": task_type, "taskUUID": task_uuid, **task})
            try:
                return task_uuid, await self._try_once(body, task_type, task_uuid, attempt, deadline)
            except _RetryableFailure as retryable:
                failure = retryable
            if attempt == self._retries:
                break
            delay = self._backoff(attempt)
            if anyio.current_time() + delay >= deadline:
                break  # waiting would overrun the time budget: give up now rather than time out
            logger.info(
                "runware.retry",
                task_type=task_type,
                task_uuid=task_uuid,
                attempt=attempt,
                reason=failure.reason,
                delay_s=round(delay, 3),
            )
            await self._sleep(delay)
        if failure is None:
            raise ProviderTimeout("Generation failed: Runware did not answer in time")
        raise failure.error from failure.__cause__

    async def _try_once(
        self, body: bytes, task_type: str, task_uuid: str, attempt: int, deadline: float
    ) -> dict[str, Any]:
        started = anyio.current_time()
        remaining = deadline - started
        timeout = httpx.Timeout(remaining, connect=min(_CONNECT_TIMEOUT, remaining))
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        log = logger.bind(task_type=task_type, task_uuid=task_uuid, attempt=attempt)
        try:
            with anyio.fail_after(remaining):
                async with self._client.stream(
                    "POST", self._api_url, content=body, headers=headers, timeout=timeout
                ) as response:
                    status = response.status_code
                    answer = await _read_bounded(response, _ANSWER_LIMIT)
        except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout) as error:
            log.warning("runware.timeout", duration_ms=_ms_since(started))
            raise ProviderTimeout("Generation failed: Runware did not answer in time") from error
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            log.warning("runware.unreachable", error=type(error).__name__, duration_ms=_ms_since(started))
            unavailable = ProviderUnavailable("Generation failed: Runware could not be reached")
            raise _RetryableFailure(unavailable, type(error).__name__) from error
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            log.warning("runware.connection_lost", error=type(error).__name__, duration_ms=_ms_since(started))
            unavailable = ProviderUnavailable("Generation failed: the connection to Runware broke off")
            raise _RetryableFailure(unavailable, type(error).__name__) from error
        except _TooLarge as error:
            raise ProviderUnavailable(
                "Generation failed: Runware sent an answer that is far too large"
            ) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            log.warning("runware.request_failed", error=type(error).__name__)
            raise ProviderUnavailable("Generation failed: Runware could not be reached") from error
        log.info("runware.answered", status=status, duration_ms=_ms_since(started))
        return self._interpret(status, answer, task_uuid)

    def _interpret(self, status: int, answer: bytes, task_uuid: str) -> dict[str, Any]:
        """Turn one HTTP answer into our task's result item or the right domain error."""
        if status == 200:
            return self._result_item(answer, task_uuid)
        if status in _RETRYABLE_STATUSES or 500 <= status <= 599:
            provider_error = _provider_error(answer, task_uuid)
            unavailable = ProviderUnavailable(
                f"Generation failed: Runware is unavailable (HTTP {status})",
                details=self._provider_details(provider_error),
            )
            raise _RetryableFailure(unavailable, f"HTTP {status}")
        if 400 <= status <= 499:
            provider_error = _provider_error(answer, task_uuid)
            if provider_error is None:
                raise ProviderUnavailable(
                    f"Generation failed: Runware answered HTTP {status} outside its protocol"
                )
            raise self._rejection(provider_error)
        raise ProviderUnavailable(f"Generation failed: Runware answered with unexpected HTTP status {status}")

    def _result_item(self, answer: bytes, task_uuid: str) -> dict[str, Any]:
        try:
            document = json.loads(answer)
        except ValueError as error:
            raise ProviderUnavailable("Generation failed: Runware sent an answer that is not JSON") from error
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, list):
            for item in data:
                if isinstance(item, dict) and item.get("taskUUID") == task_uuid:
                    return item
        provider_error = _provider_error(answer, task_uuid)
        if provider_error is not None:
            raise self._rejection(provider_error)
        if not isinstance(data, list):
            raise ProviderUnavailable("Generation failed: Runware sent an answer without a data list")
        raise ProviderUnavailable("Generation failed: Runware's answer did not include our task")

    def _rejection(self, provider_error: dict[str, str]) -> ProviderRejected:
        code = provider_error["code"]
        message = _MESSAGES_BY_CODE.get(code) or f"Generation failed: Runware rejected the request ({code})"
        return ProviderRejected(
            message,
            provider_code=self._redact(code),
            provider_message=self._redact(provider_error["message"]),
        )

    def _provider_details(self, provider_error: dict[str, str] | None) -> dict[str, Any]:
        if provider_error is None:
            return {}
        return {
            "providerCode": self._redact(provider_error["code"]),
            "providerMessage": self._redact(provider_error["message"]),
        }

    def _redact(self, text: str) -> str:
        """Provider text goes into error details; make sure it cannot carry our key back out."""
        return text.replace(self._api_key, "[redacted]")[:_PROVIDER_TEXT_LIMIT]

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a uniform draw below the capped exponential step."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter spreads retries, it guards no secret

    # --- the image download ---------------------------------------------------------------------

    async def _download(self, url: str, task_uuid: str) -> bytes:
        """GET Runware's image (no credentials: it is a plain public URL) within its own bounds."""
        started = anyio.current_time()
        timeout = httpx.Timeout(self._download_timeout, connect=min(_CONNECT_TIMEOUT, self._download_timeout))
        log = logger.bind(task_uuid=task_uuid)
        try:
            with anyio.fail_after(self._download_timeout):
                async with self._client.stream(
                    "GET", url, timeout=timeout, follow_redirects=True
                ) as response:
                    status = response.status_code
                    if status != 200:
                        log.warning("runware.download_failed", status=status, duration_ms=_ms_since(started))
                        raise ProviderUnavailable(
                            f"Generation failed: Runware's image could not be downloaded (HTTP {status})"
                        )
                    data = await _read_bounded(response, self._download_limit)
        except (TimeoutError, httpx.TimeoutException) as error:
            log.warning("runware.download_timeout", duration_ms=_ms_since(started))
            raise ProviderTimeout("Generation failed: Runware's image did not download in time") from error
        except _TooLarge as error:
            raise ProviderUnavailable(
                f"Generation failed: Runware's image is larger than {self._download_limit} bytes"
            ) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            log.warning("runware.download_failed", error=type(error).__name__, duration_ms=_ms_since(started))
            raise ProviderUnavailable("Generation failed: Runware's image could not be downloaded") from error
        log.info("runware.downloaded", status=status, size=len(data), duration_ms=_ms_since(started))
        return data

    async def _check_image(self, data: bytes) -> SourceImage:
        try:
            facts = await self._inspector.inspect(data, "imageURL")
        except InvalidParameters as error:
            raise ProviderUnavailable(
                "Generation failed: Runware's image URL did not serve a usable image"
            ) from error
        if facts.format not in _RESULT_EXTENSIONS:
            raise ProviderUnavailable(
                f"Generation failed: Runware sent a {facts.format} image, not a JPG, PNG or WEBP one"
            )
        return facts


# --- helpers -------------------------------------------------------------------------------------


def runware_client() -> httpx.AsyncClient:
    """The HTTP client of the Runware engine: httpx's API over aiohttp's connection pool.

    httpx's own pool (httpcore) walks every pooled connection, with a system call each, to place
    each request; at 64 concurrent generations that was a quarter of the server's CPU and grew
    with the pool (BENCHMARKS.md, P1). aiohttp's pool hands out an idle connection directly. The
    adapter sees httpx requests, responses and exceptions either way.
    """
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=30.0)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits))


def _data_uri(source: SourceImage) -> str:
    """The source image's bytes as a ``data:`` URI (Runware accepts these inline)."""
    media_type = _MEDIA_TYPES.get(source.format, f"image/{source.format}")
    return f"data:{media_type};base64,{base64.b64encode(source.data).decode('ascii')}"


async def _encode(task: dict[str, Any]) -> bytes:
    """Runware's envelope: a JSON array of tasks. Large inline images are encoded off the loop."""
    tasks = [task]
    if "seedImage" in task or "inputImage" in task:
        return await anyio.to_thread.run_sync(_dumps, tasks)
    return _dumps(tasks)


def _dumps(value: object) -> bytes:
    """Compact JSON. msgspec rather than ``json.dumps``: on a 20 MB inline image it takes 10 ms,
    not 130 (BENCHMARKS.md, P7). Every number in a task comes from a validated, finite domain value."""
    return msgspec.json.encode(value)


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _provider_error(answer: bytes, task_uuid: str) -> dict[str, str] | None:
    """Runware's explanation of a failure: the first of its ``errors`` (ours first), if well formed."""
    try:
        document = json.loads(answer)
    except ValueError:
        return None
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return None
    usable = [
        error
        for error in errors
        if isinstance(error, dict) and isinstance(error.get("code"), str) and error["code"]
    ]
    if not usable:
        return None
    chosen = next((error for error in usable if error.get("taskUUID") == task_uuid), usable[0])
    message = chosen.get("message")
    return {"code": chosen["code"], "message": message if isinstance(message, str) else ""}


def _read_result(item: dict[str, Any]) -> tuple[str, int | None, float | None]:
    """The image URL, seed and cost of one result item, each checked against the protocol."""
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
    return image_url, seed, cost


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _ms_since(started: float) -> int:
    return round((anyio.current_time() - started) * 1000)
