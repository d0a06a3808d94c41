"""Contract tests of the ``ImageGenerator`` port: the domain tests' fake, the local engine and
the Runware engine (over loopback against the fake Runware server) answer the same scenarios alike."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image

from imagestudio.adapters.images import PillowImageInspector
from imagestudio.adapters.local_engine import LocalImageGenerator
from imagestudio.adapters.runware import RunwareImageGenerator, runware_client
from imagestudio.domain.model import ImageSpec, SourceImage
from imagestudio.testing.fake_runware import FakeRunware
from tests.fakes import FakeImageGenerator, png_size

pytestmark = pytest.mark.anyio
KEY = "contract-key"


@pytest.fixture(scope="module")
def fake_runware() -> Iterator[FakeRunware]:
    with FakeRunware.running(api_key=KEY) as fake:
        yield fake


@pytest.fixture(params=["fake", "local", "runware"])
async def generator(request: pytest.FixtureRequest, fake_runware: FakeRunware) -> AsyncIterator[Any]:
    if request.param == "fake":
        yield FakeImageGenerator()
    elif request.param == "local":
        yield LocalImageGenerator()
    else:
        async with runware_client() as client:
            yield RunwareImageGenerator(
                client, api_key=KEY, api_url=fake_runware.url, timeout=10, inspector=PillowImageInspector()
            )


def size_of(data: bytes) -> tuple[int, int]:
    if data.startswith(b"\x89PNG"):
        return png_size(data)
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def spec(**changes: Any) -> ImageSpec:
    values: dict[str, Any] = {
        "prompt": "a red sunset over mountains",
        "negative_prompt": None,
        "width": 256,
        "height": 128,
        "steps": 4,
        "cfg_scale": 7.5,
        "seed": 1234,
        "model": "runware:100@1",
    }
    values.update(changes)
    return ImageSpec(**values)


async def source_image() -> SourceImage:
    buffer = io.BytesIO()
    Image.new("RGB", (192, 128), (20, 120, 220)).save(buffer, format="PNG")
    return await PillowImageInspector().inspect(buffer.getvalue())


async def test_text_to_image_makes_an_image_of_the_requested_size_with_the_seed(generator: Any) -> None:
    calls: list[tuple[int, int]] = []
    image = await generator.text_to_image(spec(), lambda done, total, _=None: calls.append((done, total)))
    assert size_of(image.data) == (256, 128)
    assert (image.width, image.height) == (256, 128)
    assert image.extension in ("jpg", "png", "webp")
    assert image.seed == 1234
    assert calls
    assert calls[-1][0] == calls[-1][1]
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


async def test_image_to_image_answers_at_the_specs_size(generator: Any) -> None:
    image = await generator.image_to_image(
        spec(width=128, height=256), await source_image(), 0.5, lambda *_: None
    )
    assert size_of(image.data) == (128, 256)


@pytest.mark.parametrize("scale", [2, 3, 4])
async def test_upscale_multiplies_both_sides(generator: Any, scale: int) -> None:
    image = await generator.upscale(await source_image(), scale, lambda *_: None)
    assert size_of(image.data) == (192 * scale, 128 * scale)
    assert (image.width, image.height) == (192 * scale, 128 * scale)


async def test_the_engine_has_a_name(generator: Any) -> None:
    assert generator.name in ("fake", "local", "runware")
