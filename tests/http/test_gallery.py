"""Favourites, tags and notes through the real app, on a SQLite file and on a PostgreSQL schema:
``PATCH /api/history/{id}``, the ``favorite`` and ``tag`` history filters, ``GET /api/tags``.

PostgreSQL runs skip, saying so in the summary, where no server is reachable (CI=true fails them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config
from imagestudio.domain.history import ListTags, UpdateGeneration
from imagestudio.domain.rules import (
    MAX_NOTES_LENGTH,
    MAX_STORED_TAG_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAG_LIST_LIMIT,
    MAX_TAGS,
    TAG_FILTER_PATTERN,
    TAG_PATTERN,
)
from imagestudio.http.app import create_app
from tests.assertions import assert_error

Client = TestClient  # type: ignore[type-arg]

LOCAL_ORIGIN = "http://localhost:5173"


@pytest.fixture
def client(sql_url: str, data_dir: Path) -> Iterator[Client]:
    app = create_app(Config(data_dir=data_dir, database_url=sql_url))
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def generate(client: Client, prompt: str = "a red sunset over mountains") -> dict[str, Any]:
    body = {"prompt": prompt, "width": 128, "height": 128, "steps": 1}
    response = client.post("/api/generate/text-to-image", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def patch(client: Client, generation_id: int, **body: Any) -> dict[str, Any]:
    response = client.patch(f"/api/history/{generation_id}", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    return answer["data"]  # type: ignore[no-any-return]


def listed(client: Client, **params: Any) -> dict[str, Any]:
    response = client.get("/api/history", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def tags(client: Client, **params: Any) -> list[tuple[str, int]]:
    response = client.get("/api/tags", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return [(item["tag"], item["count"]) for item in body["data"]["tags"]]


def test_every_generation_carries_favorite_tags_and_notes_from_the_start(client: Client) -> None:
    made = generate(client)
    assert (made["favorite"], made["tags"], made["notes"]) == (False, [], None)
    assert client.get(f"/api/history/{made['id']}").json()["data"] == made
    assert listed(client)["data"] == [made]


def test_a_patch_changes_what_it_names_and_answers_the_generation_as_get_then_shows_it(
    client: Client,
) -> None:
    made = generate(client)
    other = generate(client, "a quiet lake")

    starred = patch(client, made["id"], favorite=True)
    assert starred == {**made, "favorite": True}
    tagged = patch(client, made["id"], tags=["  Sunset ", "BEACH", "sunset", "Straße", "日本"])
    assert tagged == {**made, "favorite": True, "tags": ["sunset", "beach", "strasse", "日本"]}
    noted = patch(client, made["id"], notes="For the portfolio.\nPrint at A3.")
    assert noted["notes"] == "For the portfolio.\nPrint at A3."
    assert noted["tags"] == ["sunset", "beach", "strasse", "日本"]
    assert client.get(f"/api/history/{made['id']}").json() == {"success": True, "data": noted}

    cleared = patch(client, made["id"], notes=None, tags=[], favorite=False)
    assert cleared == made
    assert patch(client, made["id"], notes="   ")["notes"] is None  # blank is none
    assert client.get(f"/api/history/{other['id']}").json()["data"] == other


def _bad_bodies() -> list[tuple[Any, str | None]]:
    long_tag = "a" * (MAX_TAG_LENGTH + 1)
    return [
        ({}, "body"),
        ({"favourite": True}, "favourite"),
        ({"favorite": True, "colour": "red"}, "colour"),
        ({"favorite": "yes"}, "favorite"),
        ({"favorite": 1}, "favorite"),
        ({"favorite": None}, "favorite"),
        ({"tags": "sunset"}, "tags"),
        ({"tags": None}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": ["ok", True]}, "tags"),
        ({"tags": [["nested"]]}, "tags"),
        ({"tags": [{"a": 1}]}, "tags"),
        ({"tags": {"a": 1}}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["   "]}, "tags"),
        ({"tags": [long_tag]}, "tags"),
        ({"tags": ["two\nlines"]}, "tags"),
        ({"tags": ["tab\there"]}, "tags"),
        ({"tags": ["nul\u0000"]}, "tags"),
        ({"tags": ["line\u2028separator"]}, "tags"),
        ({"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tags"),
        ({"notes": 5}, "notes"),
        ({"notes": ["a"]}, "notes"),
        ({"notes": "x" * (MAX_NOTES_LENGTH + 1)}, "notes"),
        ({"notes": "bell\u0007"}, "notes"),
        ([], None),
        ("favorite", None),
    ]


@pytest.mark.parametrize(("body", "field"), _bad_bodies())
def test_a_bad_patch_is_400_naming_its_field_and_changes_nothing(
    client: Client, body: Any, field: str | None
) -> None:
    made = generate(client)
    patch(client, made["id"], tags=["kept"], notes="kept")
    before = client.get(f"/api/history/{made['id']}").json()["data"]
    response = client.patch(f"/api/history/{made['id']}", json=body)
    answer = assert_error(response, 400, "INVALID_PARAMETERS", field)
    if field is None:
        assert "field" not in answer.get("details", {})
    assert client.get(f"/api/history/{made['id']}").json()["data"] == before
    assert tags(client) == [("kept", 1)]


def test_a_patch_is_all_or_nothing(client: Client) -> None:
    made = generate(client)
    response = client.patch(f"/api/history/{made['id']}", json={"favorite": True, "tags": ["ok", ""]})
    assert_error(response, 400, "INVALID_PARAMETERS", "tags")
    assert client.get(f"/api/history/{made['id']}").json()["data"]["favorite"] is False
    assert listed(client, favorite="true")["total"] == 0


def test_a_malformed_or_missing_body_wrong_type_and_unknown_ids_are_refused(client: Client) -> None:
    made = generate(client)
    url = f"/api/history/{made['id']}"
    headers = {"Content-Type": "application/json"}
    assert_error(client.patch(url, content=b'{"favorite": tru', headers=headers), 400, "INVALID_PARAMETERS")
    assert_error(client.patch(url, content=b"", headers=headers), 400, "INVALID_PARAMETERS")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_error(client.patch(url, content=b"favorite=true", headers=form), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(client.patch(url, content=b'{"favorite": true}'), 415, "UNSUPPORTED_MEDIA_TYPE")
    body = assert_error(client.patch("/api/history/999999", json={"favorite": True}), 404, "NOT_FOUND")
    assert body["error"] == "Generation not found"
    assert_error(client.patch("/api/history/-3", json={"favorite": True}), 404, "NOT_FOUND")
    assert_error(client.patch("/api/history/abc", json={"favorite": True}), 400, "INVALID_PARAMETERS", "id")
    assert client.get(url).json()["data"] == made


def test_favourite_and_tag_filters_page_by_cursor_combine_and_count_exactly(client: Client) -> None:
    made = [generate(client, f"picture number {i}" + (" with a fox" if i % 3 == 0 else "")) for i in range(9)]
    for i, generation in enumerate(made):
        chosen = [t for t, every in (("Sunset", 1), ("beach ", 2), ("NIGHT", 3)) if i % every == 0]
        patch(client, generation["id"], tags=chosen, favorite=i % 4 == 1)

    def walk(**params: Any) -> tuple[list[int], set[int]]:
        seen: list[int] = []
        totals: set[int] = set()
        cursor = None
        while True:
            page = listed(client, limit=2, **params, **({"cursor": cursor} if cursor else {}))
            seen += [item["id"] for item in page["data"]]
            totals.add(page["total"])
            cursor = page["nextCursor"]
            if cursor is None:
                return seen, totals

    newest = [g["id"] for g in reversed(made)]
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"tag": "sunset"}, newest),
        ({"tag": " SUNSET "}, newest),
        ({"tag": "beach"}, [i for i in newest if (i - made[0]["id"]) % 2 == 0]),
        ({"tag": ["beach", "night"]}, [i for i in newest if (i - made[0]["id"]) % 6 == 0]),
        ({"tag": ["night"], "q": "fox"}, [i for i in newest if (i - made[0]["id"]) % 3 == 0]),
        ({"favorite": "true"}, [i for i in newest if (i - made[0]["id"]) % 4 == 1]),
        ({"favorite": "false"}, [i for i in newest if (i - made[0]["id"]) % 4 != 1]),
        ({"favorite": "true", "tag": "beach"}, []),
        (
            {"favorite": "true", "tag": "sunset", "sort": "oldest"},
            [i for i in reversed(newest) if (i - made[0]["id"]) % 4 == 1],
        ),
        ({"tag": "nobody"}, []),
        ({"tag": ["sunset", "nobody"]}, []),
    ]
    for params, expected in cases:
        seen, totals = walk(**params)
        assert seen == expected, params
        assert totals == {len(expected)}, params
    assert listed(client, tag="beach", limit=2, offset=1)["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"favorite": "maybe"}, "favorite"),
        ({"favorite": ""}, "favorite"),
        ({"tag": ""}, "tag"),
        ({"tag": "x" * (MAX_STORED_TAG_LENGTH + 1)}, "tag"),
        ({"tag": "two\nlines"}, "tag"),
        ({"tag": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tag"),
    ],
)
def test_bad_favourite_and_tag_filters_are_400(client: Client, params: dict[str, Any], field: str) -> None:
    assert_error(client.get("/api/history", params=params), 400, "INVALID_PARAMETERS", field)


def test_the_tag_list_counts_most_used_first_filters_by_prefix_and_limits(client: Client) -> None:
    assert client.get("/api/tags").json() == {"success": True, "data": {"tags": []}}
    made = [generate(client, f"picture number {i}") for i in range(4)]
    patch(client, made[0]["id"], tags=["sunset", "beach"])
    patch(client, made[1]["id"], tags=["Sunset", "city"])
    patch(client, made[2]["id"], tags=["sunrise", "beach"])
    patch(client, made[3]["id"], tags=["SUNSET"])
    assert tags(client) == [("sunset", 3), ("beach", 2), ("city", 1), ("sunrise", 1)]
    assert tags(client, limit=2) == [("sunset", 3), ("beach", 2)]
    assert tags(client, q=" SUN") == [("sunset", 3), ("sunrise", 1)]
    assert tags(client, q="") == tags(client)
    assert tags(client, q="zzz") == []
    assert_error(client.get("/api/tags", params={"limit": 0}), 400, "INVALID_PARAMETERS", "limit")
    limit = MAX_TAG_LIST_LIMIT + 1
    assert_error(client.get("/api/tags", params={"limit": limit}), 400, "INVALID_PARAMETERS", "limit")
    # what a person has typed so far is never an error: a prefix no tag could start with finds none
    assert tags(client, q="s" * 500) == []
    assert tags(client, q="sun\u0000") == []
    assert tags(client, q="sun\nset") == []


def test_a_deleted_generation_takes_its_tags_and_their_counts_with_it(client: Client) -> None:
    first = generate(client)
    second = generate(client, "a quiet lake")
    patch(client, first["id"], tags=["sunset", "only-first"], favorite=True)
    patch(client, second["id"], tags=["sunset"])
    assert client.delete(f"/api/history/{first['id']}").status_code == 200
    assert tags(client) == [("sunset", 1)]
    assert listed(client, tag="only-first")["total"] == 0
    assert [g["id"] for g in listed(client, tag="sunset")["data"]] == [second["id"]]
    assert listed(client, favorite="true")["total"] == 0
    assert_error(client.patch(f"/api/history/{first['id']}", json={"favorite": True}), 404, "NOT_FOUND")


def test_a_patch_shows_at_once_in_kept_history_pages_and_tag_lists(client: Client, sql_url: str) -> None:
    made = generate(client)
    page = client.get("/api/history", params={"tag": "sunset"})
    listing = client.get("/api/tags")
    assert page.json()["total"] == 0
    for response, url in ((page, "/api/history?tag=sunset"), (listing, "/api/tags")):
        etag = response.headers.get("etag")
        # kept on SQLite (a 304 while nothing changes), never on PostgreSQL (no cheap version)
        assert (etag is None) is sql_url.startswith("postgresql"), url
        if etag:
            assert client.get(url, headers={"If-None-Match": etag}).status_code == 304, url
    patch(client, made["id"], tags=["sunset"])
    for response, url in ((page, "/api/history?tag=sunset"), (listing, "/api/tags")):
        etag = response.headers.get("etag")
        again = client.get(url, headers={"If-None-Match": etag} if etag else {})
        assert again.status_code == 200, url
    assert client.get("/api/history", params={"tag": "sunset"}).json()["total"] == 1
    assert tags(client) == [("sunset", 1)]


def test_a_page_from_an_allowed_origin_may_send_a_patch(data_dir: Path) -> None:
    app = create_app(Config(data_dir=data_dir))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        preflight = client.options(
            "/api/history/1",
            headers={
                "Origin": LOCAL_ORIGIN,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "content-type",
            },
        )
    assert preflight.status_code == 204
    assert "PATCH" in preflight.headers["access-control-allow-methods"]


def test_the_openapi_document_describes_the_patch_body_the_filters_and_the_tag_list(client: Client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    update = document["paths"]["/api/history/{generation_id}"]["patch"]
    assert update["operationId"] == "updateGeneration"
    reference = update["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schemas[reference.rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"favorite", "tags", "notes"}
    assert body["minProperties"] == 1
    assert body["additionalProperties"] is False
    assert body["properties"]["tags"]["maxItems"] == MAX_TAGS
    assert body["properties"]["tags"]["items"]["pattern"] == TAG_PATTERN
    assert {"400", "404", "415"} <= set(update["responses"])
    assert "Rules:" in update["description"]
    parameters = {p["name"]: p for p in document["paths"]["/api/history"]["get"]["parameters"]}
    assert parameters["tag"]["schema"]["type"] == "array"
    assert parameters["tag"]["schema"]["maxItems"] == MAX_TAGS
    assert parameters["tag"]["schema"]["items"]["pattern"] == TAG_FILTER_PATTERN
    assert parameters["favorite"]["schema"]["enum"] == ["true", "false"]
    listing = document["paths"]["/api/tags"]["get"]
    assert listing["operationId"] == "listTags"
    assert {p["name"] for p in listing["parameters"]} == {"limit", "q"}
    assert {"favorite", "tags", "notes"} <= set(schemas["GenerationOut"]["properties"])


def test_the_use_cases_state_the_limits_the_domain_defines() -> None:
    """The rules ``/docs`` shows come from the use cases' docstrings: they name the same limits."""
    rules = UpdateGeneration.__doc__ or ""
    assert f"1 to {MAX_TAG_LENGTH} characters" in rules
    assert f"at most {MAX_TAGS}" in rules
    assert f"{MAX_NOTES_LENGTH:,} characters" in rules
    assert f"at most {MAX_TAG_LIST_LIMIT}" in (ListTags.__doc__ or "")
