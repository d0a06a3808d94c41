"""Every route of the spec through the real app, SQLite file and image folder."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from tests.assertions import assert_error

Client = TestClient  # type: ignore[type-arg]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def generate(client: Client, **body: Any) -> dict[str, Any]:
    body.setdefault("prompt", "a red sunset over mountains")
    body.setdefault("width", 128)
    body.setdefault("height", 128)
    body.setdefault("steps", 2)
    response = client.post("/api/generate/text-to-image", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["success"] is True
    return payload["data"]  # type: ignore[no-any-return]


def test_health_reports_version_and_engine(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0", "engine": "local"}


def test_text_to_image_returns_the_generation_and_serves_its_bytes(client: Client, data_dir: Path) -> None:
    data = generate(client, seed=42, negativePrompt="blurry, low quality", cfgScale=5, width=192)
    assert data["id"] == 1
    assert data["type"] == "image"
    assert data["operation"] == "text-to-image"
    assert data["prompt"] == "a red sunset over mountains"
    assert data["negativePrompt"] == "blurry, low quality"
    assert data["seed"] == 42
    assert (data["width"], data["height"]) == (192, 128)
    assert data["parameters"] == {
        "width": 192,
        "height": 128,
        "steps": 2,
        "cfgScale": 5.0,
        "seed": 42,
        "model": "local:procedural@1",  # the model that really ran (CONTRACT.md section 4)
        "engine": "local",
    }
    assert data["filePath"].startswith("/generated/")
    assert data["url"] == "http://127.0.0.1:8000" + data["filePath"]
    assert data["created_at"] == data["createdAt"]
    assert ISO_Z.match(data["createdAt"])
    assert data["taskId"]

    image = client.get(data["filePath"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(image.content)).size == (192, 128)
    on_disk = list((data_dir / "generated").rglob("*.jpg"))
    assert len(on_disk) == 1


def test_the_same_seed_gives_the_same_pixels(client: Client) -> None:
    first = generate(client, seed=7)
    second = generate(client, seed=7)
    third = generate(client, seed=8)
    assert first["filePath"] != second["filePath"]
    # the pixels, not the files: each file records its own taskId (README: metadata in every file)
    one, two, three = (
        Image.open(io.BytesIO(client.get(d["filePath"]).content)).tobytes() for d in (first, second, third)
    )
    assert one == two
    assert one != three


def test_an_absent_seed_is_drawn_and_returned(client: Client) -> None:
    data = generate(client)
    assert isinstance(data["seed"], int)
    assert 1 <= data["seed"] <= 2**53 - 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "INVALID_PROMPT", "prompt"),
        ({"prompt": None}, "INVALID_PROMPT", "prompt"),
        ({"prompt": "   "}, "INVALID_PROMPT", "prompt"),
        ({"prompt": "x"}, "INVALID_PROMPT", "prompt"),
        ({"prompt": "x" * 3001}, "INVALID_PROMPT", "prompt"),
        ({"prompt": 12}, "INVALID_PARAMETERS", "prompt"),
        ({"prompt": "a cat", "width": 100}, "INVALID_PARAMETERS", "width"),
        ({"prompt": "a cat", "width": 4096}, "INVALID_PARAMETERS", "width"),
        ({"prompt": "a cat", "width": "512"}, "INVALID_PARAMETERS", "width"),
        ({"prompt": "a cat", "height": 500}, "INVALID_PARAMETERS", "height"),
        ({"prompt": "a cat", "steps": 0}, "INVALID_PARAMETERS", "steps"),
        ({"prompt": "a cat", "steps": 101}, "INVALID_PARAMETERS", "steps"),
        ({"prompt": "a cat", "steps": True}, "INVALID_PARAMETERS", "steps"),
        ({"prompt": "a cat", "cfgScale": -1}, "INVALID_PARAMETERS", "cfgScale"),
        ({"prompt": "a cat", "cfgScale": 51}, "INVALID_PARAMETERS", "cfgScale"),
        ({"prompt": "a cat", "seed": 0}, "INVALID_PARAMETERS", "seed"),
        ({"prompt": "a cat", "seed": 2**53}, "INVALID_PARAMETERS", "seed"),
        ({"prompt": "a cat", "seed": 1.5}, "INVALID_PARAMETERS", "seed"),
        ({"prompt": "a cat", "negativePrompt": "x"}, "INVALID_PARAMETERS", "negativePrompt"),
        ({"prompt": "a cat", "model": "not a model"}, "INVALID_PARAMETERS", "model"),
        ({"prompt": "a cat", "taskId": "has spaces"}, "INVALID_PARAMETERS", "taskId"),
        ({"prompt": "a cat", "colour": "red"}, "INVALID_PARAMETERS", "colour"),
        ({"prompt": "a cat", "cfg_scale": 7}, "INVALID_PARAMETERS", "cfg_scale"),
    ],
)
def test_bad_text_to_image_bodies_are_400_naming_the_field(
    client: Client, body: dict[str, Any], code: str, field: str
) -> None:
    response = client.post("/api/generate/text-to-image", json=body)
    error = assert_error(response, 400, code, field)
    if code == "INVALID_PROMPT" and body.get("prompt") in (None, "   "):
        assert error["error"] == "Prompt is required"
    assert client.get("/api/history").json()["total"] == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"null"])
def test_malformed_or_non_object_json_is_400(client: Client, raw: bytes) -> None:
    response = client.post(
        "/api/generate/text-to-image", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "INVALID_PARAMETERS")


def test_unknown_routes_and_methods_use_the_error_shape(client: Client) -> None:
    assert_error(client.get("/api/nothing-here"), 404, "NOT_FOUND")
    assert_error(client.get("/generated/2026-01-01/none.jpg"), 404, "NOT_FOUND")
    assert_error(client.delete("/api/settings"), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.get("/api/generate/text-to-image"), 405, "METHOD_NOT_ALLOWED")


def test_a_body_over_32_mib_is_413(client: Client) -> None:
    big = b'{"prompt": "' + b"a" * (32 * 1024 * 1024 + 10) + b'"}'
    response = client.post(
        "/api/generate/text-to-image", content=big, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_settings_defaults_partial_update_and_persistence(client: Client, data_dir: Path) -> None:
    assert client.get("/api/settings").json() == {
        "success": True,
        "data": {
            "storagePath": "./generated",
            "defaultWidth": 512,
            "defaultHeight": 512,
            "defaultSteps": 25,
            "defaultCfgScale": 7.5,
            "embedMetadata": True,
        },
    }
    response = client.put("/api/settings", json={"defaultWidth": 768, "defaultHeight": 640})
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Settings updated",
        "data": {
            "storagePath": "./generated",
            "defaultWidth": 768,
            "defaultHeight": 640,
            "defaultSteps": 25,
            "defaultCfgScale": 7.5,
            "embedMetadata": True,
        },
    }
    made = generate(client, width=None, height=None)
    assert (made["width"], made["height"]) == (768, 640)


def test_a_new_storage_path_applies_to_new_images_and_old_ones_stay_served(
    client: Client, data_dir: Path
) -> None:
    before = generate(client)
    response = client.put("/api/settings", json={"storagePath": "./custom/path"})
    assert response.json()["data"]["storagePath"] == "./custom/path"
    after = generate(client)
    assert list((data_dir / "custom" / "path").rglob("*.jpg"))
    assert client.get(before["filePath"]).status_code == 200
    assert client.get(after["filePath"]).status_code == 200


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"defaultWidth": 100}, "INVALID_PARAMETERS", "defaultWidth"),
        ({"defaultSteps": 25, "defaultCfgScale": 99}, "INVALID_PARAMETERS", "defaultCfgScale"),
        ({"defaultWidth": 768, "theme": "dark"}, "INVALID_PARAMETERS", "theme"),
        ({"storagePath": ""}, "INVALID_PARAMETERS", "storagePath"),
        ({"defaultWidth": "768"}, "INVALID_PARAMETERS", "defaultWidth"),
    ],
)
def test_a_bad_settings_update_is_400_and_changes_nothing(
    client: Client, body: dict[str, Any], code: str, field: str
) -> None:
    before = client.get("/api/settings").json()
    assert_error(client.put("/api/settings", json=body), 400, code, field)
    assert client.get("/api/settings").json() == before


def test_an_unwritable_storage_path_is_400_storage_error(client: Client, data_dir: Path) -> None:
    (data_dir / "a-file").write_bytes(b"x")
    before = client.get("/api/settings").json()
    body = assert_error(
        client.put("/api/settings", json={"storagePath": "./a-file/sub"}), 400, "STORAGE_ERROR"
    )
    assert str(data_dir) not in body["error"]
    assert client.get("/api/settings").json() == before


def test_image_to_image_from_a_generation_and_from_a_data_uri(client: Client) -> None:
    source = generate(client, width=256, height=192)
    made = client.post(
        "/api/generate/image-to-image",
        json={
            "seedImage": source["filePath"],
            "prompt": "a futuristic cyberpunk version",
            "strength": 0.5,
            "steps": 2,
        },
    )
    assert made.status_code == 200, made.text
    data = made.json()["data"]
    assert data["operation"] == "image-to-image"
    assert (data["width"], data["height"]) == (256, 192)
    assert data["parameters"]["strength"] == 0.5
    assert data["parameters"]["sourceId"] == source["id"]

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    from_uri = client.post(
        "/api/generate/image-to-image", json={"seedImage": uri, "prompt": "a green field", "steps": 1}
    )
    assert from_uri.status_code == 200, from_uri.text
    data = from_uri.json()["data"]
    assert (data["width"], data["height"]) == (320, 192)
    assert data["parameters"]["strength"] == 0.7
    assert "sourceId" not in data["parameters"]


OWN_NAME = "2026-01-05/" + "ab" * 16  # the storage's own naming scheme, without the extension


def test_image_to_image_from_a_path_inside_storage(client: Client, data_dir: Path) -> None:
    """A file of the storage's own naming scheme (an image the server made, copied back in)."""
    folder = data_dir / "generated" / "2026-01-05"
    folder.mkdir(parents=True)
    Image.new("RGB", (128, 128), (255, 0, 0)).save(folder / f"{'ab' * 16}.png")
    response = client.post(
        "/api/generate/image-to-image",
        json={"seedImage": f"{OWN_NAME}.png", "prompt": "a blue square", "steps": 1},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "reference",
    [
        "/etc/passwd",
        "../../etc/passwd",
        "https://example.com/cat.png",
        "file:///etc/passwd",
        "/generated/../x.png",
    ],
)
def test_image_references_outside_storage_are_400(client: Client, reference: str) -> None:
    response = client.post("/api/generate/image-to-image", json={"seedImage": reference, "prompt": "a cat"})
    assert_error(response, 400, "INVALID_PARAMETERS", "seedImage")
    response = client.post("/api/generate/upscale", json={"imagePath": reference})
    assert_error(response, 400, "INVALID_PARAMETERS", "imagePath")


def test_a_missing_image_is_404_and_a_non_image_is_400(client: Client, data_dir: Path) -> None:
    assert_error(
        client.post("/api/generate/upscale", json={"imagePath": f"/generated/{OWN_NAME}.jpg"}),
        404,
        "NOT_FOUND",
    )
    folder = data_dir / "generated" / "2026-01-05"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{'ab' * 16}.jpg").write_bytes(b"this is not a jpeg")
    assert_error(
        client.post("/api/generate/upscale", json={"imagePath": f"{OWN_NAME}.jpg"}), 400, "INVALID_PARAMETERS"
    )
    truncated = io.BytesIO()
    Image.new("RGB", (200, 200), (1, 2, 3)).save(truncated, format="PNG")
    (folder / f"{'ab' * 16}.png").write_bytes(truncated.getvalue()[:-40])
    assert_error(
        client.post("/api/generate/upscale", json={"imagePath": f"{OWN_NAME}.png"}), 400, "INVALID_PARAMETERS"
    )
    assert client.get("/api/history").json()["total"] == 0


def test_upscale_makes_a_new_generation_scale_times_larger(client: Client) -> None:
    source = generate(client, width=128, height=192, prompt="a lighthouse at dusk")
    response = client.post("/api/generate/upscale", json={"imagePath": source["filePath"], "scale": 3})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["operation"] == "upscale"
    assert (data["width"], data["height"]) == (384, 576)
    assert data["prompt"] == "a lighthouse at dusk"
    assert data["parameters"]["scale"] == 3
    assert data["parameters"]["sourceId"] == source["id"]
    served = client.get(data["filePath"])
    assert Image.open(io.BytesIO(served.content)).size == (384, 576)


@pytest.mark.parametrize(("scale", "field"), [(5, "scale"), (1, "scale"), ("2", "scale")])
def test_bad_upscale_factors_are_400(client: Client, scale: Any, field: str) -> None:
    source = generate(client)
    response = client.post("/api/generate/upscale", json={"imagePath": source["filePath"], "scale": scale})
    assert_error(response, 400, "INVALID_PARAMETERS", field)


def test_upscale_past_4096_is_400(client: Client) -> None:
    source = generate(client, width=1408, height=128, steps=1)
    response = client.post("/api/generate/upscale", json={"imagePath": source["filePath"], "scale": 3})
    assert_error(response, 400, "INVALID_PARAMETERS", "scale")


def test_cors_allows_local_desktop_origins_only(client: Client) -> None:
    for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080", "http://localhost"):
        response = client.options(
            "/api/history",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        )
        assert response.status_code == 204, origin
        assert response.headers.get("access-control-allow-origin") == origin, origin
        assert "Origin" in response.headers["vary"]
    evil = client.get("/api/history", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    # null (sandboxed frames on any site, file:// pages) is not a default origin (CONTRACT.md section 11)
    for origin in ("https://evil.example", "null", "http://[::2]:8080"):
        preflight = client.options(
            "/api/generate/text-to-image",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert_error(preflight, 403, "FORBIDDEN")
        assert "access-control-allow-origin" not in preflight.headers


def test_docs_are_served(client: Client) -> None:
    document = client.get("/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    assert spec["openapi"].startswith("3.1")
    body = spec["paths"]["/api/generate/text-to-image"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/TextToImageRequest"}
    schema = spec["components"]["schemas"]["TextToImageRequest"]
    assert schema["properties"]["width"]["anyOf"][0]["multipleOf"] == 64
    assert "400" in spec["paths"]["/api/generate/text-to-image"]["post"]["responses"]
    assert "swagger" in client.get("/docs").text.lower()
    assert "redoc" in client.get("/redoc").text.lower()
