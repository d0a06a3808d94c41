"""``GET /api/models``: the models the configured engine can run, and what each takes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from litestar import Controller, get
from litestar.params import QueryParameter
from msgspec import Struct

from imagestudio.domain.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from imagestudio.domain.models import MAX_MODEL_LIMIT, ListModels, ModelInfo, ModelQuery
from imagestudio.http.openapi import described_by, documented, int_query, operation_id
from imagestudio.http.routing import PARAMETERS, ServicesDep, _errors

__all__ = ["ModelsController"]


class _Out(Struct, rename="camel", kw_only=True):
    pass


class ModelKind(StrEnum):
    """What a model does: make images (from a prompt, or a prompt and an image) or upscale them."""

    IMAGE = "image"
    UPSCALE = "upscale"


class SizeRuleOut(_Out):
    min_side: int
    max_side: int
    multiple_of: int
    sizes: list[tuple[int, int]]
    """When not empty, the only sizes (width, height) the model takes."""
    rule: str


class ModelOut(_Out):
    id: str
    name: str
    engine: str
    kind: ModelKind
    family: str
    parameters: list[str]
    """Beside prompt and size: which of negativePrompt, steps, cfgScale, seed, strength, seedImage."""
    sizes: SizeRuleOut | None
    recommended_steps: int | None
    recommended_cfg_scale: float | None
    upscale_factors: list[int]


class ModelsResponse(_Out):
    data: list[ModelOut]
    next_cursor: str | None
    success: Literal[True] = True


def model_out(info: ModelInfo) -> ModelOut:
    rule = info.sizes
    return ModelOut(
        id=info.id,
        name=info.name,
        engine=info.engine,
        kind=ModelKind(info.kind),
        family=info.family,
        parameters=sorted(info.parameters),
        sizes=None
        if rule is None
        else SizeRuleOut(
            min_side=rule.min_side,
            max_side=rule.max_side,
            multiple_of=rule.multiple_of,
            sizes=list(rule.sizes),
            rule=rule.describe(),
        ),
        recommended_steps=info.recommended_steps,
        recommended_cfg_scale=info.recommended_cfg_scale,
        upscale_factors=list(info.upscale_factors),
    )


class ModelsController(Controller):
    path = "/api/models"
    tags = ("models",)

    @get(
        "/",
        summary="Models the engine can run",
        description=described_by(ListModels),
        operation_id=operation_id("listModels"),
        operation_class=documented(),
        responses=_errors(*PARAMETERS, ProviderRejected, ProviderTimeout, ProviderUnavailable),
    )
    async def list_models(
        self,
        services: ServicesDep,
        q: Annotated[str | None, QueryParameter(description="Matches id, name or family")] = None,
        limit: Annotated[
            int, int_query(ge=1, le=MAX_MODEL_LIMIT, description=f"Page size, 1 to {MAX_MODEL_LIMIT}")
        ] = 20,
        cursor: Annotated[
            str | None, QueryParameter(description="The nextCursor of the previous page")
        ] = None,
    ) -> ModelsResponse:
        page = await services.list_models(ModelQuery(q=q, limit=limit, cursor=cursor or None))
        return ModelsResponse(data=[model_out(info) for info in page.items], next_cursor=page.next_cursor)
