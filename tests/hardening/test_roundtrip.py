"""Domain values and the HTTP schema agree, and settings change all at once or not at all.

Every valid command, settings patch and generation survives the trip through the msgspec
Structs of the HTTP edge unchanged; a body with exactly one bad value is refused naming that
field; and through the real app (SQLite, folders), a settings update with one bad value changes
nothing while a good one changes exactly what it names.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from imagestudio.config import Config
from imagestudio.domain.errors import InvalidParameters, InvalidPrompt, StudioError
from imagestudio.domain.model import (
    Generation,
    ImageToImage,
    Operation,
    Parameters,
    Settings,
    SettingsPatch,
    StoredImage,
    TextToImage,
    Upscale,
)
from imagestudio.http.app import create_app
from imagestudio.http.schemas import (
    GenerationOut,
    ImageToImageBody,
    SettingsBody,
    SettingsOut,
    TextToImageBody,
    UpscaleBody,
    decode_body,
    generation_out,
    settings_out,
)
from tests.assertions import assert_error
from tests.hardening.conftest import BASE_URL
from tests.strategies import (
    bad_values,
    cfg,
    field_names,
    models,
    prompt_text,
    seeds,
    sides,
    steps,
    task_ids,
    text_to_image_kwargs,
)

CAMEL = {
    "negative_prompt": "negativePrompt",
    "cfg_scale": "cfgScale",
    "task_id": "taskId",
    "storage_path": "storagePath",
    "default_width": "defaultWidth",
    "default_height": "defaultHeight",
    "default_steps": "defaultSteps",
    "default_cfg_scale": "defaultCfgScale",
    "embed_metadata": "embedMetadata",
}
references = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=80
).filter(str.strip)
strengths = st.floats(min_value=0, max_value=1)
FAST = settings(max_examples=100, deadline=None, database=None)


def _body(kwargs: dict[str, Any], **renames: str) -> bytes:
    names = CAMEL | renames
    return msgspec.json.encode({names.get(key, key): value for key, value in kwargs.items()})


def _as_floats(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The same values with every integer written as a JSON number with a fraction (``512.0``)."""
    return {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53 else v
        for k, v in kwargs.items()
    }


@FAST
@given(kwargs=text_to_image_kwargs())
def test_every_valid_text_to_image_command_survives_the_http_body(kwargs: dict[str, Any]) -> None:
    expected = TextToImage(**kwargs)
    assert decode_body(_body(kwargs), TextToImageBody).to_command() == expected
    assert decode_body(_body(_as_floats(kwargs)), TextToImageBody).to_command() == expected


@FAST
@given(kwargs=text_to_image_kwargs(), source=references, strength=st.none() | strengths)
def test_every_valid_image_to_image_command_survives_the_http_body(
    kwargs: dict[str, Any], source: str, strength: float | None
) -> None:
    kwargs = {**kwargs, "source": source} | ({} if strength is None else {"strength": strength})
    assert decode_body(_body(kwargs, source="seedImage"), ImageToImageBody).to_command() == ImageToImage(
        **kwargs
    )


@FAST
@given(source=references, scale=st.sampled_from([2, 3, 4]), task_id=st.none() | task_ids)
def test_every_valid_upscale_command_survives_the_http_body(
    source: str, scale: int, task_id: str | None
) -> None:
    kwargs: dict[str, Any] = {"source": source, "scale": scale} | (
        {} if task_id is None else {"task_id": task_id}
    )
    assert decode_body(_body(kwargs, source="imagePath"), UpscaleBody).to_command() == Upscale(**kwargs)


storage_paths = st.from_regex(r"\A\./[a-z0-9_-]{1,20}(/[a-z0-9_-]{1,20}){0,2}\Z")
settings_values: dict[str, st.SearchStrategy[Any]] = {
    "storage_path": storage_paths,
    "default_width": sides,
    "default_height": sides,
    "default_steps": steps,
    "default_cfg_scale": cfg,
    "embed_metadata": st.booleans(),
}


@st.composite
def patches(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(sorted(settings_values))))
    return {name: draw(settings_values[name]) for name in sorted(names)}


@FAST
@given(patch=patches())
def test_every_settings_patch_survives_the_http_body(patch: dict[str, Any]) -> None:
    assert decode_body(_body(patch), SettingsBody).to_patch() == SettingsPatch(**patch)


@FAST
@given(values=patches())
def test_what_get_settings_returns_put_settings_accepts_unchanged(values: dict[str, Any]) -> None:
    current = Settings(**values)
    shown = msgspec.json.encode(settings_out(current))
    assert msgspec.json.decode(shown, type=SettingsOut) == settings_out(current)
    assert decode_body(shown, SettingsBody).to_patch().apply(Settings()) == current


@st.composite
def generations(draw: st.DrawFn) -> Generation:
    operation = draw(st.sampled_from(list(Operation)))
    diffusion = operation is not Operation.UPSCALE
    width, height = draw(sides), draw(sides)
    seed = draw(st.none() | seeds)
    return Generation(
        id=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        operation=operation,
        prompt=draw(prompt_text) if diffusion else draw(st.just("") | prompt_text),
        negative_prompt=draw(st.none() | prompt_text),
        parameters=Parameters(
            width=width,
            height=height,
            steps=draw(steps) if diffusion else None,
            cfg_scale=draw(cfg) if diffusion else None,
            seed=seed,
            model=draw(st.none() | models),
            engine=draw(st.sampled_from(["local", "runware", "fake"])),
            strength=draw(strengths) if operation is Operation.IMAGE_TO_IMAGE else None,
            scale=draw(st.sampled_from([2, 3, 4])) if operation is Operation.UPSCALE else None,
            source_id=draw(st.none() | st.integers(min_value=1, max_value=2**53)),
        ),
        seed=seed,
        width=width,
        height=height,
        image=StoredImage(
            key=draw(st.from_regex(r"\A[0-9a-f]{32}\.(jpg|png|webp)\Z")), root="/data/generated"
        ),
        remote_url=draw(st.none() | st.just("https://im.runware.ai/image/x.jpg")),
        task_id=draw(task_ids),
        created_at=draw(
            st.datetimes(
                min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
            )
        ),
        cost=draw(st.none() | st.floats(min_value=0, max_value=100)),
        rerun_of=draw(st.none() | st.integers(min_value=1, max_value=2**63 - 1)),
    )


@FAST
@given(generation=generations())
def test_every_generation_reads_back_from_its_json_with_the_same_values(generation: Generation) -> None:
    shown = msgspec.json.decode(msgspec.json.encode(generation_out(generation, BASE_URL)), type=GenerationOut)
    p = generation.parameters
    assert (shown.id, shown.operation, shown.prompt, shown.negative_prompt) == (
        generation.id,
        generation.operation.value,
        generation.prompt,
        generation.negative_prompt,
    )
    assert (shown.width, shown.height, shown.seed, shown.task_id, shown.cost) == (
        generation.width,
        generation.height,
        generation.seed,
        generation.task_id,
        generation.cost,
    )
    assert shown.file_path == generation.file_path
    assert shown.url == (generation.remote_url or BASE_URL + generation.file_path)
    assert (shown.parameters.width, shown.parameters.steps, shown.parameters.cfg_scale) == (
        p.width,
        p.steps,
        p.cfg_scale,
    )
    assert (shown.parameters.seed, shown.parameters.model, shown.parameters.engine) == (
        p.seed,
        p.model,
        p.engine,
    )
    for name in ("strength", "scale", "source_id"):
        value = getattr(shown.parameters, name)
        assert (None if value is msgspec.UNSET else value) == getattr(p, name)
    parsed = datetime.fromisoformat(shown.created_at.replace("Z", "+00:00"))
    assert abs((parsed - generation.created_at).total_seconds()) < 0.001
    assert shown.created_at == shown.created_at_snake
    assert shown.rerun_of == generation.rerun_of


@FAST
@given(kwargs=text_to_image_kwargs(), data=st.data())
def test_a_body_with_one_bad_value_is_refused_naming_that_field(
    kwargs: dict[str, Any], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(bad_values)))
    value = data.draw(bad_values[name])
    assume(not (isinstance(value, float) and (value.is_integer() or not math.isfinite(value))))
    with pytest.raises((InvalidParameters, InvalidPrompt)) as refused:
        decode_body(_body({**kwargs, name: value}), TextToImageBody).to_command()
    assert refused.value.details.get("field") == field_names[name]


@FAST
@given(kwargs=text_to_image_kwargs(), data=st.data())
def test_the_image_to_image_body_checks_the_fields_it_inherits_as_text_to_image_does(
    kwargs: dict[str, Any], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(bad_values)))
    value = data.draw(bad_values[name])
    assume(not (isinstance(value, float) and (value.is_integer() or not math.isfinite(value))))
    kwargs = {**kwargs, "source": "/generated/a.png"}
    with pytest.raises((InvalidParameters, InvalidPrompt)) as refused:
        decode_body(_body({**kwargs, name: value}, source="seedImage"), ImageToImageBody).to_command()
    assert refused.value.details.get("field") == field_names[name]
    with pytest.raises(InvalidParameters, match="bogus"):
        decode_body(_body({**kwargs, "bogus": 1}, source="seedImage"), ImageToImageBody)


@pytest.mark.parametrize(
    ("raw", "width"),
    [(b'{"prompt": "a cat", "width": 512.0}', 512), (b'{"prompt": "a cat", "width": 5.12e2}', 512)],
)
def test_a_whole_number_written_with_a_fraction_is_that_integer(raw: bytes, width: int) -> None:
    assert decode_body(raw, TextToImageBody).to_command().width == width


@pytest.mark.parametrize("width", [b'"512"', b"512.5", b"true", b"1e400", b"null,"])
def test_a_string_a_fraction_a_boolean_or_an_overflow_is_not_an_integer(width: bytes) -> None:
    with pytest.raises(InvalidParameters):
        decode_body(b'{"prompt": "a cat", "width": ' + width + b"}", TextToImageBody).to_command()


# --- all-or-nothing settings through the real app ----------------------------------------------

_BAD_SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "storagePath": st.sampled_from(
        ["", "   ", "a\x00b", "x" * 1025, "./blocker/sub", "~no-such-user-7c1e/p", 5]
    ),
    "defaultWidth": st.one_of(
        st.integers(max_value=127), st.integers(min_value=2049), st.just(500), st.just("512")
    ),
    "defaultHeight": st.one_of(st.just(96), st.just(4096), st.just(512.5), st.booleans()),
    "defaultSteps": st.one_of(st.integers(max_value=0), st.integers(min_value=101), st.just("25")),
    "defaultCfgScale": st.one_of(st.floats(max_value=-0.001), st.floats(min_value=50.001), st.just("7.5")),
    "embedMetadata": st.sampled_from([0, 1, "true", "false", None, 1.0]),
    "theme": st.just("dark"),
    "default_width": st.just(512),
}


def test_a_settings_update_with_one_bad_value_changes_nothing_and_a_good_one_changes_what_it_names(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "blocker").write_bytes(b"a file where a folder would go")
    with TestClient(create_app(Config(data_dir=data_dir)), base_url=BASE_URL) as client:

        @given(good=patches(), bad=st.sampled_from(sorted(_BAD_SETTINGS)), data=st.data())
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(good: dict[str, Any], bad: str, data: st.DataObject) -> None:
            value = data.draw(_BAD_SETTINGS[bad])
            assume(not (isinstance(value, float) and not math.isfinite(value)))
            before = client.get("/api/settings").json()["data"]
            body = {CAMEL[k]: v for k, v in good.items()} | {bad: value}
            response = client.put("/api/settings", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["details"]["field"] == bad
            assert client.get("/api/settings").json()["data"] == before

            changed = client.put("/api/settings", json={CAMEL[k]: v for k, v in good.items()})
            assert changed.status_code == 200, changed.text
            expected = before | {CAMEL[k]: v for k, v in good.items()}
            assert changed.json()["data"] == expected
            assert client.get("/api/settings").json()["data"] == expected

        check()


def test_an_unwritable_storage_path_among_good_values_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "blocker").write_bytes(b"x")
    with TestClient(create_app(Config(data_dir=data_dir)), base_url=BASE_URL) as client:
        before = client.get("/api/settings").json()
        body = {"defaultWidth": 768, "defaultSteps": 40, "storagePath": "./blocker/images"}
        assert_error(client.put("/api/settings", json=body), 400, "STORAGE_ERROR", "storagePath")
        assert client.get("/api/settings").json() == before


def test_domain_errors_carry_the_field_names_the_http_schema_uses() -> None:
    wire_names = set(TextToImageBody.__struct_encode_fields__) | set(SettingsBody.__struct_encode_fields__)
    for attribute, value in (
        ("width", 100),
        ("cfg_scale", 99.0),
        ("negative_prompt", "x"),
        ("task_id", "a b"),
    ):
        with pytest.raises(StudioError) as refused:
            TextToImage(prompt="a cat", **{attribute: value})
        assert refused.value.details["field"] in wire_names
