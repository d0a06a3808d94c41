"""Favourites, tags and notes in the domain: the tag and note rules (and the patterns that tell
clients the same), ``GenerationPatch``, the ``favorite`` and ``tag`` filters, ``UpdateGeneration``
and ``ListTags`` against fakes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagestudio.domain.errors import InvalidParameters, NotFound
from imagestudio.domain.model import GenerationPatch, HistoryQuery, TagCount, TagQuery, TextToImage
from imagestudio.domain.rules import (
    MAX_NOTES_LENGTH,
    MAX_STORED_TAG_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    NOTES_PATTERN,
    TAG_FILTER_PATTERN,
    TAG_PATTERN,
    check_notes,
    normalize_tag,
)
from imagestudio.domain.values import UNCHANGED
from tests.domain.world import World

pytestmark = pytest.mark.anyio

# Text with what makes a tag or a note valid or not: spaces of every kind, control characters,
# line and paragraph separators, letters that case-fold to more than one (ß, ΐ), any length.
_EDGES = " \t\n\r\x0b\x0c\x1c\x1f\x7f\x85\xa0\u1680\u2000\u200b\u2028\u2029\u3000\ufeffaZß\u0390é"
texts = st.text(alphabet=st.sampled_from(_EDGES) | st.characters(), max_size=3 * MAX_TAG_LENGTH)


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except InvalidParameters:
        return False
    return True


@given(texts)
def test_the_tag_pattern_clients_read_accepts_exactly_the_tags_the_domain_accepts(value: str) -> None:
    assert (re.fullmatch(TAG_PATTERN, value) is not None) == _accepts(normalize_tag, value)
    assert (re.fullmatch(TAG_FILTER_PATTERN, value) is not None) == _accepts(
        lambda v: normalize_tag(v, "tag", longest=MAX_STORED_TAG_LENGTH), value
    )


@given(st.text(alphabet=st.sampled_from(_EDGES) | st.characters(), max_size=40))
def test_the_notes_pattern_accepts_exactly_the_characters_the_domain_accepts(value: str) -> None:
    assert (re.fullmatch(NOTES_PATTERN, value) is not None) == _accepts(check_notes, value)


@given(texts)
def test_a_tag_is_stored_trimmed_and_case_folded_and_its_stored_form_finds_it(value: str) -> None:
    if not _accepts(normalize_tag, value):
        return
    stored = normalize_tag(value)
    assert stored == value.strip().casefold()
    assert len(stored) <= MAX_STORED_TAG_LENGTH
    assert normalize_tag(stored, "tag", longest=MAX_STORED_TAG_LENGTH) == stored  # as the tag list shows it
    assert HistoryQuery(tags=(value,)).tags == (stored,)


def test_tags_are_trimmed_case_folded_and_deduplicated_keeping_the_first_in_order() -> None:
    patch = GenerationPatch(tags=[" Sunset", "BEACH ", "sunset", "Straße", "STRASSE", "日本"])
    assert patch.tags == ("sunset", "beach", "strasse", "日本")
    assert GenerationPatch(tags=["a" * MAX_TAG_LENGTH]).tags == ("a" * MAX_TAG_LENGTH,)
    assert GenerationPatch(tags=[f" {'ß' * MAX_TAG_LENGTH} "]).tags == ("ss" * MAX_TAG_LENGTH,)
    assert GenerationPatch(tags=[f"t{i}" for i in range(MAX_TAGS)]).tags == tuple(
        f"t{i}" for i in range(MAX_TAGS)
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({}, "body"),
        ({"favorite": 1}, "favorite"),
        ({"favorite": None}, "favorite"),
        ({"tags": "sunset"}, "tags"),
        ({"tags": None}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["  "]}, "tags"),
        ({"tags": ["a" * (MAX_TAG_LENGTH + 1)]}, "tags"),
        ({"tags": ["new\nline"]}, "tags"),
        ({"tags": ["\x00"]}, "tags"),
        ({"tags": ["\ud800"]}, "tags"),
        ({"tags": ["a\u2029"]}, "tags"),
        ({"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tags"),
        ({"notes": 3}, "notes"),
        ({"notes": "x" * (MAX_NOTES_LENGTH + 1)}, "notes"),
        ({"notes": " " * (MAX_NOTES_LENGTH + 1)}, "notes"),
        ({"notes": "a\x00b"}, "notes"),
        ({"notes": "\x1c"}, "notes"),
    ],
)
def test_a_bad_patch_cannot_exist_and_names_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        GenerationPatch(**changes)
    assert caught.value.details["field"] == field


def test_a_patch_sets_only_what_it_names_and_blank_notes_are_none() -> None:
    assert GenerationPatch(favorite=True).changes() == {"favorite": True}
    assert GenerationPatch(notes=None).changes() == {"notes": None}
    assert GenerationPatch(notes=" \n ").changes() == {"notes": None}
    assert GenerationPatch(notes="tab\tand\nlines\u2028ok").notes == "tab\tand\nlines\u2028ok"
    assert GenerationPatch(tags=[]).changes() == {"tags": ()}
    assert GenerationPatch(favorite=False).tags is UNCHANGED


def test_the_favorite_and_tag_filters_parse_from_request_text_and_match() -> None:
    query = HistoryQuery.parse(favorite="true", tag=["Sunset ", "BEACH", "sunset"])
    assert (query.favorite, query.tags) == (True, ("sunset", "beach"))
    assert query.active == {"favorite": True, "tag": ("sunset", "beach")}
    assert HistoryQuery.parse(tag="Night").tags == ("night",)
    assert HistoryQuery.parse(favorite="false").active == {"favorite": False}
    assert HistoryQuery.parse(tag=[]).active == {}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"favorite": "yes"}, "favorite"),
        ({"favorite": ""}, "favorite"),
        ({"tag": ""}, "tag"),
        ({"tag": ["ok", "bad\x00"]}, "tag"),
        ({"tag": "x" * (MAX_STORED_TAG_LENGTH + 1)}, "tag"),
        ({"tag": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tag"),
        ({"type": ["image", "video"]}, "type"),
    ],
)
def test_bad_favorite_and_tag_filters_name_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        HistoryQuery.parse(**params)
    assert caught.value.field == field


def test_a_prefix_no_tag_could_start_with_is_hopeless_never_an_error() -> None:
    assert TagQuery(prefix=" SUN ").prefix == "sun"
    assert TagQuery(prefix="   ").prefix is None
    assert not TagQuery(prefix="sun").hopeless
    assert TagQuery(prefix="a\x00").hopeless
    assert TagQuery(prefix="two\nlines").hopeless
    assert TagQuery(prefix="x" * (MAX_STORED_TAG_LENGTH + 1)).hopeless
    with pytest.raises(InvalidParameters):
        TagQuery(limit=0)


async def _made(world: World, count: int) -> list[int]:
    made = []
    for index in range(count):
        generation = await world.text_to_image()(TextToImage(prompt=f"picture {index}"))
        assert generation.id is not None
        made.append(generation.id)
    return made


async def test_update_generation_changes_the_stored_generation_and_answers_it() -> None:
    world = World()
    [generation_id] = await _made(world, 1)
    before = world.repository.rows[generation_id]
    after = await world.services.update_generation(
        generation_id, GenerationPatch(favorite=True, tags=["Sunset"], notes="mine")
    )
    assert after == replace(before, favorite=True, tags=("sunset",), notes="mine")
    assert world.repository.rows[generation_id] == after
    assert await world.get_generation()(generation_id) == after


@pytest.mark.parametrize("generation_id", [0, -1, 2**63, 12345])
async def test_updating_a_generation_that_is_not_there_is_not_found(generation_id: int) -> None:
    world = World()
    await _made(world, 1)
    with pytest.raises(NotFound, match="Generation not found"):
        await world.services.update_generation(generation_id, GenerationPatch(favorite=True))


async def test_list_tags_counts_what_the_history_carries_and_a_hopeless_prefix_asks_nothing() -> None:
    world = World()
    ids = await _made(world, 3)
    for generation_id, tags in zip(ids, (["sunset", "beach"], ["sunset"], ["city"]), strict=True):
        await world.services.update_generation(generation_id, GenerationPatch(tags=tags))
    assert await world.services.list_tags(TagQuery()) == [
        TagCount(tag="sunset", count=2),
        TagCount(tag="beach", count=1),
        TagCount(tag="city", count=1),
    ]
    assert await world.services.list_tags(TagQuery(prefix="S")) == [TagCount(tag="sunset", count=2)]

    class Refusing:
        async def count_tags(self, query: TagQuery) -> list[TagCount]:
            raise AssertionError("a hopeless prefix reached the repository")

    listing = replace(world.services.list_tags, repository=Refusing())  # type: ignore[arg-type]
    assert await listing(TagQuery(prefix="sun\x00")) == []
    await world.services.delete_generation(ids[0])
    assert await world.services.list_tags(TagQuery()) == [
        TagCount(tag="city", count=1),
        TagCount(tag="sunset", count=1),
    ]
