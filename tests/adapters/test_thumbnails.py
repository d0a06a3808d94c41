"""The Pillow ``ThumbnailMaker``: a WebP of at most 256 px on its long side, upright, aspect kept,
never enlarged, made in a worker thread within the process's decode budget."""

from __future__ import annotations

import io
import struct
import zlib

import anyio
import pytest
from PIL import Image

from imagestudio.adapters.images import DECODE_BUDGET, PillowThumbnailMaker, make_thumbnail
from imagestudio.domain.errors import StorageError
from imagestudio.domain.model import THUMBNAIL_SIDE
from tests.adapters.test_decode_budget import wait_until


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1024, 1024), (256, 256)),
        ((512, 768), (171, 256)),  # portrait: the height is the long side
        ((2048, 512), (256, 64)),
        ((4096, 1024), (256, 64)),
        ((300, 200), (256, 171)),
        ((200, 100), (200, 100)),  # smaller than a thumbnail: kept, never enlarged
        ((256, 256), (256, 256)),
        ((1, 3000), (1, 256)),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_the_long_side_is_at_most_256_px_and_the_aspect_is_kept(
    size: tuple[int, int], expected: tuple[int, int], fmt: str
) -> None:
    thumbnail = opened(make_thumbnail(encoded(Image.new("RGB", size, (200, 60, 30)), fmt)))
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == expected
    assert max(thumbnail.size) <= THUMBNAIL_SIDE
    assert abs(thumbnail.width / thumbnail.height - size[0] / size[1]) < 0.02 or min(expected) == 1


def test_the_picture_survives_the_shrinking() -> None:
    """Left half red, right half blue: the thumbnail shows the same halves."""
    image = Image.new("RGB", (1024, 512), (220, 20, 20))
    image.paste((20, 20, 220), (512, 0, 1024, 512))
    thumbnail = opened(make_thumbnail(encoded(image, "JPEG", quality=95))).convert("RGB")
    assert thumbnail.size == (256, 128)
    red, blue = thumbnail.getpixel((60, 64)), thumbnail.getpixel((196, 64))
    assert isinstance(red, tuple)
    assert isinstance(blue, tuple)
    assert red[0] > 180
    assert red[2] < 60
    assert blue[2] > 180
    assert blue[0] < 60


def test_the_exif_orientation_is_applied_so_the_thumbnail_is_upright() -> None:
    """Stored 400x200 with "rotate 90 clockwise to show": shown 200x400, and so is the thumbnail."""
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 200, 200))  # white on the stored left half
    exif = Image.Exif()
    exif[0x0112] = 6
    thumbnail = opened(make_thumbnail(encoded(image, "JPEG", exif=exif.tobytes(), quality=95))).convert("L")
    assert thumbnail.size == (128, 256)
    top, bottom = thumbnail.getpixel((64, 40)), thumbnail.getpixel((64, 216))
    assert isinstance(top, int)
    assert isinstance(bottom, int)
    assert top > 200  # the stored left half is on top once upright
    assert bottom < 60
    assert "exif" not in thumbnail.info


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "1", "I;16", "CMYK"])
def test_every_mode_an_image_may_have_gives_a_webp(mode: str) -> None:
    image = Image.new("RGB", (600, 300), (10, 200, 90)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    thumbnail = opened(make_thumbnail(encoded(image, fmt)))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (256, 128))


def test_transparency_is_kept() -> None:
    image = Image.new("RGBA", (512, 512), (255, 0, 0, 0))
    image.paste((0, 255, 0, 255), (0, 0, 256, 512))
    thumbnail = opened(make_thumbnail(encoded(image, "PNG")))
    assert thumbnail.mode == "RGBA"
    alpha = thumbnail.getchannel("A")
    assert alpha.getpixel((32, 128)) == 255
    assert alpha.getpixel((224, 128)) == 0


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", encoded(Image.new("RGB", (300, 300)), "PNG")[:-200]]
)
def test_bytes_that_are_not_a_whole_image_are_a_storage_error(data: bytes) -> None:
    with pytest.raises(StorageError, match="Could not make the thumbnail"):
        make_thumbnail(data)


def test_an_image_past_the_pixel_limit_is_refused_before_its_pixels_are_decoded() -> None:
    """A PNG whose header declares 8001x8000 pixels over a few bytes of data: refused on the header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", 8001, 8000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
    with pytest.raises(StorageError, match="more than 64,000,000 pixels"):
        make_thumbnail(data + chunk(b"IEND", b""))


@pytest.mark.anyio
async def test_thumbnails_are_made_off_the_loop_and_only_within_the_decode_budget() -> None:
    maker = PillowThumbnailMaker()
    data = encoded(Image.new("RGB", (1024, 768), (1, 2, 3)), "PNG")
    made: list[bytes] = []

    async def one() -> None:
        made.append(await maker.thumbnail(data))

    whole = DECODE_BUDGET.take(DECODE_BUDGET.limit)
    whole.__enter__()  # something else holds every byte of the budget
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
            await anyio.to_thread.run_sync(wait_until, lambda: DECODE_BUDGET.waiting == 2)
            assert made == []  # the loop kept running while both waited in their threads
            whole.__exit__(None, None, None)
    finally:
        if DECODE_BUDGET.in_use:
            whole.__exit__(None, None, None)
    assert (DECODE_BUDGET.in_use, DECODE_BUDGET.waiting) == (0, 0)
    assert [opened(m).size for m in made] == [(256, 192), (256, 192)]
