"""``ModelCatalogue`` of the local engine: the one procedural model it runs.

The local engine paints without weights, so it has one model, :data:`LOCAL_MODEL`, which takes
every diffusion parameter (they steer its palette, detail and blend) and any size inside the
general limits. Whatever model a request names, the local engine runs this one, and that is
what a Generation records.
"""

from __future__ import annotations

from typing import Final

from imagestudio.domain.model import MAX_SIDE, MIN_SIDE, SIDE_STEP
from imagestudio.domain.models import DIFFUSION_PARAMETERS, ModelInfo, ModelPage, ModelQuery, SizeRule

__all__ = ["LOCAL_MODEL", "LocalModelCatalogue"]

LOCAL_MODEL: Final = "local:procedural@1"

_INFO: Final = ModelInfo(
    id=LOCAL_MODEL,
    name="imagestudio procedural painter",
    engine="local",
    family="procedural",
    parameters=DIFFUSION_PARAMETERS,
    sizes=SizeRule(min_side=MIN_SIDE, max_side=MAX_SIDE, multiple_of=SIDE_STEP),
    upscale_factors=(2, 3, 4),
)


class LocalModelCatalogue:
    """The local engine's single model."""

    @property
    def default_model(self) -> str:
        return LOCAL_MODEL

    async def get(self, model_id: str) -> ModelInfo:
        return _INFO

    async def search(self, query: ModelQuery) -> ModelPage:
        items = [_INFO] if query.matches(_INFO) and query.offset == 0 else []
        return ModelPage(items=items, next_cursor=None)
