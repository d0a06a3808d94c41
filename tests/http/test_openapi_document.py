"""The OpenAPI document as generated clients read it.

Every error answer of every operation is the spec's error shape (never Litestar's own
``{status_code, detail, extra}``), with the codes ``http/errors.py``'s tables give its status; a
generation's 200 is the generation and its 202 the task; an enumeration is one component; integer
bounds are integers; operation ids are short and stable; request bodies are named components.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config, Secret
from imagestudio.domain.errors import StudioError
from imagestudio.domain.history_query import MAX_HISTORY_LIMIT, MAX_HISTORY_OFFSET
from imagestudio.http.app import create_app
from imagestudio.http.errors import (
    ERROR_STATUS,
    INTERNAL,
    INVALID_HOST,
    REFUSALS,
    SERVER_FULL,
    documented_errors,
    status_of,
)

OPERATION_IDS = {
    ("get", "/health"): "health",
    ("post", "/api/generate/text-to-image"): "textToImage",
    ("post", "/api/generate/image-to-image"): "imageToImage",
    ("post", "/api/generate/upscale"): "upscale",
    ("get", "/api/history"): "listHistory",
    ("get", "/api/history/{generation_id}"): "getGeneration",
    ("delete", "/api/history/{generation_id}"): "deleteGeneration",
    ("patch", "/api/history/{generation_id}"): "updateGeneration",
    ("post", "/api/history/{generation_id}/rerun"): "rerunGeneration",
    ("get", "/api/tags"): "listTags",
    ("get", "/api/settings"): "getSettings",
    ("put", "/api/settings"): "updateSettings",
    ("get", "/api/tasks"): "listTasks",
    ("get", "/api/tasks/{task_id}"): "getTask",
    ("delete", "/api/tasks/{task_id}"): "cancelTask",
    ("get", "/api/models"): "listModels",
    ("post", "/api/images/inspect"): "inspectImage",
    ("get", "/generated/{key}"): "getImage",
}
GENERATE_PATHS = (
    "/api/generate/text-to-image",
    "/api/generate/image-to-image",
    "/api/generate/upscale",
    "/api/history/{generation_id}/rerun",
)
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_LITESTAR_ERROR_FIELDS = {"status_code", "detail", "extra"}
_CODE_LINE = re.compile(r"^- `([A-Z_]+)`: \S", re.MULTILINE)


def _document(data_dir: Path, **config: Any) -> dict[str, Any]:
    with TestClient(
        create_app(Config(data_dir=data_dir, **config)), base_url="http://127.0.0.1:8000"
    ) as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _document(tmp_path_factory.mktemp("openapi") / "data")


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch", "head", "options"}:
                yield method, path, operation


def _schemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict of the document (schemas among them), with where it is."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{where}[{index}]")


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_no_schema_has_the_shape_of_litestars_own_errors(document: dict[str, Any]) -> None:
    for where, node in _schemas(document):
        properties = node.get("properties")
        if isinstance(properties, dict):
            assert not _LITESTAR_ERROR_FIELDS & set(properties), where
        if "examples" in node:
            assert "status_code" not in str(node["examples"]), where


@pytest.mark.parametrize("token", [False, True])
def test_every_error_answer_of_every_operation_is_the_error_shape(tmp_path: Path, token: bool) -> None:
    document = _document(tmp_path / "data", **({"api_token": Secret("t" * 32)} if token else {}))
    checked = 0
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        # every route documents 400 (INVALID_HOST at least): Litestar's own 400 never shows
        assert "400" in responses, (method, path)
        assert "500" in responses, (method, path)
        for status, response in responses.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if int(status) >= 400:
                assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (
                    method,
                    path,
                    status,
                )
                checked += 1
            else:
                assert schema != ERROR_REF, (method, path, status)
    assert checked >= 60
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["properties"]["success"]["const"] is False
    assert set(error["properties"]) == {"success", "error", "code", "details"}
    assert set(error["required"]) == {"error", "code"}


def test_each_error_answer_lists_the_codes_the_status_table_gives_its_status(
    document: dict[str, Any],
) -> None:
    codes_by_status: dict[int, set[str]] = {}
    for error_type, _ in ERROR_STATUS:
        codes_by_status.setdefault(status_of(error_type), set()).add(error_type.code)
    for refusal in (*REFUSALS.values(), INVALID_HOST, INTERNAL, SERVER_FULL):
        codes_by_status.setdefault(refusal.status, set()).add(refusal.code)
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            listed = _CODE_LINE.findall(response["description"])
            assert listed, (method, path, status, response["description"])
            assert set(listed) <= codes_by_status[int(status)], (method, path, status, listed)
            assert len(listed) == len(set(listed)), (method, path, status)


def test_the_generated_answers_follow_the_tables() -> None:
    class Unlisted(StudioError):
        """Something nobody foresaw."""

    answers = documented_errors([Unlisted, INVALID_HOST, SERVER_FULL])
    assert sorted(answers) == [400, 500, 503]
    assert "- `INTERNAL_ERROR`: Something nobody foresaw." in answers[500].description
    assert "- `INVALID_HOST`: " in answers[400].description
    assert answers[503].description.startswith("Service Unavailable, with `code`:")


def test_the_refusals_headers_are_documented(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        assert responses["429"]["headers"]["Retry-After"]["required"] is True, (method, path)
        if "401" in responses:
            assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)
    assert "401" not in document["paths"]["/health"]["get"]["responses"]


def test_operation_ids_are_short_unique_and_stable(document: dict[str, Any]) -> None:
    found = {
        (method, path): operation.get("operationId") for method, path, operation in _operations(document)
    }
    assert found == OPERATION_IDS
    ids = list(found.values())
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][A-Za-z]{1,29}", operation_id), operation_id


def test_a_generation_answers_200_with_the_generation_and_202_with_the_task(document: dict[str, Any]) -> None:
    for path in GENERATE_PATHS:
        responses = document["paths"][path]["post"]["responses"]
        single = {"$ref": "#/components/schemas/GenerationResponse"}
        batch = {"$ref": "#/components/schemas/BatchResponse"}
        answer = responses["200"]["content"]["application/json"]["schema"]
        if path.endswith("/upscale"):  # no count: always one Generation
            assert answer == single
        else:  # count > 1: the list of the batch's Generations
            assert answer == {"oneOf": [single, batch]}
        accepted = responses["202"]
        assert accepted["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TaskResponse"
        }
        assert accepted["headers"]["Location"]["required"] is True
        assert accepted["headers"]["Preference-Applied"]["schema"]["const"] == "respond-async"
    schemas = document["components"]["schemas"]
    assert schemas["GenerationResponse"]["properties"]["data"] == {
        "$ref": "#/components/schemas/GenerationOut"
    }
    assert schemas["TaskResponse"]["properties"]["data"] == {"$ref": "#/components/schemas/TaskOut"}
    assert schemas["BatchResponse"]["properties"]["data"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/GenerationOut"},
    }
    assert "generationIds" in schemas["TaskOut"]["required"]


def test_request_bodies_are_named_components(document: dict[str, Any]) -> None:
    bodies = {
        ("post", "/api/generate/text-to-image"): "TextToImageRequest",
        ("post", "/api/generate/image-to-image"): "ImageToImageRequest",
        ("post", "/api/generate/upscale"): "UpscaleRequest",
        ("put", "/api/settings"): "SettingsRequest",
        ("post", "/api/images/inspect"): "InspectRequest",
        ("patch", "/api/history/{generation_id}"): "GenerationPatchRequest",
        ("post", "/api/history/{generation_id}/rerun"): "RerunRequest",
    }
    for method, path, operation in _operations(document):
        name = bodies.get((method, path))
        if name is None:
            assert "requestBody" not in operation, (method, path)
            continue
        assert operation["requestBody"]["required"] is True
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}
        component = document["components"]["schemas"][name]
        assert component["additionalProperties"] is False
        assert component["title"] == name
    assert document["components"]["schemas"]["TextToImageRequest"]["required"] == ["prompt"]


def test_each_enumeration_is_one_component(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("Operation", "TaskStatus", "GenerationType", "HistorySort", "ModelKind"):
        assert schemas[name]["type"] == "string"
        assert schemas[name]["title"] == name
    assert set(schemas["Operation"]["enum"]) == {"text-to-image", "image-to-image", "upscale"}
    seen: dict[tuple[Any, ...], str] = {}
    for where, node in _schemas(document):
        if "enum" in node:
            values = tuple(sorted(map(str, node["enum"])))
            assert values not in seen, f"the enumeration {values} is at {seen.get(values)} and {where}"
            seen[values] = where
            # a nullable enumeration refers to its component: no "null" among the values
            assert None not in node["enum"], where
    generation = schemas["GenerationOut"]["properties"]
    task = schemas["TaskOut"]["properties"]
    assert generation["operation"] == task["operation"] == {"$ref": "#/components/schemas/Operation"}
    assert task["status"] == {"$ref": "#/components/schemas/TaskStatus"}
    assert generation["type"] == {"$ref": "#/components/schemas/GenerationType"}
    parameters = {p["name"]: p for p in document["paths"]["/api/history"]["get"]["parameters"]}
    # a query parameter is a text or absent, never null
    assert parameters["type"]["schema"] == {"$ref": "#/components/schemas/GenerationType"}


def test_integer_bounds_are_integers(document: dict[str, Any]) -> None:
    for where, node in _schemas(document):
        if node.get("type") == "integer":
            for key in (
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
                "default",
            ):
                if key in node:
                    assert type(node[key]) is int, (where, key, node[key])
    parameters = {p["name"]: p for p in document["paths"]["/api/history"]["get"]["parameters"]}
    assert parameters["offset"]["schema"]["maximum"] == MAX_HISTORY_OFFSET
    assert parameters["limit"]["schema"]["maximum"] == MAX_HISTORY_LIMIT


def test_from_and_to_have_one_form(document: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in document["paths"]["/api/history"]["get"]["parameters"]}
    for name in ("from", "to"):
        schema = parameters[name]["schema"]
        assert "oneOf" not in schema, name
        assert schema["anyOf"] == [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"},
        ]
        assert parameters[name]["required"] is False


def test_each_operation_is_described_by_the_rules_of_the_use_case_it_calls(document: dict[str, Any]) -> None:
    from imagestudio.domain.generate import GenerateTextToImage
    from imagestudio.domain.task_queries import CancelTask
    from imagestudio.http.openapi import described_by

    described = {
        (method, path): operation.get("description", "") for method, path, operation in _operations(document)
    }
    assert described[("post", "/api/generate/text-to-image")] == described_by(GenerateTextToImage)
    assert described[("delete", "/api/tasks/{task_id}")] == described_by(CancelTask)
    assert "``" not in described_by(GenerateTextToImage)  # Markdown code, not reStructuredText
    assert ":class:" not in " ".join(described.values())
    missing = [key for key, text in described.items() if not text and key != ("get", "/health")]
    assert missing == []
