"""The process's budget of decoded pixel bytes: decodes past it wait, never more than it at once."""

from __future__ import annotations

import io
import threading
import time

import anyio
import pytest
from PIL import Image

from imagestudio.adapters.images import DECODE_BUDGET, DecodeBudget, decoded_bytes, inspect_image_bytes
from imagestudio.adapters.local_engine import LocalImageGenerator
from imagestudio.domain.model import ImageSpec


def wait_until(condition: object, limit: float = 30.0) -> None:
    """Poll ``condition`` (a structural fact, not a duration) until true; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.005)


def test_a_take_that_does_not_fit_waits_until_enough_is_given_back() -> None:
    budget = DecodeBudget(100)
    entered = threading.Event()
    first = budget.take(70)
    first.__enter__()

    def second() -> None:
        with budget.take(50):
            entered.set()

    thread = threading.Thread(target=second)
    thread.start()
    wait_until(lambda: budget.waiting == 1)
    assert not entered.is_set()
    assert budget.in_use == 70
    first.__exit__(None, None, None)
    thread.join(timeout=30)
    assert entered.is_set()
    assert (budget.in_use, budget.waiting) == (0, 0)


def test_a_take_larger_than_the_budget_runs_alone() -> None:
    budget = DecodeBudget(100)
    with budget.take(10_000):
        assert budget.in_use == 100
    assert budget.in_use == 0


def test_the_decoded_size_counts_a_pointer_a_row_and_the_pixels_of_the_mode() -> None:
    assert decoded_bytes(Image.new("L", (10, 1000))) == 1000 * 8 + 10_000
    assert decoded_bytes(Image.new("RGB", (10, 1000)), copy=4) == 1000 * 8 + 10_000 * 8


@pytest.mark.anyio
async def test_the_local_engine_decodes_an_input_only_within_the_budget() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(buffer, format="PNG")
    source = inspect_image_bytes(buffer.getvalue())
    spec = ImageSpec(
        prompt="a red fox", negative_prompt=None, width=256, height=192, steps=2, cfg_scale=7.5, seed=3,
        model="runware:100@1",
    )  # fmt: skip
    engine = LocalImageGenerator(max_workers=2)
    whole = DECODE_BUDGET.take(DECODE_BUDGET.limit)
    whole.__enter__()  # something else holds every byte of the budget
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(engine.image_to_image, spec, source, 0.5, lambda done, total, _=None: None)
            group.start_soon(engine.upscale, source, 2, lambda done, total, _=None: None)
            await anyio.to_thread.run_sync(wait_until, lambda: DECODE_BUDGET.waiting == 2)
            whole.__exit__(None, None, None)
    finally:
        if DECODE_BUDGET.in_use:
            whole.__exit__(None, None, None)
    assert (DECODE_BUDGET.in_use, DECODE_BUDGET.waiting) == (0, 0)
