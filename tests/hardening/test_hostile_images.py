"""Hostile and unusual input images through the real app: image-to-image and upscale, sent as
data URIs and as files in storage.

Each image is either handled (converted to upright RGB: the output decodes and has the expected
size) or refused with 400 ``INVALID_PARAMETERS``. Decompression bombs are refused from their
header: the process's peak memory (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``)
grows by far less than their pixels would take.
"""

from __future__ import annotations

import base64
import io
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from imagestudio.config import Config
from imagestudio.domain.model import nearest_valid_side
from imagestudio.http.app import create_app
from tests.assertions import assert_error
from tests.hardening.conftest import BASE_URL

Client = TestClient  # type: ignore[type-arg]
MiB = 1024 * 1024


# --- image builders ------------------------------------------------------------------------------


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A 1-bit PNG of ``width`` x ``height`` black pixels: a few hundred KiB that inflate to GiB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge size, with almost no data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("P", (16, 16)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("RGB", (16, 16)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("P", (80, 60), colour) for colour in (10, 120, 240)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def cmyk_jpeg() -> bytes:
    return _save(Image.new("CMYK", (96, 64), (0, 0, 0, 0)), "JPEG")  # no ink: white


def png_16_bit() -> bytes:
    image = Image.new("I;16", (90, 70))
    image.putdata([(x * 65535) // 89 for _y in range(70) for x in range(90)])
    return _save(image, "PNG")


def palette_with_transparency() -> bytes:
    image = Image.new("P", (72, 40), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    return _save(image, "PNG", transparency=0)  # every pixel transparent


def exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (300, 130), (250, 250, 250))
    image.paste((0, 0, 0), (0, 0, 150, 130))  # black on the left before rotation
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _save(image, "JPEG", exif=exif.tobytes())


def grey_alpha_png() -> bytes:
    return _save(Image.new("LA", (64, 64), (128, 0)), "PNG")


def truncated(data: bytes) -> bytes:
    return data[: int(len(data) * 0.6)]


def _photo(fmt: str) -> bytes:
    image = Image.effect_noise((160, 120), 60).convert("RGB")
    return _save(image, fmt)


# --- sending --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Path]]:
    """One server for the module (starting one costs more than most of these requests)."""
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    with TestClient(create_app(Config(data_dir=data_dir)), base_url=BASE_URL) as client:
        yield client, data_dir / "generated"


def _reference(storage: Path, data: bytes, how: str, name: str) -> str:
    if how == "data-uri":
        return "data:image/png;base64," + base64.b64encode(data).decode()
    # a name of the storage's own scheme (only those are inputs), fresh: the module shares one folder
    extension = name.rsplit(".", 1)[-1] if name.endswith((".jpg", ".png", ".webp")) else "png"
    key = f"2026-01-02/{uuid.uuid4().hex}.{extension}"
    (storage / key).parent.mkdir(parents=True, exist_ok=True)
    (storage / key).write_bytes(data)
    return key


def _send(client: Client, operation: str, reference: str) -> Any:
    if operation == "upscale":
        return client.post("/api/generate/upscale", json={"imagePath": reference, "scale": 2})
    return client.post(
        "/api/generate/image-to-image", json={"seedImage": reference, "prompt": "a calm sea", "steps": 1}
    )


def _output(client: Client, response: Any) -> Image.Image:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    served = client.get(data["filePath"])
    image = Image.open(io.BytesIO(served.content))
    image.load()
    assert (image.width, image.height) == (data["width"], data["height"])
    assert image.mode == "RGB"
    return image


OPERATIONS = ["upscale", "image-to-image"]
HOW = ["data-uri", "file"]


def _expected_size(operation: str, upright: tuple[int, int]) -> tuple[int, int]:
    if operation == "upscale":
        return upright[0] * 2, upright[1] * 2
    return nearest_valid_side(upright[0]), nearest_valid_side(upright[1])


# --- images that are handled ----------------------------------------------------------------------

HANDLED: dict[str, tuple[Callable[[], bytes], tuple[int, int], str]] = {
    "animated GIF (first frame)": (animated_gif, (80, 60), "x.gif"),
    "CMYK JPEG": (cmyk_jpeg, (96, 64), "x.jpg"),
    "16-bit PNG": (png_16_bit, (90, 70), "x.png"),
    "palette PNG with transparency": (palette_with_transparency, (72, 40), "x.png"),
    "grey PNG with alpha": (grey_alpha_png, (64, 64), "x.png"),
    "EXIF-rotated JPEG": (exif_rotated_jpeg, (130, 300), "x.jpg"),
    "WebP": (lambda: _photo("WEBP"), (160, 120), "x.webp"),
    "TIFF": (lambda: _photo("TIFF"), (160, 120), "x.tiff"),
    "BMP": (lambda: _photo("BMP"), (160, 120), "x.bmp"),
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", sorted(HANDLED))
def test_unusual_images_are_converted_to_an_upright_rgb_output_of_the_expected_size(
    app: tuple[Client, Path], kind: str, operation: str, how: str
) -> None:
    client, storage = app
    build, upright, name = HANDLED[kind]
    output = _output(client, _send(client, operation, _reference(storage, build(), how, name)))
    assert output.size == _expected_size(operation, upright)


def test_a_cmyk_jpeg_keeps_its_colours(app: tuple[Client, Path]) -> None:
    client, storage = app
    output = _output(client, _send(client, "upscale", _reference(storage, cmyk_jpeg(), "file", "c.jpg")))
    assert min(output.getpixel((10, 10))) > 240  # no ink is white, not inverted to black


def test_transparency_is_laid_on_white(app: tuple[Client, Path]) -> None:
    client, storage = app
    reference = _reference(storage, palette_with_transparency(), "file", "p.png")
    output = _output(client, _send(client, "upscale", reference))
    assert min(output.getpixel((20, 20))) > 240


def test_a_16_bit_png_keeps_its_range_instead_of_clipping(app: tuple[Client, Path]) -> None:
    client, storage = app
    output = _output(client, _send(client, "upscale", _reference(storage, png_16_bit(), "file", "g.png")))
    left, right = output.getpixel((4, 70)), output.getpixel((175, 70))
    assert max(left) < 30
    assert min(right) > 225


def test_the_exif_orientation_is_applied_before_upscaling(app: tuple[Client, Path]) -> None:
    client, storage = app
    reference = _reference(storage, exif_rotated_jpeg(), "file", "r.jpg")
    output = _output(client, _send(client, "upscale", reference))
    assert output.size == (260, 600)
    assert max(output.getpixel((130, 40))) < 40  # the black half is on top once upright
    assert min(output.getpixel((130, 560))) > 200


# --- images that are refused -----------------------------------------------------------------------

REFUSED: dict[str, Callable[[], bytes]] = {
    "zero bytes": lambda: b"",
    "text with an image name": lambda: b"this is not an image at all\n" * 10,
    "HTML with an image name": lambda: b"<html><script>alert(1)</script></html>",
    "truncated PNG": lambda: truncated(_photo("PNG")),
    "truncated JPEG": lambda: truncated(_photo("JPEG")),
    "truncated GIF": lambda: truncated(animated_gif()),
    "PNG header only": lambda: b"\x89PNG\r\n\x1a\n",
    "PNG claiming 100000x100000": lambda: png_claiming(100_000, 100_000),
    "PNG claiming 2^31-1 wide": lambda: png_claiming(2**31 - 1, 1),
    "JPEG claiming 65000x65000": lambda: jpeg_claiming(65_000, 65_000),
    "GIF claiming 65535x65535": lambda: gif_claiming(65_535, 65_535),
    "BMP claiming 100000x100000": lambda: bmp_claiming(100_000, 100_000),
    "PNG claiming more pixels than it carries": lambda: png_claiming(512, 512),
    "PCX, a format not accepted": lambda: _save(Image.new("RGB", (32, 32)), "PCX"),
    "ICO, a format not accepted": lambda: _save(Image.new("RGB", (32, 32)), "ICO"),
    "EPS, never handed to Ghostscript": lambda: (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    ),
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_broken_bogus_and_oversized_images_are_400_and_leave_nothing_behind(
    app: tuple[Client, Path], kind: str, operation: str, how: str
) -> None:
    client, storage = app
    before = client.get("/api/history").json()["total"]
    response = _send(client, operation, _reference(storage, REFUSED[kind](), how, "input.png"))
    field = "imagePath" if operation == "upscale" else "seedImage"
    assert_error(response, 400, "INVALID_PARAMETERS", field)
    assert client.get("/api/history").json()["total"] == before


# --- decompression bombs: refused from the header, in bounded memory -------------------------------


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _peak_growth(action: Callable[[], None]) -> int:
    """Bytes by which the process's peak resident memory rose above its size before ``action``."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs")
    before = _rss_kib("VmRSS")
    action()
    return (_rss_kib("VmHWM") - before) * 1024


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = png_bomb(40_000, 40_000)  # 1.6 billion pixels: 1.6 GB as 8-bit grey, 4.8 GB as RGB
    assert len(data) < 1 * MiB
    return data


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_decompression_bomb_is_refused_without_decoding_it(
    app: tuple[Client, Path], bomb: bytes, operation: str, how: str
) -> None:
    client, storage = app
    reference = _reference(storage, bomb, how, "bomb.png")
    responses: list[Any] = []
    growth = _peak_growth(lambda: responses.append(_send(client, operation, reference)))
    body = assert_error(responses[0], 400, "INVALID_PARAMETERS")
    assert "64,000,000" in body["error"]
    assert growth < 64 * MiB, f"peak memory grew by {growth / MiB:.0f} MiB"


def test_an_image_just_under_the_pixel_limit_is_shrunk_before_it_is_expanded(
    app: tuple[Client, Path],
) -> None:
    """7,999 x 7,999 (64 million pixels) is allowed. Image-to-image makes it 2048 x 2048; it may
    cost a little more than a 2048 x 2048 input does, but never the 192 MB of the full size in RGB."""
    client, storage = app
    ordinary = _reference(
        storage, _save(Image.new("RGB", (2048, 2048), (5, 5, 5)), "PNG"), "file", "plain.png"
    )
    reference = _reference(storage, png_bomb(7_999, 7_999), "file", "big.png")
    responses: list[Any] = []
    _send(client, "image-to-image", ordinary)  # the engine's own buffers for a 2048 x 2048 picture
    baseline = _peak_growth(lambda: responses.append(_send(client, "image-to-image", ordinary)))
    growth = _peak_growth(lambda: responses.append(_send(client, "image-to-image", reference)))
    assert _output(client, responses[-1]).size == (2048, 2048)
    assert growth - baseline < 128 * MiB, (
        f"peak memory grew by {growth / MiB:.0f} MiB ({baseline / MiB:.0f} for 2048 px)"
    )
    assert_error(_send(client, "upscale", reference), 400, "INVALID_PARAMETERS", "scale")  # past 4096


def png_tall_rgba(height: int) -> bytes:
    """A 1 x ``height`` RGBA PNG of transparent black: about 300 KiB for 64 million rows."""
    compressor = zlib.compressobj(9)
    rows = b"\x00" * 5 * 1_000_000  # a filter byte and four channel bytes a row, a million rows
    parts = [
        compressor.compress(rows[: 5 * min(1_000_000, height - done)]) for done in range(0, height, 1_000_000)
    ]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", 1, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_a_tall_image_is_cut_to_the_outputs_shape_before_it_is_converted(app: tuple[Client, Path]) -> None:
    """1 x 64,000,000 RGBA is within the pixel limit. Pillow spends 8 bytes a row on pointers and 4 a
    pixel: 768 MB decoded; every full-size copy (upright, RGB, on white) used to cost as much again
    (2.8 GB in all). Now only the middle rows the output keeps are converted."""
    client, storage = app
    reference = _reference(storage, png_tall_rgba(64_000_000), "file", "tall.png")
    responses: list[Any] = []
    growth = _peak_growth(lambda: responses.append(_send(client, "image-to-image", reference)))
    assert _output(client, responses[0]).size == (128, 2048)  # the smallest width allowed
    assert growth < 1024 * MiB, f"peak memory grew by {growth / MiB:.0f} MiB"
