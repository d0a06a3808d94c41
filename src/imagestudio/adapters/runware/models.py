"""``ModelCatalogue`` on Runware: what each model takes, from ``modelSearch`` and known facts.

Where the facts come from, most trusted first:

1. :data:`KNOWN_MODELS`, the models this project documents (the default FLUX.1 [schnell], FLUX.1
   [dev], the partner models FLUX1.1 [pro] and GPT Image 1, the upscalers ``runware:500@1`` to
   ``504@1``). Their parameters are those of Runware's schema for the model
   (``runware.types.task_map``; a conformance test holds this table to it), their sizes those
   of RUNWARE.md point 5, their recommended steps and guidance those of the model's makers;
2. ``modelSearch`` answers (cached ``ttl`` seconds): a community checkpoint's architecture gives
   its parameters and size rule, its ``defaultSteps`` / ``defaultCFG`` the recommendations;
3. offline, or when Runware cannot be asked: the SDK's bundled registry
   (``runware.types.task_map``), when ``runware-sdk`` is installed, for image and upscale models.

A model none of these knows is ``None``: the request goes as asked and Runware judges it.
"""

from __future__ import annotations

import time
import typing
from collections import OrderedDict
from typing import Any, Final

from imagestudio.adapters.runware.transport import RunwareTransport
from imagestudio.domain.errors import ProviderError
from imagestudio.domain.models import (
    CFG_SCALE,
    DIFFUSION_PARAMETERS,
    INPUT_IMAGE,
    NEGATIVE_PROMPT,
    SEED,
    STEPS,
    STRENGTH,
    ModelInfo,
    ModelPage,
    ModelQuery,
    SizeRule,
)
from imagestudio.log import get_logger

__all__ = ["DEFAULT_MODEL", "DEFAULT_UPSCALER", "KNOWN_MODELS", "RunwareModelCatalogue", "upscaler_for"]

DEFAULT_MODEL: Final = "runware:100@1"
DEFAULT_UPSCALER: Final = "runware:504@1"
_FLUX_SIZES: Final = SizeRule(multiple_of=16)
_SD_SIZES: Final = SizeRule(multiple_of=8)


def _image(
    model: str, name: str, family: str, parameters: frozenset[str], sizes: SizeRule, **extra: Any
) -> ModelInfo:
    return ModelInfo(
        id=model, name=name, engine="runware", family=family, parameters=parameters, sizes=sizes, **extra
    )


def _upscaler(model: str, name: str, factors: tuple[int, ...]) -> ModelInfo:
    return ModelInfo(
        id=model, name=name, engine="runware", kind="upscale", family="upscaler", upscale_factors=factors
    )


KNOWN_MODELS: Final[dict[str, ModelInfo]] = {
    info.id: info
    for info in (
        # FLUX.1 [schnell] is distilled for 1-4 steps with guidance off (BFL's model card).
        _image("runware:100@1", "FLUX.1 [schnell]", "flux-1-schnell", DIFFUSION_PARAMETERS, _FLUX_SIZES,
               recommended_steps=4, recommended_cfg_scale=None),
        _image("runware:101@1", "FLUX.1 [dev]", "flux-1-dev", DIFFUSION_PARAMETERS, _FLUX_SIZES,
               recommended_steps=28, recommended_cfg_scale=3.5),
        # Partner models: their schemas have no steps, CFGScale or negativePrompt.
        _image("bfl:2@1", "FLUX1.1 [pro]", "flux-1-1-pro", frozenset({SEED}),
               SizeRule(min_side=256, max_side=1440, multiple_of=32)),
        _image("openai:1@1", "GPT Image 1", "gpt-image-1", frozenset({INPUT_IMAGE}),
               SizeRule(sizes=((1024, 1024), (1536, 1024), (1024, 1536)))),
        # RUNWARE.md point 1: Clarity, CCSR and the SD latent upscaler take 2; SwinIR and Real-ESRGAN 2 or 4.
        _upscaler("runware:500@1", "Clarity", (2,)),
        _upscaler("runware:501@1", "CCSR", (2,)),
        _upscaler("runware:502@1", "Stable Diffusion latent upscaler", (2,)),
        _upscaler("runware:503@1", "SwinIR", (2, 4)),
        _upscaler("runware:504@1", "Real-ESRGAN", (2, 4)),
    )
}  # fmt: skip

# Open-weights architectures (``modelSearch``'s ``architecture``, the SDK's architecture slugs).
_ARCHITECTURES: Final = {
    "flux-1-schnell": _FLUX_SIZES, "flux-1-dev": _FLUX_SIZES, "flux1s": _FLUX_SIZES, "flux1d": _FLUX_SIZES,
    "sdxl": _SD_SIZES, "sd-1-5": _SD_SIZES, "sd1x": _SD_SIZES, "pony": _SD_SIZES, "illustrious": _SD_SIZES,
    "noobai": _SD_SIZES, "sdxl-lightning": _SD_SIZES, "sdxl-turbo": _SD_SIZES,
}  # fmt: skip
# Schema key -> the domain's parameter name.
_SCHEMA_KEYS: Final = {
    "negativePrompt": NEGATIVE_PROMPT, "steps": STEPS, "CFGScale": CFG_SCALE, "seed": SEED,
    "strength": STRENGTH, "inputs": INPUT_IMAGE,
}  # fmt: skip

logger = get_logger("imagestudio.adapters.runware")


def upscaler_for(model: ModelInfo, scale: int) -> int | None:
    """The factor ``model`` runs for ``scale``: ``scale`` itself, else the next larger (then resampled)."""
    if scale in model.upscale_factors:
        return scale
    larger = [factor for factor in model.upscale_factors if factor > scale]
    return min(larger) if larger else None


class RunwareModelCatalogue:
    """Runware's models: known facts, ``modelSearch`` (cached) and the SDK's registry offline."""

    def __init__(self, transport: RunwareTransport, *, ttl: float = 600.0, cache_size: int = 512) -> None:
        self._transport = transport
        self._ttl = ttl
        self._size = cache_size
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()

    @property
    def default_model(self) -> str:
        return DEFAULT_MODEL

    async def get(self, model_id: str) -> ModelInfo | None:
        known = KNOWN_MODELS.get(model_id)
        if known is not None:
            return known
        page = await self._search(model_id, limit=20, offset=0)
        if page is not None:
            found = next((info for info in page[0] if info.id == model_id), None)
            if found is not None:
                return found
        return _bundled().get(model_id)

    async def search(self, query: ModelQuery) -> ModelPage:
        answer = await self._search(query.q, limit=query.limit, offset=query.offset)
        if answer is None:  # Runware could not be asked: the facts this process has
            offline = [info for info in {**_bundled(), **KNOWN_MODELS}.values() if query.matches(info)]
            offline.sort(key=lambda info: (info.id not in KNOWN_MODELS, info.id))
            items = offline[query.offset : query.offset + query.limit]
            return ModelPage(items=items, next_cursor=query.next_cursor(len(items), len(offline)))
        items, total = answer
        return ModelPage(items=items, next_cursor=query.next_cursor(len(items), total))

    async def _search(
        self, text: str | None, *, limit: int, offset: int
    ) -> tuple[list[ModelInfo], int] | None:
        key = (text, limit, offset)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            result: tuple[list[ModelInfo], int] = cached[1]
            return result
        task: dict[str, Any] = {
            "taskType": "modelSearch",
            "category": "checkpoint",
            "limit": limit,
            "offset": offset,
        }
        if text:
            task["search"] = text
        try:
            _, item = await self._transport.run(task, asynchronous=False)
        except ProviderError as error:
            logger.warning("runware.model_search_failed", code=error.code, error=error.message)
            return None
        results = item.get("results")
        total = item.get("totalResults")
        models = (
            [info for entry in results if (info := _from_search(entry)) is not None]
            if isinstance(results, list)
            else []
        )
        answer = (models, total if isinstance(total, int) and not isinstance(total, bool) else len(models))
        self._cache[key] = (now + self._ttl, answer)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return answer


def _from_search(entry: object) -> ModelInfo | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("air"), str):
        return None
    air: str = entry["air"]
    if air in KNOWN_MODELS:
        return KNOWN_MODELS[air]
    architecture = entry.get("architecture")
    name = entry.get("name") if isinstance(entry.get("name"), str) else air
    sizes = _ARCHITECTURES.get(architecture) if isinstance(architecture, str) else None
    bundled = _bundled().get(air)
    if sizes is None:
        return bundled
    steps, cfg = entry.get("defaultSteps"), entry.get("defaultCFG")
    return ModelInfo(
        id=air,
        name=str(name),
        engine="runware",
        family=str(architecture),
        parameters=bundled.parameters if bundled is not None else DIFFUSION_PARAMETERS,
        sizes=sizes,
        recommended_steps=steps
        if isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= 100
        else None,
        recommended_cfg_scale=float(cfg)
        if isinstance(cfg, int | float) and not isinstance(cfg, bool) and 0 <= cfg <= 50
        else None,
    )


_BUNDLED: dict[str, ModelInfo] | None = None


def _bundled() -> dict[str, ModelInfo]:
    """Image and upscale models of the SDK's bundled registry (empty without ``runware-sdk``)."""
    global _BUNDLED
    if _BUNDLED is None:
        _BUNDLED = _read_bundled()
    return _BUNDLED


def _read_bundled() -> dict[str, ModelInfo]:
    try:
        from runware.types import task_map
    except ImportError:
        return {}
    schemas: dict[str, type] = {}
    for name, value in vars(task_map).items():
        if isinstance(value, type) and name.endswith("Params"):
            model = getattr(value, "__annotations__", {}).get("model")
            if isinstance(model, str) and model.startswith("Literal['") and model.count("'") == 2:
                schemas.setdefault(model.split("'")[1], value)
    found: dict[str, ModelInfo] = {}
    for air, entry in task_map.models.items():
        if entry.task_type not in ("imageInference", "upscale") or air not in schemas:
            continue
        hints = typing.get_type_hints(schemas[air], include_extras=True)
        if entry.task_type == "upscale":
            factors = _literal_ints(hints.get("upscaleFactor"))
            found[air] = ModelInfo(id=air, name=entry.id, engine="runware", kind="upscale", family="upscaler",
                                   upscale_factors=factors)  # fmt: skip
            continue
        if "positivePrompt" not in hints:
            continue  # a model that needs more than a prompt (filters, editors): not a generator
        parameters = frozenset(ours for key, ours in _SCHEMA_KEYS.items() if key in hints)
        found[air] = ModelInfo(
            id=air, name=entry.id, engine="runware", family=entry.id, parameters=parameters
        )
    return found


def _literal_ints(hint: Any) -> tuple[int, ...]:
    while typing.get_origin(hint) is not None and typing.get_origin(hint) is not typing.Literal:
        args = typing.get_args(hint)
        hint = args[0] if args else None
    if typing.get_origin(hint) is typing.Literal:
        return tuple(sorted(value for value in typing.get_args(hint) if isinstance(value, int)))
    return ()
