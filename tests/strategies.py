"""Hypothesis strategies for domain values: valid ones, and ones broken in exactly one field."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from imagestudio.domain.model import MAX_SEED

sides = st.integers(min_value=2, max_value=32).map(lambda n: n * 64)
steps = st.integers(min_value=1, max_value=100)
cfg = st.floats(min_value=0, max_value=50, allow_nan=False)
seeds = st.integers(min_value=1, max_value=MAX_SEED)
prompt_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=2,
    max_size=300,
).filter(lambda s: len(s.strip()) >= 2)
task_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
models = st.sampled_from(["runware:100@1", "runware:101@1", "civitai:4384@128713"])


@st.composite
def text_to_image_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of a valid ``TextToImage``."""
    kwargs: dict[str, Any] = {"prompt": draw(prompt_text)}
    optional = {
        "negative_prompt": st.one_of(st.none(), prompt_text, st.just("   ")),
        "width": sides,
        "height": sides,
        "steps": steps,
        "cfg_scale": cfg,
        "seed": seeds,
        "model": models,
        "task_id": task_ids,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            kwargs[name] = draw(strategy)
    return kwargs


bad_model_ids: st.SearchStrategy[str] = st.one_of(
    st.just(""), st.just("runware"), st.just("x:y"), st.text(max_size=5).filter(lambda s: "@" not in s)
)
"""Model ids today's engines refuse (the syntax is the engine's rule, checked by the use case)."""

# values a command refuses on construction, by attribute
bad_values: dict[str, st.SearchStrategy[Any]] = {
    "width": st.one_of(
        st.integers(max_value=127),
        st.integers(min_value=2049),
        st.integers(min_value=129, max_value=2047).filter(lambda n: n % 64),
        st.booleans(),
        st.text(max_size=3),
    ),
    "height": st.one_of(st.integers(max_value=127), st.integers(min_value=2049), st.floats(allow_nan=True)),
    "steps": st.one_of(st.integers(max_value=0), st.integers(min_value=101), st.booleans()),
    "cfg_scale": st.one_of(
        st.floats(max_value=-0.0001),
        st.floats(min_value=50.0001),
        st.just(float("nan")),
        st.just(float("inf")),
    ),
    "seed": st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_SEED + 1)),
    "task_id": st.one_of(
        st.just(""), st.text(min_size=65, max_size=80), st.just("has space"), st.just("a/b")
    ),
    "negative_prompt": st.just("x"),
}

# the field name a domain error reports for each attribute
field_names = {
    "width": "width",
    "height": "height",
    "steps": "steps",
    "cfg_scale": "cfgScale",
    "seed": "seed",
    "model": "model",
    "task_id": "taskId",
    "negative_prompt": "negativePrompt",
}
