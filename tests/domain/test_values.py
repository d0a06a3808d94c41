"""Properties of the self-validating domain values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagestudio.domain.errors import InvalidParameters, InvalidPrompt
from imagestudio.domain.model import (
    ImageToImage,
    Settings,
    SettingsPatch,
    TextToImage,
    Upscale,
    nearest_valid_side,
)
from tests.strategies import bad_values, field_names, prompt_text, text_to_image_kwargs


@given(text_to_image_kwargs())
def test_every_valid_request_constructs(kwargs: dict[str, Any]) -> None:
    command = TextToImage(**kwargs)
    assert command.prompt == kwargs["prompt"].strip()
    if kwargs.get("negative_prompt") is not None and not kwargs["negative_prompt"].strip():
        assert command.negative_prompt is None


@given(text_to_image_kwargs(), st.data())
def test_every_request_broken_in_one_field_raises_naming_that_field(
    kwargs: dict[str, Any], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(bad_values)))
    kwargs[name] = data.draw(bad_values[name])
    with pytest.raises(InvalidParameters) as caught:
        TextToImage(**kwargs)
    assert caught.value.code == "INVALID_PARAMETERS"
    assert caught.value.details["field"] == field_names[name]


@given(st.one_of(st.just(""), st.text(alphabet=" \t\n\r", max_size=10)))
def test_a_blank_prompt_is_required(prompt: str) -> None:
    with pytest.raises(InvalidPrompt, match="Prompt is required"):
        TextToImage(prompt=prompt)


@given(
    st.one_of(
        st.text(min_size=1, max_size=1).filter(str.strip),
        st.text(min_size=3001, max_size=3100).filter(lambda s: len(s.strip()) > 3000),
    )
)
def test_a_prompt_of_the_wrong_length_is_invalid(prompt: str) -> None:
    with pytest.raises(InvalidPrompt) as caught:
        TextToImage(prompt=prompt)
    assert caught.value.code == "INVALID_PROMPT"


def test_a_missing_prompt_is_required() -> None:
    with pytest.raises(InvalidPrompt, match="Prompt is required"):
        TextToImage(prompt=None)  # type: ignore[arg-type]


@given(prompt_text, st.floats(min_value=0, max_value=1))
def test_image_to_image_strength_in_range_constructs(prompt: str, strength: float) -> None:
    assert ImageToImage(source="a.png", prompt=prompt, strength=strength).strength == strength


@given(st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001), st.just(float("nan"))))
def test_image_to_image_strength_out_of_range_is_invalid(strength: float) -> None:
    with pytest.raises(InvalidParameters) as caught:
        ImageToImage(source="a.png", prompt="a cat", strength=strength)
    assert caught.value.details["field"] == "strength"


@pytest.mark.parametrize("scale", [0, 1, 5, 8, -2, True, 2.0])
def test_upscale_accepts_only_2_3_4(scale: Any) -> None:
    with pytest.raises(InvalidParameters) as caught:
        Upscale(source="a.png", scale=scale)
    assert caught.value.details["field"] == "scale"


@pytest.mark.parametrize("source", ["", "   ", "a\x00b"])
def test_a_blank_or_nul_source_is_invalid(source: str) -> None:
    with pytest.raises(InvalidParameters):
        Upscale(source=source)


@given(st.integers(min_value=1, max_value=100_000))
def test_nearest_valid_side_is_always_a_valid_side(pixels: int) -> None:
    side = nearest_valid_side(pixels)
    assert 128 <= side <= 2048
    assert side % 64 == 0
    if 128 <= pixels <= 2048:
        assert abs(side - pixels) <= 32


def test_settings_defaults_are_the_contracts() -> None:
    assert Settings() == Settings(
        storage_path="./generated",
        default_width=512,
        default_height=512,
        default_steps=25,
        default_cfg_scale=7.5,
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"default_width": 100}, "defaultWidth"),
        ({"default_height": 4096}, "defaultHeight"),
        ({"default_steps": 0}, "defaultSteps"),
        ({"default_cfg_scale": 51}, "defaultCfgScale"),
        ({"storage_path": "  "}, "storagePath"),
    ],
)
def test_a_bad_settings_value_is_invalid(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        SettingsPatch(**changes)
    assert caught.value.details["field"] == field
