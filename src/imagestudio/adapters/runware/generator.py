"""``ImageGenerator`` on Runware's REST API: tasks as the current schemas want them.

One generation is one Runware task (``imageInference`` or ``upscale``) run by
:class:`~imagestudio.adapters.runware.transport.RunwareTransport` (async delivery, polling, no
double billing), then one plain GET of the ``imageURL`` Runware answers with. A batch of N
(``BatchImageGenerator``) is one ``imageInference`` task with ``numberResults: N`` and the seed of
its first image, then one GET per image. What goes in a task:

- ``imageInference``: the prompt, size, ``numberResults`` (1, or N) and output options, plus only
  what the spec says the model takes (``ImageSpec.accepts``): ``negativePrompt``, ``steps``,
  ``CFGScale``, ``seed``; an input image goes in ``inputs.seedImage`` with ``strength`` for
  models that take a strength, else in ``inputs.referenceImages``;
- the seeds of a batch: Runware's image inference reference says of ``seed`` "when requesting
  multiple images with the same seed, the seed will be incremented by 1 (+1) for each image
  generated", and of the result's ``seed`` that with ``numberResults`` > 1 "each image will have
  its own seed value, incremented by 1 from the initial seed" (runware.ai/docs, image inference
  and PhotoMaker API pages; the schema bundle of ``runware-sdk`` 1.8.0 types ``numberResults`` and
  the result's ``seed`` as plain integers and says nothing against it). So the images of a task
  sent with seed ``s`` are those of seeds ``s``, ``s+1``, ...: the seeds of ``batch_seed``. Each
  image records the seed its result reports, else ``s + i`` for the ``i``-th; they are returned
  in seed order (results arrive in any order: Runware makes them in parallel). A model that takes
  no seed gets none, and each image records the seed Runware reports for it, if any. Runware's
  seeds go on past 2^53-1 where ours wrap back to 1, so a batch whose seeds would wrap is sent
  as two tasks, one on each side of the wrap;
- a batch is whole or fails: fewer than N images within the budget (``RUNWARE_TIMEOUT``), one
  that does not download or is not an image, or an error item fails it, and nothing of it is
  kept (the images Runware did make are billed all the same). An accepted batch task is never
  sent again (see ``transport.py``);
- ``upscale``: ``model`` (``upscale_model``, default Real-ESRGAN ``runware:504@1``), ``inputs.image``
  and an ``upscaleFactor`` the model supports. A scale it lacks (3: no Runware upscaler has it)
  runs at the next larger factor and is reduced to exactly ``scale`` times the input with Lanczos;
  the image records the factor that ran (``provider_scale``). An upscaler without a larger
  factor hands over to Real-ESRGAN.
- input images are converted to PNG when Runware could not read them (GIF, BMP, TIFF, CMYK,
  16-bit) and shrunk to what the task needs; each image Runware made or received is remembered
  by its content (``image_ids`` of them) and sent again as its ``imageUUID``. An image with no
  UUID yet is uploaded once (``imageUpload``); if Runware no longer knows a UUID, the task is sent
  again with the bytes.

The API key travels only in the ``Authorization`` header of task requests; it never reaches a
log line, an exception or a ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import httpx
from httpx_aiohttp import AiohttpTransport
from PIL import Image

from imagestudio.adapters.runware.convert import as_sent
from imagestudio.adapters.runware.models import DEFAULT_UPSCALER, KNOWN_MODELS, upscaler_for
from imagestudio.adapters.runware.protocol import Result, read_result
from imagestudio.adapters.runware.transport import (
    RunwareTransport,
    Sleep,
    TaskRejected,
    TooLarge,
    ms_since,
    read_bounded,
)
from imagestudio.domain.errors import (
    InvalidParameters,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from imagestudio.domain.model import GeneratedImage, ImageSpec, SourceImage
from imagestudio.domain.models import CFG_SCALE, NEGATIVE_PROMPT, SEED, STEPS, STRENGTH
from imagestudio.domain.ports import ImageInspector, ProgressCallback
from imagestudio.domain.rules import MAX_SEED, MIN_SEED, batch_seed
from imagestudio.domain.values import is_air_model_id
from imagestudio.log import get_logger

__all__ = ["DEFAULT_API_URL", "RUNWARE_CONCURRENCY", "RunwareImageGenerator", "runware_client"]

DEFAULT_API_URL: Final = "https://api.runware.ai/v1"
RUNWARE_CONCURRENCY: Final = 64
"""Generations run at once by default: each mostly waits on Runware, so many fit."""

_OUTPUT_FORMATS: Final = {"JPG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
_RESULT_EXTENSIONS: Final = frozenset({"jpg", "png", "webp"})
_CONNECT_TIMEOUT: Final = 10.0

T = TypeVar("T")

logger = get_logger("imagestudio.adapters.runware")


class _ImageIds:
    """Runware's ``imageUUID`` of images it has seen, by the SHA-256 of their bytes (LRU)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[bytes, str] = OrderedDict()

    def get(self, digest: bytes) -> str | None:
        found = self._ids.get(digest)
        if found is not None:
            self._ids.move_to_end(digest)
        return found

    def put(self, digest: bytes, image_uuid: str) -> None:
        if self._size < 1:
            return
        self._ids[digest] = image_uuid
        self._ids.move_to_end(digest)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        self._ids.pop(digest, None)


class RunwareImageGenerator:
    """``ImageGenerator`` on Runware's REST API.

    ``client`` is shared and owned by the composition root (opened and closed there).
    ``timeout`` is the budget of one task, retries and polling included (``RUNWARE_TIMEOUT``);
    ``request_timeout`` bounds each HTTP exchange. The image download has its own
    ``download_timeout`` and ``download_limit``. ``sleep`` is the backoff's and the polling's
    sleep, replaceable in tests.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 300.0,
        inspector: ImageInspector,
        download_limit: int = 64 * 1024 * 1024,
        output_format: str = "JPG",
        retries: int = 4,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        jitter: float = 1.0,
        sleep: Sleep = anyio.sleep,
        download_timeout: float = 60.0,
        request_timeout: float = 30.0,
        poll_first: float = 1.0,
        upscale_model: str = DEFAULT_UPSCALER,
        image_ids: int = 1024,
    ) -> None:
        if not download_timeout > 0:
            raise ValueError("timeouts must be positive")
        if download_limit < 1:
            raise ValueError("download_limit must be positive")
        if output_format.upper() not in _OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {sorted(_OUTPUT_FORMATS)}")
        upscaler = KNOWN_MODELS.get(upscale_model)
        if upscaler is None or upscaler.kind != "upscale":
            known = sorted(model for model, info in KNOWN_MODELS.items() if info.kind == "upscale")
            raise ValueError(f"upscale_model must be one of {', '.join(known)}, not {upscale_model!r}")
        self.transport = RunwareTransport(
            client,
            api_key=api_key,
            api_url=api_url,
            timeout=timeout,
            request_timeout=request_timeout,
            retries=retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            jitter=jitter,
            poll_first=poll_first,
            sleep=sleep,
        )
        self._client = client
        self._inspector = inspector
        self._download_limit = download_limit
        self._download_timeout = download_timeout
        self._output_format = output_format.upper()
        self._upscaler = upscaler
        self._ids = _ImageIds(image_ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(api_url={self.transport.api_url!r}, timeout={self.transport.timeout!r})"
        )

    @property
    def name(self) -> str:
        return "runware"

    @property
    def default_concurrency(self) -> int:
        """Many generations at once: each mostly waits on the network."""
        return RUNWARE_CONCURRENCY

    def accepts_model_id(self, model_id: str) -> bool:
        """Runware names its models by AIR id, ``provider:model@version``."""
        return is_air_model_id(model_id)

    # --- the port ---------------------------------------------------------------------------

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        [image] = await self.text_to_image_batch(spec, 1, progress)
        return image

    async def text_to_image_batch(
        self, spec: ImageSpec, count: int, progress: ProgressCallback
    ) -> list[GeneratedImage]:
        """``count`` images of ``spec`` in one ``imageInference`` task (``numberResults``)."""
        return await self._infer(spec, count, {}, progress)

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage:
        [image] = await self.image_to_image_batch(spec, source, strength, 1, progress)
        return image

    async def image_to_image_batch(
        self, spec: ImageSpec, source: SourceImage, strength: float, count: int, progress: ProgressCallback
    ) -> list[GeneratedImage]:
        """``count`` transformations of ``source`` in one ``imageInference`` task."""
        with_strength = _takes(spec, STRENGTH)

        def run(reference: str) -> Awaitable[list[GeneratedImage]]:
            extra: dict[str, Any] = (
                {"strength": strength, "inputs": {"seedImage": reference}}
                if with_strength
                else {"inputs": {"referenceImages": [reference]}}
            )
            return self._infer(spec, count, extra, progress)

        return await self._with_input(source, run, max_side=max(spec.width, spec.height))

    async def upscale(self, source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
        upscaler = self._upscaler
        factor = upscaler_for(upscaler, scale)
        if factor is None:  # e.g. a 2x-only upscaler asked for 3 or 4: Real-ESRGAN has 4
            upscaler = KNOWN_MODELS[DEFAULT_UPSCALER]
            factor = upscaler_for(upscaler, scale)
        if factor is None:
            raise InvalidParameters(f"No Runware upscaler runs {scale}x", field="scale")
        task: dict[str, Any] = {
            "taskType": "upscale",
            "model": upscaler.id,
            "upscaleFactor": factor,
            "outputType": "URL",
            "outputFormat": self._output_format,
            "includeCost": True,
        }

        async def run(reference: str) -> GeneratedImage:
            [made] = await self._generate({**task, "inputs": {"image": reference}}, progress, sent_seed=None)
            return made

        image = await self._with_input(source, run)
        if factor != scale:
            width, height = source.width * scale, source.height * scale
            data = await anyio.to_thread.run_sync(self._resample, image.data, width, height)
            logger.info(
                "runware.resampled", model=upscaler.id, ran=factor, scale=scale, width=width, height=height
            )
            image = GeneratedImage(
                data=data,
                extension=image.extension,
                width=width,
                height=height,
                seed=None,
                remote_url=None,  # Runware's URL is of the 4x image, not of this one
                cost=image.cost,
            )
        return GeneratedImage(
            data=image.data,
            extension=image.extension,
            width=image.width,
            height=image.height,
            seed=image.seed,
            remote_url=image.remote_url,
            cost=image.cost,
            model=upscaler.id,
            provider_scale=factor if factor != scale else None,
        )

    # --- tasks --------------------------------------------------------------------------------

    async def _infer(
        self, spec: ImageSpec, count: int, extra: dict[str, Any], progress: ProgressCallback
    ) -> list[GeneratedImage]:
        """``count`` images of ``spec`` (``extra``: the task's input image), in seed order: one task
        of ``numberResults: count``, or two when the seeds wrap past :data:`MAX_SEED`."""
        seed = _seed_sent(spec)
        images: list[GeneratedImage] = []
        for first, number in _seed_runs(seed, count):
            part = spec if first is None else replace(spec, seed=first)
            task = {**self._inference_task(part, number), **extra}
            images += await self._generate(task, progress, sent_seed=first)
        return images

    def _inference_task(self, spec: ImageSpec, number: int = 1) -> dict[str, Any]:
        task: dict[str, Any] = {
            "taskType": "imageInference",
            "model": spec.model,
            "positivePrompt": spec.prompt,
        }
        if spec.negative_prompt is not None and _takes(spec, NEGATIVE_PROMPT):
            task["negativePrompt"] = spec.negative_prompt
        task.update(width=spec.width, height=spec.height)
        if spec.steps is not None and _takes(spec, STEPS):
            task["steps"] = spec.steps
        if spec.cfg_scale is not None and _takes(spec, CFG_SCALE):
            task["CFGScale"] = spec.cfg_scale
        if _takes(spec, SEED):
            task["seed"] = spec.seed
        task.update(
            numberResults=number, outputType="URL", outputFormat=self._output_format, includeCost=True
        )
        return task

    async def _with_input(
        self, source: SourceImage, run: Callable[[str], Awaitable[T]], *, max_side: int | None = None
    ) -> T:
        """``run(reference)``, a task that carries ``source``: by its ``imageUUID`` when Runware has
        one (uploading the image once when not), by its bytes if Runware no longer knows the UUID."""
        data, media_type = await anyio.to_thread.run_sync(lambda: as_sent(source, max_side=max_side))
        digest = hashlib.sha256(data).digest()
        image_uuid = self._ids.get(digest) or await self._upload(data, media_type, digest)
        if image_uuid is not None:
            try:
                return await run(image_uuid)
            except TaskRejected as rejected:
                if not (rejected.parameter or "").startswith(("inputs", "image", "seedImage")):
                    raise
                logger.info("runware.image_uuid_unknown", image_uuid=image_uuid)
                self._ids.forget(digest)
        return await run(await anyio.to_thread.run_sync(_data_uri, data, media_type))

    async def _upload(self, data: bytes, media_type: str, digest: bytes) -> str | None:
        """``imageUpload`` the image once; its ``imageUUID``, or ``None`` (then the bytes travel inline)."""
        uri = await anyio.to_thread.run_sync(_data_uri, data, media_type)
        try:
            _, item = await self.transport.run({"taskType": "imageUpload", "image": uri}, asynchronous=False)
        except (ProviderUnavailable, ProviderRejected) as error:
            logger.warning("runware.upload_failed", code=error.code, error=error.message)
            return None
        image_uuid = item.get("imageUUID")
        if not isinstance(image_uuid, str) or not image_uuid:
            return None
        self._ids.put(digest, image_uuid)
        return image_uuid

    async def _generate(
        self, task: dict[str, Any], progress: ProgressCallback, *, sent_seed: int | None
    ) -> list[GeneratedImage]:
        """Run ``task`` and download its images (``numberResults`` of them), in seed order."""
        started = anyio.current_time()
        task_type = str(task["taskType"])
        log = logger.bind(task_type=task_type, model=task.get("model"))
        progress(0, 1)
        downloaded: list[tuple[Result, bytes, SourceImage]] = []
        try:
            task_uuid, items = await self.transport.run_all(task, progress)
            for result in _in_seed_order([read_result(item) for item in items], sent_seed):
                data = await self._download(result.image_url, task_uuid)
                downloaded.append((result, data, await self._check_image(data)))
        except (ProviderRejected, ProviderTimeout, ProviderUnavailable) as error:
            log.warning(
                "runware.failed",
                code=error.code,
                error=error.message,
                provider_code=error.details.get("providerCode"),
                duration_ms=ms_since(started),
            )
            raise
        images = []
        for index, (result, data, facts) in enumerate(downloaded):
            if result.image_uuid is not None:
                self._ids.put(hashlib.sha256(data).digest(), result.image_uuid)
            seed = result.seed
            if seed is None and sent_seed is not None:
                seed = batch_seed(sent_seed, index)
            images.append(
                GeneratedImage(
                    data=data,
                    extension=facts.format,
                    width=facts.width,
                    height=facts.height,
                    seed=seed,
                    remote_url=result.image_url,
                    cost=result.cost,
                )
            )
        progress(1, 1)
        log.info(
            "runware.generated",
            task_uuid=task_uuid,
            images=len(images),
            width=images[0].width,
            height=images[0].height,
            size=sum(len(image.data) for image in images),
            cost=_total(image.cost for image in images),
            duration_ms=ms_since(started),
        )
        return images

    def _resample(self, data: bytes, width: int, height: int) -> bytes:
        """Reduce an upscaled image to exactly ``width`` x ``height`` (Lanczos), in the output format."""
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pillow_format = _OUTPUT_FORMATS[self._output_format]
            mode = "RGB" if pillow_format == "JPEG" or "A" not in image.getbands() else "RGBA"
            resized = image.convert(mode).resize((width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        resized.save(buffer, format=pillow_format, quality=95)
        return buffer.getvalue()

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
                        log.warning("runware.download_failed", status=status, duration_ms=ms_since(started))
                        raise ProviderUnavailable(
                            f"Generation failed: Runware's image could not be downloaded (HTTP {status})"
                        )
                    data = await read_bounded(response, self._download_limit)
        except (TimeoutError, httpx.TimeoutException) as error:
            log.warning("runware.download_timeout", duration_ms=ms_since(started))
            raise ProviderTimeout("Generation failed: Runware's image did not download in time") from error
        except TooLarge as error:
            raise ProviderUnavailable(
                f"Generation failed: Runware's image is larger than {self._download_limit} bytes"
            ) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            log.warning("runware.download_failed", error=type(error).__name__, duration_ms=ms_since(started))
            raise ProviderUnavailable("Generation failed: Runware's image could not be downloaded") from error
        log.info("runware.downloaded", status=status, size=len(data), duration_ms=ms_since(started))
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


def _takes(spec: ImageSpec, parameter: str) -> bool:
    return spec.accepts is None or parameter in spec.accepts


def _seed_sent(spec: ImageSpec) -> int | None:
    return spec.seed if _takes(spec, SEED) else None


def _seed_runs(seed: int | None, count: int) -> list[tuple[int | None, int]]:
    """The batch as runs of consecutive seeds, ``(first seed, how many)``, one task each: one run,
    or two when ``seed + i`` would pass :data:`MAX_SEED` (our seeds wrap to :data:`MIN_SEED`)."""
    if seed is None:
        return [(None, count)]
    first = min(count, MAX_SEED - seed + 1)
    return [(seed, first)] if first == count else [(seed, first), (MIN_SEED, count - first)]


def _in_seed_order(results: list[Result], sent_seed: int | None) -> list[Result]:
    """A task's results in seed order: by how far each reported seed lies past the one sent, when
    a seed was sent and every result reports one; else as they came."""
    if sent_seed is None or any(result.seed is None for result in results):
        return results
    span = MAX_SEED - MIN_SEED + 1
    return sorted(results, key=lambda result: ((result.seed or 0) - sent_seed) % span)


def _total(costs: Iterable[float | None]) -> float | None:
    """The sum of the costs reported, ``None`` when none is."""
    reported = [cost for cost in costs if cost is not None]
    return sum(reported) if reported else None


def _data_uri(data: bytes, media_type: str) -> str:
    """Bytes as a ``data:`` URI (Runware accepts these inline)."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
