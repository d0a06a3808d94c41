"""What the engine decides, not the domain: the syntax of its model ids and how many generations
it runs at once (``ImageGenerator.accepts_model_id`` / ``default_concurrency``)."""

from __future__ import annotations

import base64

import anyio
import pytest
from hypothesis import given, settings

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import ImageToImage, TextToImage
from tests.domain.world import World
from tests.fakes import FakeImageGenerator, fake_services, tiny_png
from tests.strategies import bad_model_ids

MESSAGE = "model must be a model id such as 'runware:100@1'"
SOURCE = "data:image/png;base64," + base64.b64encode(tiny_png(128, 128)).decode()


async def _refusal(world: World, model: str, *, source: str | None = None) -> InvalidParameters:
    """The error of a request naming ``model`` (an empty one is refused by the command itself)."""
    try:
        if source is None:
            await world.text_to_image().submit(TextToImage(prompt="a cat", model=model))
        else:
            await world.image_to_image().submit(ImageToImage(prompt="a cat", source=source, model=model))
    except InvalidParameters as error:
        return error
    raise AssertionError(f"{model!r} was accepted")


@settings(max_examples=30, deadline=None)
@given(model=bad_model_ids)
def test_a_model_id_the_engine_refuses_is_invalid_parameters_naming_model_before_any_task(model: str) -> None:
    async def check() -> None:
        for source in (None, SOURCE):
            world = World()
            error = await _refusal(world, model, source=source)
            assert (error.code, error.message, error.details) == (
                "INVALID_PARAMETERS",
                MESSAGE,
                {"field": "model"},
            )
            assert world.generator.calls == []
            assert await world.task_repository.recent(10) == []

    anyio.run(check)


@pytest.mark.anyio
async def test_the_syntax_is_the_engines_rule_not_the_domains() -> None:
    generator = FakeImageGenerator(model_ids=lambda model: model.startswith("sd/"))
    generation = await World(generator=generator).text_to_image()(TextToImage(prompt="a cat", model="sd/xl"))
    assert generation.parameters.model == "sd/xl"

    error = await _refusal(World(generator=generator), "runware:100@1")
    assert (error.message, error.details) == (MESSAGE, {"field": "model"})


def test_a_command_still_refuses_what_is_no_model_id_of_any_engine() -> None:
    for model in ("", "x" * 201, 5):
        with pytest.raises(InvalidParameters, match="model must be a model id") as refused:
            TextToImage(prompt="a cat", model=model)  # type: ignore[arg-type]
        assert refused.value.details == {"field": "model"}


def test_max_running_defaults_to_the_engines_concurrency_and_the_setting_wins() -> None:
    generator = FakeImageGenerator()
    generator.default_concurrency = 7
    assert fake_services(generator=generator).tasks.max_running == 7
    assert fake_services(generator=generator, max_running=2).tasks.max_running == 2
