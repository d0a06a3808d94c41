"""``Studio`` keeps favourites, tags and notes, filters by them and lists the tags (a real data
folder and SQLite file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagestudio import InvalidParameters, Studio, TagCount


@pytest.mark.anyio
async def test_a_studio_stars_tags_notes_filters_and_lists_tags(tmp_path: Path) -> None:
    async with Studio.open(tmp_path / "data", engine="local") as studio:
        first = await studio.text_to_image("a fox", width=128, height=128, steps=1)
        second = await studio.text_to_image("a lake", width=128, height=128, steps=1)
        assert first.id is not None
        assert second.id is not None
        kept = await studio.update(first.id, favorite=True, tags=["Fox ", "animal"], notes="mine")
        assert (kept.favorite, kept.tags, kept.notes) == (True, ("fox", "animal"), "mine")
        await studio.update(second.id, tags=["animal"])
        assert [g.id for g in (await studio.history(favorite=True)).items] == [first.id]
        assert [g.id for g in (await studio.history(tags=("animal",))).items] == [second.id, first.id]
        assert await studio.tags() == [TagCount(tag="animal", count=2), TagCount(tag="fox", count=1)]
        assert await studio.tags(prefix="F") == [TagCount(tag="fox", count=1)]
        with pytest.raises(InvalidParameters):
            await studio.update(first.id, tags=[""])
        assert (await studio.get(first.id)).tags == ("fox", "animal")
        cleared = await studio.update(first.id, notes=None, favorite=False)
        assert (cleared.favorite, cleared.notes) == (False, None)


@pytest.mark.anyio
async def test_a_studio_reruns_a_generation_and_lists_what_was_made_from_it(tmp_path: Path) -> None:
    async with Studio.open(tmp_path / "data", engine="local") as studio:
        first = await studio.text_to_image("a fox", width=128, height=128, steps=1, seed=30)
        assert first.id is not None
        [same] = await studio.rerun(first.id, seed="same")
        batch = await studio.rerun(first.id, prompt="a red fox", count=2)
        assert (same.seed, same.rerun_of, same.prompt) == (30, first.id, "a fox")
        assert [g.prompt for g in batch] == ["a red fox", "a red fox"]
        assert batch[1].seed == batch[0].seed + 1 or batch[1].seed == 1
        upscaled = await studio.upscale(first.file_path)
        page = await studio.history(source_id=first.id)
        assert [g.id for g in page.items] == [upscaled.id, batch[1].id, batch[0].id, same.id]
        with pytest.raises(InvalidParameters):
            await studio.rerun(first.id, strength=0.5)
