"""The models an engine can run, and the rules a request follows for each.

Rules:
- a request sends only the parameters its model accepts (:attr:`ModelInfo.parameters`); the
  others are left out and recorded as not set;
- where the client leaves ``steps`` or ``cfgScale`` unset, a model with recommended values gets
  those (a recommendation of "none" for guidance means the model's own default: nothing is
  sent); a model without recommendations gets the settings' defaults;
- a size the model cannot take is refused before any engine call (400 ``INVALID_PARAMETERS``
  naming the model's rule), inside the general limits of CONTRACT.md section 4;
- an input image goes only to a model that takes one.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import MAX_SIDE, MIN_SIDE, cursor_text

if TYPE_CHECKING:
    from imagestudio.domain.ports import ModelCatalogue

__all__ = [
    "CFG_SCALE",
    "DIFFUSION_PARAMETERS",
    "INPUT_IMAGE",
    "MAX_MODEL_LIMIT",
    "NEGATIVE_PROMPT",
    "SEED",
    "STEPS",
    "STRENGTH",
    "ListModels",
    "ModelInfo",
    "ModelPage",
    "ModelQuery",
    "SizeRule",
    "resolve_guidance",
]

NEGATIVE_PROMPT: Final = "negativePrompt"
STEPS: Final = "steps"
CFG_SCALE: Final = "cfgScale"
SEED: Final = "seed"
STRENGTH: Final = "strength"
INPUT_IMAGE: Final = "seedImage"
DIFFUSION_PARAMETERS: Final = frozenset({NEGATIVE_PROMPT, STEPS, CFG_SCALE, SEED, STRENGTH, INPUT_IMAGE})
"""What an open-weights diffusion model (FLUX, SDXL, SD 1.5) takes besides prompt and size."""
MAX_MODEL_LIMIT: Final = 100
_CURSOR: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")
_CURSOR_TEXT: Final = re.compile(r"m1:([0-9]{1,9})")


@dataclass(frozen=True, kw_only=True, slots=True)
class SizeRule:
    """The sizes a model takes: ``min_side``..``max_side`` in multiples of ``multiple_of``, or only
    the listed ``sizes`` (width, height) when there are any."""

    min_side: int = MIN_SIDE
    max_side: int = MAX_SIDE
    multiple_of: int = 1
    sizes: tuple[tuple[int, int], ...] = ()

    def allows(self, width: int, height: int) -> bool:
        if self.sizes:
            return (width, height) in self.sizes
        return all(
            self.min_side <= side <= self.max_side and side % self.multiple_of == 0
            for side in (width, height)
        )

    def describe(self) -> str:
        if self.sizes:
            return "only " + ", ".join(f"{w}x{h}" for w, h in self.sizes)
        step = f" in multiples of {self.multiple_of}" if self.multiple_of > 1 else ""
        return f"{self.min_side} to {self.max_side} px a side{step}"

    def check(self, model: str, width: int, height: int) -> None:
        """Refuse ``width`` x ``height`` unless the model takes it (400 naming the rule)."""
        if self.allows(width, height):
            return
        wrong = "height" if self.sizes or self._side_ok(width) else "width"
        raise InvalidParameters(
            f"The model {model} takes {self.describe()}; {width}x{height} is not one of its sizes",
            field=wrong,
            details={"model": model, "rule": self.describe()},
        )

    def _side_ok(self, side: int) -> bool:
        return self.min_side <= side <= self.max_side and side % self.multiple_of == 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelInfo:
    """What one model is and takes."""

    id: str
    """The model id (Runware's AIR, or the local engine's own id)."""
    name: str
    engine: str
    kind: Literal["image", "upscale"] = "image"
    family: str = "unknown"
    """The architecture, e.g. ``flux-1-schnell``, ``sdxl``, or the partner model's own."""
    parameters: frozenset[str] = field(default_factory=frozenset)
    """Which of negativePrompt, steps, cfgScale, seed, strength and seedImage (an input image) it takes."""
    sizes: SizeRule | None = None
    recommended_steps: int | None = None
    recommended_cfg_scale: float | None = None
    upscale_factors: tuple[int, ...] = ()
    """The factors an upscaler runs (``upscale`` models)."""

    def accepts(self, parameter: str) -> bool:
        return parameter in self.parameters

    @property
    def has_recommendations(self) -> bool:
        return self.recommended_steps is not None or self.recommended_cfg_scale is not None


def resolve_guidance(
    model: ModelInfo | None,
    *,
    steps: int | None,
    cfg_scale: float | None,
    default_steps: int,
    default_cfg_scale: float,
) -> tuple[int | None, float | None]:
    """The ``steps`` and ``cfgScale`` a request sends (``None``: not sent), by the module's rules."""
    if model is None:
        return (
            steps if steps is not None else default_steps,
            cfg_scale if cfg_scale is not None else default_cfg_scale,
        )
    recommended = model.has_recommendations
    if not model.accepts(STEPS):
        steps = None
    elif steps is None:
        steps = model.recommended_steps if recommended else default_steps
    if not model.accepts(CFG_SCALE):
        cfg_scale = None
    elif cfg_scale is None:
        cfg_scale = model.recommended_cfg_scale if recommended else default_cfg_scale
    return steps, cfg_scale


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelQuery:
    """A page of the model list: ``q`` matches id, name or family; ``cursor`` continues a page."""

    q: str | None = None
    limit: int = 20
    cursor: str | None = None
    offset: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise InvalidParameters("limit must be an integer", field="limit")
        if not 1 <= self.limit <= MAX_MODEL_LIMIT:
            raise InvalidParameters(f"limit must be between 1 and {MAX_MODEL_LIMIT}", field="limit")
        if self.q is not None:
            text = self.q.strip()
            if len(text) > 200:
                raise InvalidParameters("q must be at most 200 characters", field="q")
            object.__setattr__(self, "q", text or None)
        if self.cursor:
            object.__setattr__(self, "offset", _decode_cursor(self.cursor))

    def next_cursor(self, returned: int, total: int) -> str | None:
        end = self.offset + returned
        if returned == 0 or end >= total:
            return None
        return base64.urlsafe_b64encode(f"m1:{end}".encode()).decode().rstrip("=")

    def matches(self, model: ModelInfo) -> bool:
        if self.q is None:
            return True
        needle = self.q.lower()
        return any(needle in text.lower() for text in (model.id, model.name, model.family))


def _decode_cursor(token: str) -> int:
    match = _CURSOR_TEXT.fullmatch(cursor_text(token, _CURSOR))
    if match is None:
        raise InvalidParameters(
            "cursor is not one this server handed out: pass nextCursor back unchanged", field="cursor"
        )
    return int(match.group(1))


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelPage:
    items: list[ModelInfo]
    next_cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class ListModels:
    """List the models the configured engine can run.

    Rules:
    - ``q`` matches a model's id, name or family, ignoring case; ``limit`` 1 to 100 (default 20);
    - ``nextCursor`` continues the list (``null`` on the last page);
    - each model carries its family, the parameters it takes, its size rule and its
      recommended steps and guidance (``null`` where it has none).
    """

    catalogue: ModelCatalogue

    async def __call__(self, query: ModelQuery) -> ModelPage:
        return await self.catalogue.search(query)
