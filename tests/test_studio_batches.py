"""``Studio`` makes batches: ``text_to_image_batch`` and ``image_to_image_batch`` answer every
generation in seed order (a real data folder and SQLite file)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from imagestudio import InvalidParameters, Studio


def data_uri(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 120, 200)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.anyio
async def test_a_studio_makes_batches_in_seed_order_and_stores_them_all(tmp_path: Path) -> None:
    async with Studio.open(tmp_path / "data", engine="local") as studio:
        made = await studio.text_to_image_batch(
            "a fox", 3, seed=20, width=128, height=128, steps=1, task_id="s-b"
        )
        assert [g.seed for g in made] == [20, 21, 22]
        assert {g.task_id for g in made} == {"s-b"}
        assert len({g.file_path for g in made}) == 3
        assert (await studio.history()).total == 3

        moved = await studio.image_to_image_batch(
            data_uri((128, 128)), "a fox at night", 2, strength=0.5, seed=7
        )
        assert [g.seed for g in moved] == [7, 8]
        assert {g.parameters.strength for g in moved} == {0.5}
        assert (await studio.history()).total == 5

        with pytest.raises(InvalidParameters) as refused:
            await studio.text_to_image_batch("a fox", 9)
        assert refused.value.details == {"field": "count"}
        with pytest.raises(TypeError, match="image_to_image_batch"):
            await studio.image_to_image(data_uri((128, 128)), "a fox", count=2)
        assert (await studio.history()).total == 5
