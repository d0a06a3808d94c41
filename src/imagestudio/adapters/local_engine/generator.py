"""The adapter: ``LocalImageGenerator`` and the three operations it runs in worker threads.

Each operation reads the prompt, paints the scene and runs the sampler (an input image is
decoded first). The same prompt, seed and parameters give the same pixels.
"""

from __future__ import annotations

import os
from typing import TypeVar

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from imagestudio.adapters.local_engine.canvas import _WHITE, _lerp
from imagestudio.adapters.local_engine.decoding import _load_rgb
from imagestudio.adapters.local_engine.palette import _LUMA, F32, _palette
from imagestudio.adapters.local_engine.reading import _hue_colour, _read, _Reading, _stable_hash
from imagestudio.adapters.local_engine.sampler import _denoise, _downsample, _encode, _finish
from imagestudio.adapters.local_engine.scene import _compose
from imagestudio.domain.model import GeneratedImage, ImageSpec, SourceImage
from imagestudio.domain.ports import ProgressCallback
from imagestudio.domain.values import is_air_model_id

__all__ = ["LocalImageGenerator"]


def _latent_rng(spec: ImageSpec) -> np.random.Generator:
    return np.random.default_rng([spec.seed, _stable_hash(spec.prompt), 1000])


def _understand(spec: ImageSpec) -> tuple[_Reading, dict[str, F32]]:
    reading = _read(spec.prompt, spec.negative_prompt)
    return reading, _palette(reading, _or(spec.cfg_scale, 7.5), _hue_colour(spec.prompt))


def _text_to_image(spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
    picture = _compose(spec, *_understand(spec))
    residual = _denoise(_downsample(picture), 1.0, _or(spec.steps, 25), _latent_rng(spec), progress)
    data = _encode(_finish(picture, residual))
    return GeneratedImage(data=data, extension="jpg", width=spec.width, height=spec.height, seed=spec.seed)


def _gradient_map(planes: npt.NDArray[np.uint8], pal: dict[str, F32]) -> F32:
    """Recolour a picture through the palette by its lightness, dark to light."""
    stops = np.array([0.0, 0.35, 0.7, 1.0], dtype=np.float32)
    colours = np.stack([pal["near"] * 0.5, pal["far"], pal["sky_horizon"], _lerp(pal["accent"], _WHITE, 0.3)])
    levels = np.linspace(0, 1, 256, dtype=np.float32)
    table = np.stack([np.interp(levels, stops, colours[:, k]) for k in range(3)]).astype(np.float32)
    luma = np.tensordot(_LUMA, planes, axes=1)
    index = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    return table[:, index]


def _image_to_image(
    spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
) -> GeneratedImage:
    size = (spec.width, spec.height)
    loaded = _load_rgb(source.data, "seedImage", fit=size)
    fitted = loaded if loaded.size == size else ImageOps.fit(loaded, size, Image.Resampling.LANCZOS)
    planes = np.stack([np.asarray(band) for band in fitted.split()])
    base = planes.astype(np.float32)
    base *= np.float32(1 / 255)
    reading, pal = _understand(spec)
    # first the prompt's palette recolours the source, then the new composition replaces it
    grade = 0.7 * min(1.0, 1.6 * strength)
    if grade > 0:
        base += (_gradient_map(planes, pal) - base) * np.float32(grade)
    if strength > 0:
        base += (_compose(spec, reading, pal) - base) * np.float32(strength**2)
    residual = _denoise(_downsample(base), strength, _or(spec.steps, 25), _latent_rng(spec), progress)
    data = _encode(_finish(base, residual))
    return GeneratedImage(data=data, extension="jpg", width=spec.width, height=spec.height, seed=spec.seed)


def _upscale(source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
    image = _load_rgb(source.data, "imagePath")
    progress(1, 3)
    width, height = image.width * scale, image.height * scale
    larger = image.resize((width, height), Image.Resampling.LANCZOS)
    progress(2, 3)
    data = _encode(larger)
    progress(3, 3)
    return GeneratedImage(data=data, extension="jpg", width=width, height=height, seed=None)


_N = TypeVar("_N", int, float)


def _or(value: _N | None, default: _N) -> _N:
    """A spec value the local model always takes; unset only when a caller built the spec by hand."""
    return default if value is None else value


class LocalImageGenerator:
    """``ImageGenerator`` that paints procedurally on this machine; no network, no weights.

    Work runs in worker threads, at most ``max_workers`` at once (default: one per CPU). The
    limiter is made on first use, inside the event loop that uses the instance.
    """

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._workers = max_workers or os.cpu_count() or 1
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def name(self) -> str:
        return "local"

    @property
    def default_concurrency(self) -> int:
        """As many generations at once as it has workers: the work is CPU-bound."""
        return self._workers

    def accepts_model_id(self, model_id: str) -> bool:
        """An AIR id (``provider:model@version``): whichever it names, the one procedural model runs."""
        return is_air_model_id(model_id)

    def _capacity(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._workers)
        return self._limiter

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        return await anyio.to_thread.run_sync(_text_to_image, spec, progress, limiter=self._capacity())

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage:
        return await anyio.to_thread.run_sync(
            _image_to_image, spec, source, strength, progress, limiter=self._capacity()
        )

    async def upscale(self, source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
        return await anyio.to_thread.run_sync(_upscale, source, scale, progress, limiter=self._capacity())
