"""HistoryQuery validates every filter, names the field it refuses, and its cursors round-trip."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import (
    HistoryCursor,
    HistoryQuery,
    HistorySort,
    Operation,
    parse_timestamp,
    search_terms,
)
from tests.adapters.test_repository_contract import make_generation

instants = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)


@given(sort=st.sampled_from(HistorySort), when=instants, ident=st.integers(0, 2**63 - 1))
def test_a_cursor_survives_its_text_form(sort: HistorySort, when: dt.datetime, ident: int) -> None:
    cursor = HistoryCursor(sort=sort, created_at=when, id=ident)
    token = cursor.encode()
    assert token.replace("-", "").replace("_", "").isalnum()
    assert HistoryCursor.decode(token) == cursor


@given(st.text(max_size=40))
def test_any_text_is_a_cursor_that_round_trips_or_invalid_parameters_on_cursor(token: str) -> None:
    try:
        cursor = HistoryCursor.decode(token)
    except InvalidParameters as error:
        refused_field = error.field
    else:
        refused_field = "cursor"
        assert HistoryCursor.decode(cursor.encode()) == cursor
    assert refused_field == "cursor"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-02", dt.datetime(2026, 1, 2, tzinfo=dt.UTC)),
        ("2026-01-02T10:00:00Z", dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)),
        ("2026-01-02T11:00:00+01:00", dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)),
        ("2026-01-02T11:00:00 01:00", dt.datetime(2026, 1, 2, 10, tzinfo=dt.UTC)),
        ("2026-01-02T10:00:00.250", dt.datetime(2026, 1, 2, 10, 0, 0, 250000, tzinfo=dt.UTC)),
    ],
)
def test_timestamps_are_iso_8601_and_utc_without_an_offset(raw: str, expected: dt.datetime) -> None:
    assert parse_timestamp("from", raw) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"operation": "paint"}, "operation"),
        ({"sort": "random"}, "sort"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"from": "2026-02-02", "to": "2026-02-01"}, "to"),
        ({"engine": "bad engine"}, "engine"),
        ({"engine": "x" * 33}, "engine"),
        ({"model": "runware"}, "model"),
        ({"q": "..."}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": " ".join(f"w{i}" for i in range(17))}, "q"),
        ({"cursor": "@@@"}, "cursor"),
        (
            {
                "cursor": HistoryCursor(
                    sort=HistorySort.OLDEST, created_at=dt.datetime.now(dt.UTC), id=1
                ).encode()
            },
            "cursor",
        ),
        (
            {
                "cursor": HistoryCursor(
                    sort=HistorySort.NEWEST, created_at=dt.datetime.now(dt.UTC), id=1
                ).encode(),
                "offset": 1,
            },
            "offset",
        ),
        ({"limit": 0}, "limit"),
        ({"sourceId": "0"}, "sourceId"),
        ({"sourceId": "-3"}, "sourceId"),
        ({"sourceId": "+3"}, "sourceId"),
        ({"sourceId": "1_0"}, "sourceId"),
        ({"sourceId": "٣"}, "sourceId"),
        ({"sourceId": "3.0"}, "sourceId"),
        ({"sourceId": str(2**63)}, "sourceId"),
        ({"sourceId": ["1", "2"]}, "sourceId"),
    ],
)
def test_bad_parameters_name_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameters) as caught:
        HistoryQuery.parse(**params)
    assert caught.value.field == field


def test_an_empty_search_or_cursor_is_no_search_or_cursor() -> None:
    assert HistoryQuery.parse(q="  ", cursor="") == HistoryQuery()


def test_search_terms_are_runs_of_letters_and_digits_lower_cased() -> None:
    assert search_terms("Red-Sunset over the_sea, 4K! Été") == (
        "red",
        "sunset",
        "over",
        "the",
        "sea",
        "4k",
        "été",
    )
    assert HistoryQuery(q="Sun sun SUN red").terms == ("sun", "red")


def test_a_query_matches_whole_words_of_prompt_or_negative_prompt_in_any_order() -> None:
    generation = make_generation(1, prompt="Sunset over mountains", negative="blurry, grey")
    assert HistoryQuery(q="MOUNTAINS sunset").matches(generation)
    assert HistoryQuery(q="grey sunset").matches(generation)
    assert not HistoryQuery(q="sun").matches(generation)
    assert not HistoryQuery(q="sunset ocean").matches(generation)
    assert HistoryQuery(operation=Operation.TEXT_TO_IMAGE, engine="local", model="runware:100@1").matches(
        generation
    )
    assert not HistoryQuery(created_to=generation.created_at).matches(generation)
    assert HistoryQuery(created_from=generation.created_at).matches(generation)


def test_source_id_matches_what_was_made_from_the_generation_or_re_ran_it() -> None:
    assert HistoryQuery.parse(sourceId=" 7 ").source_id == 7
    assert HistoryQuery.parse(sourceId=str(2**63 - 1)).source_id == 2**63 - 1
    made_from = make_generation(1, operation=Operation.UPSCALE, source_id=7)
    rerun = make_generation(2, rerun_of=7)
    both = make_generation(3, operation=Operation.IMAGE_TO_IMAGE, source_id=5, rerun_of=7)
    unrelated = make_generation(4, source_id=8, rerun_of=9)
    query = HistoryQuery(source_id=7)
    assert [query.matches(g) for g in (made_from, rerun, both, unrelated)] == [True, True, True, False]
    assert HistoryQuery(source_id=5).matches(both)
    assert query.active == {"source": 7}
    assert not query.filters_only_kept


def test_a_page_has_a_next_cursor_only_when_an_item_follows() -> None:
    items = [make_generation(i).with_id(i) for i in (3, 2, 1)]
    query = HistoryQuery(limit=2)
    page = query.page(items, total=3)
    assert [g.id for g in page.items] == [3, 2]
    assert page.next_cursor == HistoryCursor.after(items[1], HistorySort.NEWEST).encode()
    assert query.page(items[:2], total=2).next_cursor is None
    assert query.page([], total=0).next_cursor is None


def test_the_word_limit_counts_words_as_written_as_the_documented_pattern_does() -> None:
    # "İ" lower-cases to "i" and a combining dot, which splits the word in two: sixteen words as
    # written are within the limit even though they make more search terms
    text = " ".join(f"İx{index}" for index in range(16))
    query = HistoryQuery(q=text)
    assert len(query.terms) > 16
    with pytest.raises(InvalidParameters):
        HistoryQuery(q=text + " one-more")
