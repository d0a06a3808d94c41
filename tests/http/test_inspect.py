"""Metadata in every file, through the real app: what a generation's file carries, the
``embedMetadata`` setting, and ``POST /api/images/inspect`` on our files, on files in the formats
of AUTOMATIC1111, ComfyUI and InvokeAI (built here with Pillow, as those tools write them), and on
bad input."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image, PngImagePlugin

from imagestudio.adapters.filesystem import FilesystemImageStorage
from imagestudio.adapters.images import PillowImageInspector
from imagestudio.adapters.metadata import PillowImageAnnotator
from imagestudio.config import Config
from imagestudio.domain.model import GeneratedImage, ImageSpec
from imagestudio.domain.ports import ProgressCallback
from imagestudio.http.app import create_app
from tests.assertions import assert_error
from tests.fakes import FakeImageGenerator, fake_services

Client = TestClient  # type: ignore[type-arg]
BASE_URL = "http://127.0.0.1:8000"
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769


def generate(client: Client, route: str = "text-to-image", **body: Any) -> dict[str, Any]:
    if route != "upscale":
        body.setdefault("prompt", "a lighthouse at dusk, waves crashing")
        body.setdefault("steps", 2)
    response = client.post(f"/api/generate/{route}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def inspect(client: Client, image: str) -> list[dict[str, Any]]:
    response = client.post("/api/images/inspect", json={"image": image})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]["found"]  # type: ignore[no-any-return]


def data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def picture(fmt: str, size: tuple[int, int] = (64, 48), **options: Any) -> bytes:
    image = Image.new("RGB", size)
    image.putdata([(x * 4 % 256, y * 5 % 256, (x ^ y) % 256) for y in range(size[1]) for x in range(size[0])])
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def ours(found: list[dict[str, Any]]) -> dict[str, Any]:
    (record,) = [record for record in found if record["source"] == "imagestudio"]
    return record


def expected_parameters(generation: dict[str, Any], version: str) -> dict[str, Any]:
    """What inspect must answer for our record of ``generation`` (as the API shows it)."""
    nested = {k: v for k, v in generation["parameters"].items() if v is not None}
    top = {
        "operation": generation["operation"],
        "prompt": generation["prompt"] or None,
        "negativePrompt": generation["negativePrompt"],
        "seed": generation["seed"],
        "width": generation["width"],
        "height": generation["height"],
        "taskId": generation["taskId"],
        "version": version,
    }
    return {k: v for k, v in (nested | top).items() if v is not None}


# --- our own files, from the local engine (JPEG) -----------------------------------------------


def test_a_generated_image_carries_its_parameters_and_inspect_reads_them_back(client: Client) -> None:
    made = generate(client, negativePrompt="fog, blur", seed=99, cfgScale=6.5, width=192, height=128)
    version = client.get("/health").json()["version"]

    found = inspect(client, made["filePath"])

    assert [record["source"] for record in found] == ["imagestudio", "automatic1111"]
    record = ours(found)
    assert record["parameters"] == expected_parameters(made, version)
    document = json.loads(record["raw"])
    assert document["parameters"] == made["parameters"]  # the API's own parameters object
    assert {k: document[k] for k in ("operation", "prompt", "negativePrompt", "seed", "taskId")} == {
        k: made[k] for k in ("operation", "prompt", "negativePrompt", "seed", "taskId")
    }
    a1111 = found[1]
    assert a1111["raw"] == (
        "a lighthouse at dusk, waves crashing\nNegative prompt: fog, blur\n"
        'Steps: 2, CFG scale: 6.5, Seed: 99, Size: 192x128, Model: "local:procedural@1"'
    )
    assert a1111["parameters"] == {
        "prompt": made["prompt"],
        "negativePrompt": "fog, blur",
        "steps": 2,
        "cfgScale": 6.5,
        "seed": 99,
        "width": 192,
        "height": 128,
        "model": made["parameters"]["model"],
    }
    # and the served file is what AUTOMATIC1111 and XMP readers expect, as Pillow reads it
    with Image.open(io.BytesIO(client.get(made["filePath"]).content)) as image:
        assert image.getexif().get_ifd(EXIF_IFD)[USER_COMMENT] == b"UNICODE\x00" + a1111["raw"].encode(
            "utf-16-be"
        )
        assert b"imagestudio:generation" in image.info["xmp"]


def test_image_to_image_and_upscale_record_what_they_used(client: Client) -> None:
    first = generate(client, width=128, height=128, seed=5)
    changed = generate(client, "image-to-image", seedImage=first["filePath"], strength=0.4)
    bigger = generate(client, "upscale", imagePath=changed["filePath"], scale=2)
    version = client.get("/health").json()["version"]

    for made, a1111_extra in ((changed, "Denoising strength: 0.4"), (bigger, "Postprocess upscale by: 2")):
        found = inspect(client, made["filePath"])
        assert ours(found)["parameters"] == expected_parameters(made, version)
        assert found[1]["raw"].endswith(a1111_extra)
    assert ours(inspect(client, changed["filePath"]))["parameters"]["strength"] == 0.4
    assert ours(inspect(client, bigger["filePath"]))["parameters"]["sourceId"] == changed["id"]


def _bytes_of(text: str) -> list[bytes]:
    return [text.encode(encoding) for encoding in ("utf-8", "utf-16-be", "utf-16-le")]


def test_with_embed_metadata_off_no_prompt_is_in_the_file(client: Client) -> None:
    response = client.put("/api/settings", json={"embedMetadata": False})
    assert response.status_code == 200
    assert response.json()["data"]["embedMetadata"] is False
    made = generate(client, prompt="a secret garden of glass", negativePrompt="rusty gates")

    raw = client.get(made["filePath"]).content
    for text in ("a secret garden of glass", "secret garden", "rusty gates", made["taskId"]):
        assert not any(encoded in raw for encoded in _bytes_of(text)), text
    assert inspect(client, made["filePath"]) == []
    assert Image.open(io.BytesIO(raw)).size == (made["width"], made["height"])

    assert client.put("/api/settings", json={"embedMetadata": True}).status_code == 200
    again = generate(client, prompt="a secret garden of glass")
    assert b"a secret garden of glass" in client.get(again["filePath"]).content
    assert ours(inspect(client, again["filePath"]))["parameters"]["prompt"] == "a secret garden of glass"


def test_embed_metadata_is_a_setting_like_the_others(client: Client) -> None:
    assert client.get("/api/settings").json()["data"]["embedMetadata"] is True
    before = client.get("/api/settings").json()
    for bad in (0, 1, "false", None, 1.0, [], {}):
        body = {"defaultSteps": 30, "embedMetadata": bad}
        assert_error(client.put("/api/settings", json=body), 400, "INVALID_PARAMETERS", "embedMetadata")
        assert client.get("/api/settings").json() == before  # all or nothing
    assert client.put("/api/settings", json={"embedMetadata": False}).json()["data"] == before["data"] | {
        "embedMetadata": False
    }


# --- PNG and WebP round trips through the pipeline ------------------------------------------


class PillowFormatGenerator(FakeImageGenerator):
    """Makes real images in one format with Pillow, and keeps the last one it made."""

    def __init__(self, fmt: str, extension: str, **options: Any) -> None:
        super().__init__()
        self.fmt, self.extension, self.options = fmt, extension, options
        self.last: bytes = b""

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        self.calls.append(("text-to-image", spec))
        self.last = picture(self.fmt, (spec.width, spec.height), **self.options)
        return GeneratedImage(
            data=self.last, extension=self.extension, width=spec.width, height=spec.height, seed=spec.seed
        )


@pytest.fixture(
    params=[("PNG", "png", {}), ("WEBP", "webp", {"quality": 80}), ("WEBP", "webp", {"lossless": True})]
)
def formats(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Client, PillowFormatGenerator]]:
    fmt, extension, options = request.param
    generator = PillowFormatGenerator(fmt, extension, **options)
    services = fake_services(
        generator=generator,
        storage=FilesystemImageStorage(tmp_path),
        inspector=PillowImageInspector(),
        annotator=PillowImageAnnotator(),
    )
    with TestClient(create_app(Config(data_dir=tmp_path), services=services), base_url=BASE_URL) as client:
        yield client, generator


def test_png_and_webp_files_carry_the_records_with_their_pixels_unchanged(
    formats: tuple[Client, PillowFormatGenerator],
) -> None:
    client, generator = formats
    made = generate(client, negativePrompt="haze", width=192, height=128, seed=31)
    stored = client.get(made["filePath"]).content

    assert stored != generator.last
    with Image.open(io.BytesIO(stored)) as after, Image.open(io.BytesIO(generator.last)) as before:
        assert after.format == before.format
        assert after.tobytes() == before.tobytes()
        if after.format == "PNG":
            assert isinstance(after, PngImagePlugin.PngImageFile)
            assert json.loads(after.text["imagestudio"])["taskId"] == made["taskId"]
            assert after.text["parameters"].startswith(
                "a lighthouse at dusk, waves crashing\nNegative prompt: haze"
            )
        else:
            assert after.getexif().get_ifd(EXIF_IFD)[USER_COMMENT].startswith(b"UNICODE\x00")
            assert made["taskId"].encode() in after.info["xmp"]
    version = client.get("/health").json()["version"]
    by_path = inspect(client, made["filePath"])
    by_uri = inspect(client, data_uri(stored, made["filePath"].rsplit(".", 1)[1]))
    assert by_path == by_uri
    assert ours(by_path)["parameters"] == expected_parameters(made, version)


# --- files other tools wrote ----------------------------------------------------------------

A1111_TEXT = (
    "masterpiece, a castle on a hill, (sunset:1.2)\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, Size: 640x448,"
    ' Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "detail: ab12cd34", Version: v1.10.1'
)
A1111_PARAMETERS = {
    "prompt": "masterpiece, a castle on a hill, (sunset:1.2)",
    "negativePrompt": "lowres, bad anatomy",
    "steps": 28,
    "sampler": "DPM++ 2M",
    "scheduler": "Karras",
    "cfgScale": 6.5,
    "seed": 3141592653,
    "width": 640,
    "height": 448,
    "model": "v1-5-pruned-emaonly",
    "version": "v1.10.1",
}


def png_with(**texts: str) -> bytes:
    """A PNG with text chunks, as these tools save theirs (Pillow's ``PngInfo.add_text``)."""
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    return picture("PNG", pnginfo=info)


def test_an_automatic1111_png_is_read(client: Client) -> None:
    (found,) = inspect(client, data_uri(png_with(parameters=A1111_TEXT)))
    assert found == {"source": "automatic1111", "parameters": A1111_PARAMETERS, "raw": A1111_TEXT}


def test_an_automatic1111_jpeg_is_read_from_its_exif_user_comment(client: Client) -> None:
    """As AUTOMATIC1111 saves a JPEG: piexif's ``UserComment.dump(text, encoding="unicode")``."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\x00" + A1111_TEXT.encode("utf-16-be")
    jpeg = picture("JPEG", exif=exif.tobytes())

    (found,) = inspect(client, data_uri(jpeg, "jpeg"))
    assert found == {"source": "automatic1111", "parameters": A1111_PARAMETERS, "raw": A1111_TEXT}


# ComfyUI's default text-to-image graph, in the two forms its SaveImage node writes: ``prompt``
# (the API graph) and ``workflow`` (the editor's graph: nodes with widget values, and links).
COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "beautiful scenery, glass bottle", "clip": ["10", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "detail.safetensors", "model": ["4", 0], "clip": ["4", 1]},
    },
}
COMFY_WORKFLOW = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {
            "id": 3,
            "type": "KSampler",
            "inputs": [
                {"name": "model", "type": "MODEL", "link": 1},
                {"name": "positive", "type": "CONDITIONING", "link": 4},
                {"name": "negative", "type": "CONDITIONING", "link": 6},
                {"name": "latent_image", "type": "LATENT", "link": 2},
            ],
            "widgets_values": [18446744073709551614, "randomize", 30, 4.5, "dpmpp_2m", "karras", 0.6],
        },
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd_xl_base_1.0.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "widgets_values": [1024, 1024, 1]},
        {
            "id": 6,
            "type": "CLIPTextEncode",
            "inputs": [{"name": "clip", "link": 3}],
            "widgets_values": ["a fox"],
        },
        {
            "id": 7,
            "type": "CLIPTextEncode",
            "inputs": [{"name": "clip", "link": 5}],
            "widgets_values": ["dogs"],
        },
    ],
    "links": [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 5, 0, 3, 3, "LATENT"],
        [3, 4, 1, 6, 0, "CLIP"],
        [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 4, 1, 7, 0, "CLIP"],
        [6, 7, 0, 3, 2, "CONDITIONING"],
    ],
    "groups": [],
    "config": {},
    "extra": {},
    "version": 0.4,
}


def test_a_comfyui_png_is_read_from_its_prompt_graph(client: Client) -> None:
    prompt, workflow = json.dumps(COMFY_PROMPT), json.dumps(COMFY_WORKFLOW)
    (found,) = inspect(client, data_uri(png_with(prompt=prompt, workflow=workflow)))
    assert found == {
        "source": "comfyui",
        "parameters": {
            "prompt": "beautiful scenery, glass bottle",
            "negativePrompt": "text, watermark",
            "width": 512,
            "height": 768,
            "steps": 20,
            "cfgScale": 8.0,
            "seed": 156680208700286,
            "model": "v1-5-pruned-emaonly.safetensors",  # through the LoRA loader
            "sampler": "euler",
            "scheduler": "normal",
        },
        "raw": prompt,
    }


def test_a_comfyui_png_with_only_its_workflow_is_read_from_the_editor_graph(client: Client) -> None:
    workflow = json.dumps(COMFY_WORKFLOW)
    (found,) = inspect(client, data_uri(png_with(workflow=workflow)))
    assert found == {
        "source": "comfyui",
        "parameters": {
            "prompt": "a fox",
            "negativePrompt": "dogs",
            "width": 1024,
            "height": 1024,
            "steps": 30,
            "cfgScale": 4.5,
            "seed": 18446744073709551614,
            "model": "sd_xl_base_1.0.safetensors",
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "strength": 0.6,
        },
        "raw": workflow,
    }


def test_a_comfyui_webp_is_read_from_its_exif_model_and_make(client: Client) -> None:
    """As ComfyUI's SaveAnimatedWEBP writes it: ``Model`` is ``prompt:<JSON>``, ``Make`` is
    ``workflow:<JSON>``."""
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(COMFY_PROMPT)
    exif[0x010F] = "workflow:" + json.dumps(COMFY_WORKFLOW)
    webp = picture("WEBP", exif=exif.tobytes())

    (found,) = inspect(client, data_uri(webp, "webp"))
    assert found["source"] == "comfyui"
    assert found["raw"] == json.dumps(COMFY_PROMPT)
    assert (found["parameters"]["prompt"], found["parameters"]["seed"]) == (
        "beautiful scenery, glass bottle",
        156680208700286,
    )


@pytest.mark.parametrize(
    ("model", "version", "name"),
    [
        (
            {
                "key": "9f1c",
                "hash": "blake3:77aa",
                "name": "Juggernaut XL v9",
                "base": "sdxl",
                "type": "main",
            },
            "4.2.4",
            "Juggernaut XL v9",
        ),
        (
            {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1", "model_type": "main"},
            "3.3.0post3",
            "stable-diffusion-v1-5",
        ),
    ],
    ids=["invokeai-4", "invokeai-3"],
)
def test_an_invokeai_png_is_read(client: Client, model: dict[str, str], version: str, name: str) -> None:
    metadata = json.dumps(
        {
            "app_version": version,
            "generation_mode": "txt2img",
            "positive_prompt": "a cozy cabin in the woods",
            "negative_prompt": "people",
            "width": 768,
            "height": 512,
            "seed": 3195482917,
            "rand_device": "cpu",
            "cfg_scale": 6.5,
            "steps": 30,
            "scheduler": "dpmpp_2m_k",
            "model": model,
            "loras": [],
        }
    )
    (found,) = inspect(client, data_uri(png_with(invokeai_metadata=metadata, invokeai_graph="{}")))
    assert found == {
        "source": "invokeai",
        "parameters": {
            "operation": "text-to-image",
            "prompt": "a cozy cabin in the woods",
            "negativePrompt": "people",
            "width": 768,
            "height": 512,
            "steps": 30,
            "cfgScale": 6.5,
            "seed": 3195482917,
            "model": name,
            "sampler": "dpmpp_2m_k",
            "version": version,
        },
        "raw": metadata,
    }


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_an_image_without_records_has_none(client: Client, fmt: str) -> None:
    assert inspect(client, data_uri(picture(fmt), fmt.lower())) == []


def test_records_that_are_not_json_or_not_of_their_format_are_left_out(client: Client) -> None:
    junk = png_with(imagestudio="{not json", prompt="[1, 2]", workflow='{"nodes": 5}', invokeai_metadata="7")
    assert inspect(client, data_uri(junk)) == []


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "/etc/passwd",
        "imagestudio.db",
        "../imagestudio.db",
        "/generated/../imagestudio.db",
        "https://example.com/cat.png",
        "file:///etc/passwd",
        "2026-01-01/not-our-name.png",
    ],
)
def test_a_path_that_is_not_one_of_ours_is_400(client: Client, image: str) -> None:
    body = assert_error(
        client.post("/api/images/inspect", json={"image": image}), 400, "INVALID_PARAMETERS", "image"
    )
    assert "filePath" in body["error"]


def test_a_missing_image_of_our_naming_scheme_is_404(client: Client) -> None:
    assert_error(
        client.post("/api/images/inspect", json={"image": f"/generated/2026-01-01/{uuid.uuid4().hex}.png"}),
        404,
        "NOT_FOUND",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": data_uri(b"plain text, not an image")}, "image"),
        ({"image": data_uri(picture("PNG")[:60])}, "image"),
        ({"image": "data:image/png;base64,@@@"}, "image"),
        ({"image": "   "}, "image"),
        ({"image": 7}, "image"),
        ({}, "image"),
        ({"image": data_uri(picture("PNG")), "also": 1}, "also"),
    ],
    ids=["not-an-image", "truncated", "bad-base64", "blank", "not-a-string", "missing", "unknown-field"],
)
def test_bad_input_is_400_in_the_error_shape(client: Client, body: dict[str, Any], field: str) -> None:
    assert_error(client.post("/api/images/inspect", json=body), 400, "INVALID_PARAMETERS", field)


def test_an_image_of_too_many_pixels_is_400_from_its_header(client: Client) -> None:
    huge = Image.new("1", (9000, 8000))
    buffer = io.BytesIO()
    huge.save(buffer, "PNG")
    body = assert_error(
        client.post("/api/images/inspect", json={"image": data_uri(buffer.getvalue())}),
        400,
        "INVALID_PARAMETERS",
        "image",
    )
    assert "64,000,000" in body["error"]


def test_too_big_a_body_is_413_and_too_big_a_file_is_400(tmp_path: Path) -> None:
    limit = 256 * 1024
    with TestClient(create_app(Config(data_dir=tmp_path, max_body_size=limit)), base_url=BASE_URL) as client:
        big = picture("PNG", (400, 400), compress_level=0)
        assert len(big) > limit
        assert_error(
            client.post("/api/images/inspect", json={"image": data_uri(big)}), 413, "PAYLOAD_TOO_LARGE"
        )

        made = generate(client, width=128, height=128)
        folder = (tmp_path / "generated" / made["filePath"].split("/")[2]).resolve()
        copied = folder / f"{uuid.uuid4().hex}.png"
        copied.write_bytes(big)  # a file of our naming scheme in the storage folder, over the read limit
        body = assert_error(
            client.post("/api/images/inspect", json={"image": f"{folder.name}/{copied.name}"}),
            400,
            "INVALID_PARAMETERS",
            "image",
        )
        assert "large" in body["error"]
        small = folder / f"{uuid.uuid4().hex}.png"
        small.write_bytes(png_with(parameters=A1111_TEXT))
        assert inspect(client, f"{folder.name}/{small.name}")[0]["parameters"] == A1111_PARAMETERS


def test_the_route_is_documented_with_its_body_and_rules(client: Client) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/images/inspect"]["post"]
    assert operation["operationId"] == "inspectImage"
    reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert schema["required"] == ["image"]
    assert schema["additionalProperties"] is False
    assert "automatic1111" in operation["description"]
    assert {"200", "400", "404", "413"} <= set(operation["responses"])
