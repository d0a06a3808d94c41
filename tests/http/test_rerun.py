"""Re-runs and lineage through the real app, on a SQLite file and on a PostgreSQL schema:
``POST /api/history/{id}/rerun`` (answers, seeds, batches, tasks, idempotency, errors, inputs of
image-to-image and upscale), ``rerunOf``, and the ``sourceId`` history filter; then the same
route on the Runware engine against the fake Runware server (what is sent, and sent once).

PostgreSQL runs skip, saying so in the summary, where no server is reachable (CI=true fails them).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from imagestudio.config import Config, Secret
from imagestudio.http.app import create_app
from imagestudio.testing.fake_runware import FakeRunware
from tests.assertions import assert_error
from tests.http.test_tasks import wait_for

Client = TestClient  # type: ignore[type-arg]
SMALL = {"width": 128, "height": 128, "steps": 2}
T2I = "/api/generate/text-to-image"


@pytest.fixture
def client(sql_url: str, data_dir: Path) -> Iterator[Client]:
    app = create_app(Config(data_dir=data_dir, database_url=sql_url))
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def _made(response: Any) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def generate(client: Client, **body: Any) -> dict[str, Any]:
    made: dict[str, Any] = _made(
        client.post(
            T2I, json={"prompt": "a red fox", "negativePrompt": "blurry", "seed": 41, **SMALL, **body}
        )
    )
    return made


def rerun(client: Client, generation_id: int, body: Any = None, **headers: str) -> Any:
    if body is None:  # no body at all, as JSON
        return client.post(
            f"/api/history/{generation_id}/rerun", headers={"Content-Type": "application/json", **headers}
        )
    return client.post(f"/api/history/{generation_id}/rerun", json=body, headers=headers)


def _pixels(client: Client, path: str) -> bytes:
    with Image.open(io.BytesIO(client.get(path).content)) as image:
        return image.convert("RGB").tobytes()


def _total(client: Client, **params: Any) -> int:
    response = client.get("/api/history", params=params)
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def test_a_rerun_without_a_body_makes_it_again_with_a_new_seed_and_records_rerun_of(client: Client) -> None:
    original = generate(client)
    assert original["rerunOf"] is None

    again = _made(rerun(client, original["id"]))

    assert again["id"] != original["id"]
    assert again["rerunOf"] == original["id"]
    assert again["operation"] == "text-to-image"
    for name in ("prompt", "negativePrompt", "width", "height"):
        assert again[name] == original[name], name
    kept = ("steps", "cfgScale", "model", "engine")
    assert {k: again["parameters"][k] for k in kept} == {k: original["parameters"][k] for k in kept}
    assert again["seed"] != original["seed"]  # a variation (one in 2^53 draws the same)
    assert client.get(again["filePath"]).status_code == 200
    assert client.get(again["thumbnailPath"]).status_code == 200
    assert _made(client.get(f"/api/history/{again['id']}"))["rerunOf"] == original["id"]
    assert _made(client.get(f"/api/history/{original['id']}")) == original  # the original stays as it was
    empty = _made(rerun(client, original["id"], {}))
    assert empty["rerunOf"] == original["id"]
    assert _total(client) == 3


def test_the_same_seed_makes_the_same_pixels_and_count_makes_a_batch_in_seed_order(client: Client) -> None:
    original = generate(client)

    same = _made(rerun(client, original["id"], {"seed": "same"}))
    batch = _made(rerun(client, original["id"], {"seed": "same", "count": 3, "taskId": "again-3"}))

    assert same["seed"] == 41
    assert _pixels(client, same["filePath"]) == _pixels(client, original["filePath"])  # the local engine
    assert isinstance(batch, list)
    assert [g["seed"] for g in batch] == [41, 42, 43]
    assert {g["rerunOf"] for g in batch} == {original["id"]}
    task = _made(client.get("/api/tasks/again-3"))
    assert task["generationIds"] == [g["id"] for g in batch]
    one = _made(rerun(client, original["id"], {"count": 1}))
    assert isinstance(one, dict)


def test_overrides_change_what_they_name(client: Client) -> None:
    original = generate(client)
    changed = _made(
        rerun(
            client,
            original["id"],
            {"prompt": "a blue fox", "negativePrompt": None, "width": 192, "seed": 7, "cfgScale": 2},
        )
    )
    assert (changed["prompt"], changed["negativePrompt"]) == ("a blue fox", None)
    assert (changed["width"], changed["height"], changed["seed"]) == (192, 128, 7)
    assert changed["parameters"]["cfgScale"] == 2
    assert changed["parameters"]["steps"] == original["parameters"]["steps"]


def test_prefer_respond_async_answers_the_task_and_it_completes_with_the_rerun(client: Client) -> None:
    original = generate(client)
    response = rerun(client, original["id"], {"taskId": "later", "count": 2}, Prefer="respond-async")
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/api/tasks/later"
    assert response.headers["preference-applied"] == "respond-async"
    assert response.json()["data"]["taskId"] == "later"
    task = wait_for(client, "later", ("completed", "failed"))
    assert task["status"] == "completed", task
    assert len(task["generationIds"]) == 2
    for generation_id in task["generationIds"]:
        assert _made(client.get(f"/api/history/{generation_id}"))["rerunOf"] == original["id"]


def test_an_idempotency_key_makes_one_rerun_and_refuses_another_body_or_id(client: Client) -> None:
    original = generate(client)
    other = generate(client, prompt="a lake")
    first = _made(rerun(client, original["id"], {"count": 2}, **{"Idempotency-Key": "again-1"}))
    repeat = _made(rerun(client, original["id"], {"count": 2}, **{"Idempotency-Key": "again-1"}))
    assert [g["id"] for g in repeat] == [g["id"] for g in first]
    assert [g["seed"] for g in repeat] == [g["seed"] for g in first]  # not a new draw
    assert_error(
        rerun(client, original["id"], {"count": 3}, **{"Idempotency-Key": "again-1"}), 409, "CONFLICT"
    )
    assert_error(rerun(client, other["id"], {"count": 2}, **{"Idempotency-Key": "again-1"}), 409, "CONFLICT")
    # no body, {} and count 1 are one request
    single = _made(rerun(client, original["id"], None, **{"Idempotency-Key": "again-2"}))
    assert (
        _made(rerun(client, original["id"], {"count": 1}, **{"Idempotency-Key": "again-2"}))["id"]
        == (single["id"])
    )
    assert _total(client) == 2 + 2 + 1


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"colour": "red"}, 400, "INVALID_PARAMETERS", "colour"),
        ({"seed": "7"}, 400, "INVALID_PARAMETERS", "seed"),
        ({"seed": "other"}, 400, "INVALID_PARAMETERS", "seed"),
        ({"seed": 0}, 400, "INVALID_PARAMETERS", "seed"),
        ({"count": 9}, 400, "INVALID_PARAMETERS", "count"),
        ({"count": "2"}, 400, "INVALID_PARAMETERS", "count"),
        ({"width": None}, 400, "INVALID_PARAMETERS", "width"),
        ({"width": 100}, 400, "INVALID_PARAMETERS", "width"),
        ({"prompt": None}, 400, "INVALID_PROMPT", "prompt"),
        ({"prompt": " "}, 400, "INVALID_PROMPT", "prompt"),
        ({"strength": 0.5}, 400, "INVALID_PARAMETERS", "strength"),
        ({"seedImage": "/generated/x.png"}, 400, "INVALID_PARAMETERS", "seedImage"),
        ({"scale": 2}, 400, "INVALID_PARAMETERS", "scale"),
        ([1, 2], 400, "INVALID_PARAMETERS", None),
    ],
)
def test_a_bad_body_is_400_naming_the_field_and_makes_nothing(
    client: Client, body: Any, status: int, code: str, field: str | None
) -> None:
    original = generate(client)
    answer = assert_error(rerun(client, original["id"], body), status, code, field)
    if field is not None:
        assert field in answer["error"] or code == "INVALID_PROMPT"
    assert _total(client) == 1


def test_a_missing_or_bad_id_and_a_form_post_are_refused(client: Client) -> None:
    original = generate(client)
    body = assert_error(rerun(client, 999_999, {}), 404, "NOT_FOUND")
    assert body["error"] == "Generation not found"
    assert_error(rerun(client, -1, {}), 404, "NOT_FOUND")
    assert_error(client.post("/api/history/abc/rerun", json={}), 400, "INVALID_PARAMETERS", "id")
    assert_error(client.post("/api/history/99999999999999999999/rerun", json={}), 404, "NOT_FOUND")
    # no JSON: what a cross-site form would send, and it must not spend anything
    form = client.post(
        f"/api/history/{original['id']}/rerun", content=b"", headers={"Content-Type": "text/plain"}
    )
    assert form.status_code == 415
    assert_error(client.get(f"/api/history/{original['id']}/rerun"), 405, "METHOD_NOT_ALLOWED")
    assert _total(client) == 1


def _data_uri(width: int, height: int) -> str:
    picture = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(picture, format="PNG")
    return "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()


def test_an_image_to_image_reruns_on_its_source_and_needs_one_when_it_is_gone(client: Client) -> None:
    source = generate(client, width=256)
    made = _made(
        client.post(
            "/api/generate/image-to-image",
            json={
                "seedImage": source["filePath"],
                "prompt": "a fox, watercolour",
                "strength": 0.4,
                "steps": 2,
            },
        )
    )
    same = _made(rerun(client, made["id"], {"seed": "same"}))
    assert (same["operation"], same["parameters"]["sourceId"], same["rerunOf"]) == (
        "image-to-image",
        source["id"],
        made["id"],
    )
    assert (same["width"], same["height"], same["parameters"]["strength"]) == (256, 128, 0.4)
    assert _pixels(client, same["filePath"]) == _pixels(client, made["filePath"])

    from_uri = _made(
        client.post(
            "/api/generate/image-to-image",
            json={"seedImage": _data_uri(128, 128), "prompt": "a fox", "steps": 1},
        )
    )
    body = assert_error(rerun(client, from_uri["id"], {}), 400, "INVALID_PARAMETERS", "seedImage")
    assert "give seedImage" in body["error"]
    assert client.delete(f"/api/history/{source['id']}").status_code == 200
    gone = assert_error(rerun(client, made["id"], {}), 404, "NOT_FOUND", "seedImage")
    assert f"generation {source['id']}, which has been deleted" in gone["error"]
    before = _total(client)
    other = _made(rerun(client, made["id"], {"seedImage": _data_uri(192, 128)}))
    assert (other["width"], other["height"], other["parameters"].get("sourceId")) == (192, 128, None)
    assert other["rerunOf"] == made["id"]
    assert _total(client) == before + 1


def test_an_upscale_reruns_on_the_same_source(client: Client) -> None:
    source = generate(client)
    upscaled = _made(client.post("/api/generate/upscale", json={"imagePath": source["filePath"]}))
    again = _made(rerun(client, upscaled["id"]))
    assert (again["operation"], again["width"], again["height"]) == ("upscale", 256, 256)
    assert (again["parameters"]["sourceId"], again["rerunOf"]) == (source["id"], upscaled["id"])
    assert _pixels(client, again["filePath"]) == _pixels(client, upscaled["filePath"])
    bigger = _made(rerun(client, upscaled["id"], {"scale": 3}))
    assert (bigger["width"], bigger["parameters"]["scale"]) == (384, 3)
    assert_error(rerun(client, upscaled["id"], {"seed": "same"}), 400, "INVALID_PARAMETERS", "seed")
    assert_error(rerun(client, upscaled["id"], {"count": 2}), 400, "INVALID_PARAMETERS", "count")


def _ids(client: Client, **params: Any) -> list[int]:
    response = client.get("/api/history", params=params)
    assert response.status_code == 200, response.text
    return [g["id"] for g in response.json()["data"]]


def test_source_id_lists_what_was_made_from_an_image_with_every_other_filter_and_cursors(
    client: Client,
) -> None:
    source = generate(client, prompt="a red fox in the snow")
    unrelated = generate(client, prompt="a lake")
    made = _made(
        client.post(
            "/api/generate/image-to-image",
            json={"seedImage": source["filePath"], "prompt": "a red fox at night", "steps": 1},
        )
    )
    upscaled = _made(client.post("/api/generate/upscale", json={"imagePath": source["filePath"]}))
    reruns = _made(rerun(client, source["id"], {"count": 2}))
    of_made = _made(rerun(client, made["id"]))
    _made(rerun(client, unrelated["id"]))
    assert (
        client.patch(f"/api/history/{upscaled['id']}", json={"favorite": True, "tags": ["big"]}).status_code
        == 200
    )

    everything = [of_made["id"], reruns[1]["id"], reruns[0]["id"], upscaled["id"], made["id"]]
    assert _ids(client, sourceId=source["id"]) == everything
    assert _total(client, sourceId=source["id"]) == 5
    assert _ids(client, sourceId=made["id"]) == [of_made["id"]]
    assert _ids(client, sourceId=source["id"], operation="image-to-image") == [of_made["id"], made["id"]]
    assert _ids(client, sourceId=source["id"], favorite="true") == [upscaled["id"]]
    assert _total(client, sourceId=source["id"], favorite="false") == 4
    assert _ids(client, sourceId=source["id"], tag="big") == [upscaled["id"]]
    assert _ids(client, sourceId=source["id"], q="night") == [of_made["id"], made["id"]]
    assert _ids(client, sourceId=source["id"], sort="oldest") == everything[::-1]
    assert _total(client, sourceId=unrelated["id"]) == 1
    assert _total(client, sourceId=2**63 - 1) == 0

    seen: list[int] = []
    cursor = None
    while True:
        page = client.get(
            "/api/history",
            params={"sourceId": source["id"], "limit": 2, **({"cursor": cursor} if cursor else {})},
        ).json()
        assert page["total"] == 5
        seen += [g["id"] for g in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == everything

    for bad in ("abc", "0", "-1", "1.5", str(2**63)):
        assert_error(
            client.get("/api/history", params={"sourceId": bad}), 400, "INVALID_PARAMETERS", "sourceId"
        )
    assert_error(
        client.get(f"/api/history?sourceId={source['id']}&sourceId=1"), 400, "INVALID_PARAMETERS", "sourceId"
    )


def test_the_openapi_document_describes_the_rerun_and_the_lineage(client: Client) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/history/{generation_id}/rerun"]["post"]
    assert operation["operationId"] == "rerunGeneration"
    # required, so that generated clients always send JSON (`{}`): a POST without a JSON content
    # type is refused (415), whatever its body, as a cross-site form's would be
    assert operation["requestBody"]["required"] is True
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RerunRequest"
    }
    assert {"200", "202", "400", "404", "409", "500", "503"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/GenerationResponse"},
            {"$ref": "#/components/schemas/BatchResponse"},
        ]
    }
    assert "rerunOf" in operation["description"]
    schemas = document["components"]["schemas"]
    body = schemas["RerunRequest"]
    assert body["additionalProperties"] is False
    assert body.get("required", []) == []  # every field may be left out
    assert {"prompt", "seed", "count", "seedImage", "strength", "imagePath", "scale"} <= set(
        body["properties"]
    )
    number, same = body["properties"]["seed"]["anyOf"]
    assert (number["type"], number["minimum"], number["maximum"]) == ("integer", 1, 2**53 - 1)
    assert (same["type"], same["const"]) == ("string", "same")
    assert "rerunOf" in schemas["GenerationOut"]["required"]
    parameters = {p["name"]: p for p in document["paths"]["/api/history"]["get"]["parameters"]}
    assert parameters["sourceId"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


# --- the Runware engine -------------------------------------------------------------------------

KEY = "rw-rerun-key-0123456789abcdef"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRunware]:
    with FakeRunware.running(api_key=KEY) as running:
        yield running


@pytest.fixture
def runware(fake: FakeRunware, tmp_path: Path) -> Iterator[Client]:
    fake.reset()
    config = Config(
        data_dir=tmp_path / "data",
        engine="runware",
        runware_api_key=Secret(KEY),
        runware_api_url=fake.url,
        runware_timeout=3.0,
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def _inferences(fake: FakeRunware) -> list[dict[str, Any]]:
    return [task for task in fake.tasks if task["taskType"] == "imageInference"]


def test_on_runware_a_rerun_sends_the_recorded_request_once_and_never_twice(
    runware: Client, fake: FakeRunware
) -> None:
    original = _made(
        runware.post(
            T2I,
            json={
                "prompt": "a red sunset",
                "negativePrompt": "blurry",
                "width": 256,
                "height": 192,
                "seed": 9,
            },
        )
    )
    [first] = _inferences(fake)

    batch = _made(rerun(runware, original["id"], {"seed": "same", "count": 2}, **{"Idempotency-Key": "rw-1"}))
    again = _made(rerun(runware, original["id"], {"seed": "same", "count": 2}, **{"Idempotency-Key": "rw-1"}))

    assert [g["id"] for g in again] == [g["id"] for g in batch]
    sent = _inferences(fake)[1:]
    assert len(sent) == 1  # one task for the batch (numberResults), and the repeat spent nothing
    assert [(task["seed"], task["numberResults"]) for task in sent] == [(9, 2)]
    assert [g["seed"] for g in batch] == [9, 10]
    for task in sent:
        for name in ("positivePrompt", "negativePrompt", "width", "height", "model", "steps"):
            assert task[name] == first[name], name
    assert {g["parameters"]["engine"] for g in batch} == {"runware"}
    assert {g["rerunOf"] for g in batch} == {original["id"]}

    upscaled = _made(
        runware.post("/api/generate/upscale", json={"imagePath": original["filePath"], "scale": 2})
    )
    redone = _made(rerun(runware, upscaled["id"]))
    upscales = [task for task in fake.tasks if task["taskType"] == "upscale"]
    assert len(upscales) == 2
    assert upscales[1]["inputs"]["image"] == upscales[0]["inputs"]["image"]  # the same source
    assert (redone["width"], redone["parameters"]["sourceId"]) == (512, original["id"])


def test_on_runware_a_bad_rerun_sends_nothing(runware: Client, fake: FakeRunware) -> None:
    original = _made(runware.post(T2I, json={"prompt": "a red sunset", "width": 256, "height": 256}))
    submitted = fake.submissions
    assert_error(rerun(runware, original["id"], {"strength": 0.3}), 400, "INVALID_PARAMETERS", "strength")
    assert_error(rerun(runware, 12345, {}), 404, "NOT_FOUND")
    assert fake.submissions == submitted
