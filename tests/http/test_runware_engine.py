"""Every endpoint through the Runware engine, against the fake Runware server over loopback.

The composition root picks the engine from configuration; the fake speaks Runware's protocol.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image
from structlog.testing import capture_logs

from imagestudio.config import Config, Secret
from imagestudio.http.app import create_app
from imagestudio.testing.fake_runware import FakeRunware, Fault

Client = TestClient  # type: ignore[type-arg]
KEY = "rw-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRunware]:
    with FakeRunware.running(api_key=KEY) as running:
        yield running


@pytest.fixture
def runware(fake: FakeRunware, tmp_path: Path) -> Iterator[tuple[Client, FakeRunware, Path]]:
    fake.reset()
    data_dir = tmp_path / "data"
    config = Config(
        data_dir=data_dir,
        engine="runware",
        runware_api_key=Secret(KEY),
        runware_api_url=fake.url,
        runware_timeout=3.0,
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1:8000") as client:
        yield client, fake, data_dir


def _files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png", ".webp")]


def _no_key(response: Any) -> None:
    assert KEY not in response.text
    assert KEY not in str(response.headers)


def test_health_reports_the_runware_engine(runware: tuple[Client, FakeRunware, Path]) -> None:
    client, _, _ = runware
    assert client.get("/health").json()["engine"] == "runware"


def test_text_to_image_stores_runwares_image_and_reports_its_url_seed_and_cost(
    runware: tuple[Client, FakeRunware, Path],
) -> None:
    client, fake, data_dir = runware
    response = client.post(
        "/api/generate/text-to-image",
        json={
            "prompt": "a red sunset",
            "negativePrompt": "blurry",
            "width": 256,
            "height": 192,
            "seed": 9,
            "steps": 4,
        },
    )
    assert response.status_code == 200, response.text
    _no_key(response)
    data = response.json()["data"]
    assert data["url"].startswith(fake.base_url)
    assert data["seed"] == 9
    assert data["cost"] is not None
    assert data["parameters"]["engine"] == "runware"
    [task] = [task for task in fake.tasks if task["taskType"] == "imageInference"]
    assert task["positivePrompt"] == "a red sunset"
    assert task["negativePrompt"] == "blurry"
    assert (task["width"], task["height"], task["seed"], task["steps"]) == (256, 192, 9, 4)
    assert "CFGScale" not in task  # FLUX.1 schnell runs with guidance off
    assert data["parameters"]["cfgScale"] is None
    served = client.get(data["filePath"])
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.content)).size == (256, 192)
    name = data["filePath"].rsplit("/", 1)[-1]
    assert sorted(p.name for p in _files(data_dir)) == [name, name + ".thumb.webp"]
    assert data["thumbnailUrl"] == "http://127.0.0.1:8000" + data["thumbnailPath"]  # ours, not Runware's
    thumbnail = client.get(data["thumbnailUrl"])
    assert thumbnail.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (256, 192)  # already small: kept as it is


def test_image_to_image_and_upscale_send_image_content_never_a_path(
    runware: tuple[Client, FakeRunware, Path],
) -> None:
    client, fake, _ = runware
    source = client.post(
        "/api/generate/text-to-image", json={"prompt": "a cat", "width": 128, "height": 128}
    ).json()["data"]
    changed = client.post(
        "/api/generate/image-to-image",
        json={"seedImage": source["filePath"], "prompt": "a dog", "strength": 0.3},
    )
    assert changed.status_code == 200, changed.text
    task = [task for task in fake.tasks if task["taskType"] == "imageInference"][-1]
    assert len(task["inputs"]["seedImage"]) == 36  # Runware's own imageUUID of the source
    assert task["strength"] == 0.3
    bigger = client.post("/api/generate/upscale", json={"imagePath": source["filePath"], "scale": 3})
    assert bigger.status_code == 200, bigger.text
    [task] = [task for task in fake.tasks if task["taskType"] == "upscale"]
    assert (task["model"], task["upscaleFactor"]) == ("runware:504@1", 4)
    assert (
        task["inputs"]["image"]
        == [t for t in fake.tasks if t["taskType"] == "imageInference"][-1]["inputs"]["seedImage"]
    )
    data = bigger.json()["data"]
    assert (data["width"], data["height"]) == (384, 384)
    assert (data["parameters"]["model"], data["parameters"]["providerScale"]) == ("runware:504@1", 4)


def test_the_default_request_is_one_the_default_model_is_made_for(
    runware: tuple[Client, FakeRunware, Path],
) -> None:
    client, fake, _ = runware
    data = client.post("/api/generate/text-to-image", json={"prompt": "a red sunset"}).json()["data"]

    [task] = [task for task in fake.tasks if task["taskType"] == "imageInference"]
    assert (task["model"], task["steps"]) == ("runware:100@1", 4)
    assert "CFGScale" not in task
    assert (data["parameters"]["steps"], data["parameters"]["cfgScale"]) == (4, None)


def test_a_size_the_model_cannot_take_is_refused_before_any_call(
    runware: tuple[Client, FakeRunware, Path],
) -> None:
    client, fake, _ = runware
    response = client.post(
        "/api/generate/text-to-image", json={"prompt": "a red sunset", "model": "openai:1@1", "width": 512}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_PARAMETERS"
    assert "1024x1024" in body["error"]
    assert body["details"]["model"] == "openai:1@1"
    assert fake.submissions == 0


def test_a_partner_model_is_sent_no_steps_guidance_or_negative_prompt(
    runware: tuple[Client, FakeRunware, Path],
) -> None:
    client, fake, _ = runware
    response = client.post(
        "/api/generate/text-to-image",
        json={
            "prompt": "a red sunset",
            "model": "bfl:2@1",
            "steps": 30,
            "cfgScale": 5,
            "negativePrompt": "blur",
        },
    )

    assert response.status_code == 200, response.text
    [task] = [task for task in fake.tasks if task["taskType"] == "imageInference"]
    assert not {"steps", "CFGScale", "negativePrompt"} & set(task)
    parameters = response.json()["data"]["parameters"]
    assert (parameters["steps"], parameters["cfgScale"]) == (None, None)


def test_the_models_route_lists_what_runware_runs_with_its_rules(
    runware: tuple[Client, FakeRunware, Path],
) -> None:
    client, _, _ = runware
    page = client.get("/api/models", params={"q": "flux", "limit": 2})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["success"] is True
    schnell = next(model for model in body["data"] if model["id"] == "runware:100@1")
    assert schnell["family"] == "flux-1-schnell"
    assert (schnell["recommendedSteps"], schnell["recommendedCfgScale"]) == (4, None)
    assert schnell["sizes"]["multipleOf"] == 16
    assert "steps" in schnell["parameters"]
    assert body["nextCursor"]
    more = client.get("/api/models", params={"q": "flux", "limit": 2, "cursor": body["nextCursor"]}).json()
    assert {m["id"] for m in more["data"]}.isdisjoint({m["id"] for m in body["data"]})
    assert client.get("/api/models", params={"limit": 0}).json()["code"] == "INVALID_PARAMETERS"


@pytest.mark.parametrize(
    ("fault", "status", "code", "provider_code"),
    [
        (Fault.HANG, 500, "API_TIMEOUT", None),
        (Fault.UNAVAILABLE, 503, "API_ERROR", None),
        (Fault.RATE_LIMITED, 503, "API_ERROR", None),
        (Fault.SERVER_ERROR, 503, "API_ERROR", None),
        (Fault.MALFORMED_JSON, 503, "API_ERROR", None),
        (Fault.IMAGE_404, 503, "API_ERROR", None),
        (Fault.IMAGE_NOT_AN_IMAGE, 503, "API_ERROR", None),
        (Fault.INSUFFICIENT_CREDITS, 500, "API_ERROR", "insufficientCredits"),
    ],
)
def test_every_provider_fault_gives_the_contracts_answer_and_leaves_nothing(
    runware: tuple[Client, FakeRunware, Path], fault: Fault, status: int, code: str, provider_code: str | None
) -> None:
    client, fake, data_dir = runware
    fake.inject(fault)
    with capture_logs() as logs, client.websocket_connect("/ws/generation?taskId=fault-1") as socket:
        response = client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a cat", "width": 128, "height": 128, "taskId": "fault-1"},
        )
        messages = []
        while not messages or messages[-1]["status"] not in ("completed", "failed"):
            messages.append(socket.receive_json(timeout=10))
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == code
    if code == "API_TIMEOUT":
        assert body["error"].startswith("Generation failed:")
    if provider_code is not None:
        assert body["details"]["providerCode"] == provider_code
        assert body["details"]["providerMessage"]
    _no_key(response)
    assert KEY not in repr(logs)
    assert messages[-1]["status"] == "failed"
    assert messages[-1]["code"] == code
    assert client.get("/api/history").json()["total"] == 0
    assert _files(data_dir) == []


def test_a_wrong_key_is_a_rejection_with_runwares_code_and_never_echoes_the_key(
    fake: FakeRunware, tmp_path: Path
) -> None:
    fake.reset()
    wrong = "wrong-key-should-never-appear-42"
    config = Config(
        data_dir=tmp_path,
        engine="runware",
        runware_api_key=Secret(wrong),
        runware_api_url=fake.url,
        runware_timeout=3,
    )
    with capture_logs() as logs, TestClient(create_app(config), base_url="http://127.0.0.1:8000") as client:
        response = client.post("/api/generate/text-to-image", json={"prompt": "a cat"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "API_ERROR"
    assert body["details"]["providerCode"] == "invalidApiKey"
    assert wrong not in response.text
    assert wrong not in repr(logs)


def test_the_engine_follows_the_environment() -> None:
    assert Config.from_env({}).engine == "local"
    assert Config.from_env({"RUNWARE_API_KEY": "k"}).engine == "runware"
    assert Config.from_env({"RUNWARE_API_KEY": "k", "IMAGESTUDIO_ENGINE": "local"}).engine == "local"
    assert "k-secret-value" not in repr(Config.from_env({"RUNWARE_API_KEY": "k-secret-value"}))
    with pytest.raises(ValueError, match="RUNWARE_API_KEY"):
        Config.from_env({"IMAGESTUDIO_ENGINE": "runware"})
    with pytest.raises(ValueError, match="IMAGESTUDIO_ENGINE"):
        Config.from_env({"IMAGESTUDIO_ENGINE": "dall-e"})
