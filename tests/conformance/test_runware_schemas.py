"""Every task body the Runware adapter can send passes Runware's own schemas (runware-sdk).

The adapter runs against the fake Runware over loopback for a spread of models: FLUX.1 schnell
and dev, an SDXL community checkpoint, the partner models ``bfl:2@1`` and ``openai:1@1``, and the
upscalers ``runware:500@1`` to ``504@1`` at every scale; the bodies it sent (inference, upscale,
upload, getResponse, modelSearch) are then checked, one by one, against the SDK's ``TypedDict``
of their model or operation: no unknown key, every required key, enumerated values inside their
``Literal``. The table of models the adapter knows is held to the same schemas.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from PIL import Image

from imagestudio.adapters.images import PillowImageInspector
from imagestudio.adapters.runware import (
    KNOWN_MODELS,
    RunwareImageGenerator,
    RunwareModelCatalogue,
    runware_client,
)
from imagestudio.adapters.runware.models import upscaler_for
from imagestudio.domain.model import ImageSpec, SourceImage
from imagestudio.domain.models import INPUT_IMAGE, ModelQuery, resolve_guidance
from imagestudio.testing.fake_runware import FakeRunware, oracle

pytestmark = pytest.mark.anyio

KEY = "rw-conformance-key-5e1f"
SDXL = "civitai:133005@357609"
IMAGE_MODELS = ["runware:100@1", "runware:101@1", SDXL, "bfl:2@1", "openai:1@1"]
UPSCALERS = ["runware:500@1", "runware:501@1", "runware:502@1", "runware:503@1", "runware:504@1"]
SIZES = {"openai:1@1": (1024, 1024), "bfl:2@1": (512, 512)}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRunware]:
    with FakeRunware.running(api_key=KEY) as running:
        yield running


@asynccontextmanager
async def engine(fake: FakeRunware, **options: Any) -> AsyncIterator[RunwareImageGenerator]:
    async with runware_client() as client:
        yield RunwareImageGenerator(
            client, api_key=KEY, api_url=fake.url, timeout=20, inspector=PillowImageInspector(),
            poll_first=0.01, **options,
        )  # fmt: skip


async def source(width: int = 96, height: int = 64, fmt: str = "PNG") -> SourceImage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format=fmt)
    return await PillowImageInspector().inspect(buffer.getvalue())


def nothing(done: int, total: int, preview: object = None) -> None:
    pass


async def all_bodies(fake: FakeRunware) -> list[dict[str, Any]]:
    """Drive every kind of task the adapter sends; return the tasks the fake received."""
    sent: list[dict[str, Any]] = []
    async with engine(fake) as runware:
        catalogue = RunwareModelCatalogue(runware.transport)
        await catalogue.search(ModelQuery(q="flux", limit=5))
        for model in IMAGE_MODELS:
            fake.reset()
            info = await catalogue.get(model)
            assert info is not None, model
            steps, cfg = resolve_guidance(
                info, steps=None, cfg_scale=None, default_steps=25, default_cfg_scale=7.5
            )
            width, height = SIZES.get(model, (512, 512))
            negative = "blurry" if "negativePrompt" in info.parameters else None
            spec = ImageSpec(
                prompt="a lighthouse at dusk", negative_prompt=negative, width=width, height=height,
                steps=steps, cfg_scale=cfg, seed=7, model=model, accepts=info.parameters,
            )  # fmt: skip
            await runware.text_to_image(spec, nothing)
            if info.accepts(INPUT_IMAGE):
                await runware.image_to_image(spec, await source(), 0.5, nothing)
            sent += fake.tasks
    for upscaler in UPSCALERS:
        async with engine(fake, upscale_model=upscaler) as runware:
            for scale in (2, 3, 4):
                fake.reset()
                await runware.upscale(await source(fmt="GIF"), scale, nothing)
                sent += fake.tasks
    return sent


async def test_every_task_body_the_adapter_sends_passes_runwares_schemas(fake: FakeRunware) -> None:
    bodies = await all_bodies(fake)

    kinds = {(task["taskType"], task.get("model")) for task in bodies}
    for model in IMAGE_MODELS:
        assert ("imageInference", model) in kinds
    for upscaler in UPSCALERS:
        assert ("upscale", upscaler) in kinds or upscaler_for(KNOWN_MODELS[upscaler], 4) is None
    assert {"imageUpload", "getResponse", "modelSearch"} <= {task["taskType"] for task in bodies}
    for task in bodies:
        assert oracle.violations(task) == [], task
        assert oracle.schema_for(task), task


async def test_the_upscale_factor_sent_is_always_one_the_models_schema_lists(fake: FakeRunware) -> None:
    bodies = [task for task in await all_bodies(fake) if task["taskType"] == "upscale"]

    assert bodies
    for task in bodies:
        choices = oracle.schema_for(task)[0].choices("upscaleFactor")
        allowed = choices if choices is not None else KNOWN_MODELS[task["model"]].upscale_factors
        assert task["upscaleFactor"] in allowed
        assert set(task["inputs"]) == {"image"}
        assert "inputImage" not in task


@pytest.mark.parametrize("model", sorted(KNOWN_MODELS))
def test_the_known_models_table_agrees_with_the_models_schema(model: str) -> None:
    info = KNOWN_MODELS[model]
    [schema] = oracle.schema_for(
        {"taskType": "upscale" if info.kind == "upscale" else "imageInference", "model": model}
    )
    keys = set(schema.fields)
    if info.kind == "upscale":
        choices = schema.choices("upscaleFactor")
        if choices is not None:
            assert tuple(sorted(choices)) == info.upscale_factors
        else:  # Clarity types its factor as a bare float; RUNWARE.md point 1 says it takes 2
            assert schema.fields["upscaleFactor"].kinds == (float,)
            assert info.upscale_factors == (2,)
        assert {"model", "inputs"} <= schema.required
        return
    schema_names = {
        "negativePrompt": "negativePrompt", "steps": "steps", "cfgScale": "CFGScale", "seed": "seed",
        "strength": "strength", "seedImage": "inputs",
    }  # fmt: skip
    assert {ours for ours, theirs in schema_names.items() if theirs in keys} == set(info.parameters)
    assert {"positivePrompt", "width", "height", "model"} <= schema.required


def test_the_oracle_refuses_what_the_2024_adapter_sent() -> None:
    legacy_upscale = {"taskType": "upscale", "taskUUID": "u", "inputImage": "x", "upscaleFactor": 3}
    flux_with_seed_image = {
        "taskType": "imageInference", "taskUUID": "u", "model": "runware:100@1", "positivePrompt": "a cat",
        "width": 512, "height": 512, "seedImage": "x",
    }  # fmt: skip
    partner_with_steps = {
        "taskType": "imageInference", "taskUUID": "u", "model": "bfl:2@1", "positivePrompt": "a cat",
        "width": 512, "height": 512, "steps": 25, "CFGScale": 7.5, "negativePrompt": "blurry",
    }  # fmt: skip

    assert {v.parameter for v in oracle.violations(legacy_upscale)} >= {"inputImage", "model"}
    assert [v.parameter for v in oracle.violations(flux_with_seed_image)] == ["seedImage"]
    assert {v.parameter for v in oracle.violations(partner_with_steps)} == {
        "steps",
        "CFGScale",
        "negativePrompt",
    }
    real_esrgan_at_3 = {
        "taskType": "upscale",
        "taskUUID": "u",
        "model": "runware:504@1",
        "inputs": {},
        "upscaleFactor": 3,
    }
    assert [v.code for v in oracle.violations(real_esrgan_at_3)] == ["invalidUpscaleFactor"]
