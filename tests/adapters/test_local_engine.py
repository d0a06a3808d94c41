"""The local engine: a deterministic procedural renderer whose words, seed, steps and guidance
visibly change the picture, and whose upscaler takes any decodable image."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image, ImageFilter

from imagestudio.adapters.images import inspect_image_bytes
from imagestudio.adapters.local_engine import LocalImageGenerator
from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import GeneratedImage, ImageSpec, SourceImage

pytestmark = pytest.mark.anyio


def spec(**changes: Any) -> ImageSpec:
    values: dict[str, Any] = {
        "prompt": "a red sunset over mountains",
        "negative_prompt": None,
        "width": 256,
        "height": 256,
        "steps": 25,
        "cfg_scale": 7.5,
        "seed": 1234,
        "model": "runware:100@1",
    }
    values.update(changes)
    return ImageSpec(**values)


def ignore(done: int, total: int, preview: object = None) -> None:
    pass


def pixels(image: GeneratedImage | bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    data = image.data if isinstance(image, GeneratedImage) else image
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "RGB"
        return np.asarray(decoded, dtype=np.float32)


def source(image: Image.Image, fmt: str = "PNG", **save: Any) -> SourceImage:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return inspect_image_bytes(buffer.getvalue())


def mean_difference(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.abs(a - b).mean())


def warmth(picture: np.ndarray[Any, Any]) -> float:
    """Mean red minus mean blue."""
    return float(picture[..., 0].mean() - picture[..., 2].mean())


def roughness(image: GeneratedImage) -> float:
    """Mean distance of each pixel from a blurred copy: high-frequency energy."""
    with Image.open(io.BytesIO(image.data)) as decoded:
        blurred = decoded.filter(ImageFilter.GaussianBlur(3))
        return mean_difference(np.asarray(decoded, np.float32), np.asarray(blurred, np.float32))


def saturation(image: GeneratedImage) -> float:
    with Image.open(io.BytesIO(image.data)) as decoded:
        return float(np.asarray(decoded.convert("HSV"), np.float32)[..., 1].mean())


@pytest.fixture
def engine() -> LocalImageGenerator:
    return LocalImageGenerator()


# --- text to image --------------------------------------------------------------------------


async def test_the_engine_is_called_local(engine: LocalImageGenerator) -> None:
    assert engine.name == "local"


async def test_it_answers_a_jpeg_of_the_requested_size_carrying_the_seed(engine: LocalImageGenerator) -> None:
    image = await engine.text_to_image(spec(width=320, height=192, seed=77), ignore)
    assert image.data.startswith(b"\xff\xd8")
    assert (image.extension, image.width, image.height, image.seed) == ("jpg", 320, 192, 77)
    assert (image.remote_url, image.cost) == (None, None)
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert (decoded.format, decoded.size) == ("JPEG", (320, 192))


async def test_the_same_prompt_seed_and_parameters_give_identical_bytes(engine: LocalImageGenerator) -> None:
    first = await engine.text_to_image(spec(negative_prompt="blurry"), ignore)
    second = await LocalImageGenerator().text_to_image(spec(negative_prompt="blurry"), ignore)
    assert first.data == second.data


async def test_another_seed_moves_the_picture_visibly(engine: LocalImageGenerator) -> None:
    one = pixels(await engine.text_to_image(spec(seed=1), ignore))
    other = pixels(await engine.text_to_image(spec(seed=2), ignore))
    assert mean_difference(one, other) > 6


@pytest.mark.parametrize(
    "prompt",
    [
        "green forest with a small cabin",
        "blue ocean at night with stars",
        "neon city skyline",
        "a cat on a sofa",
    ],
)
async def test_every_kind_of_prompt_changes_with_the_seed(engine: LocalImageGenerator, prompt: str) -> None:
    one = pixels(await engine.text_to_image(spec(prompt=prompt, seed=10), ignore))
    other = pixels(await engine.text_to_image(spec(prompt=prompt, seed=11), ignore))
    assert mean_difference(one, other) > 3


async def test_colour_words_steer_the_palette(engine: LocalImageGenerator) -> None:
    red = pixels(await engine.text_to_image(spec(prompt="a red landscape"), ignore))
    sunset = pixels(await engine.text_to_image(spec(prompt="a red sunset over mountains"), ignore))
    ocean = pixels(await engine.text_to_image(spec(prompt="blue ocean at night with stars"), ignore))
    assert warmth(red) > 15
    assert warmth(sunset) > 15
    assert warmth(ocean) < -15


async def test_a_colour_word_colours_the_shape_it_describes(engine: LocalImageGenerator) -> None:
    # the sphere is drawn left of the cube, so swapping the colours swaps the halves' warmth
    blue_sphere = pixels(await engine.text_to_image(spec(prompt="a blue sphere and a red cube"), ignore))
    red_sphere = pixels(await engine.text_to_image(spec(prompt="a red sphere and a blue cube"), ignore))
    left, right = slice(0, 128), slice(128, 256)
    assert warmth(red_sphere[:, left]) - warmth(blue_sphere[:, left]) > 10
    assert warmth(blue_sphere[:, right]) - warmth(red_sphere[:, right]) > 10


async def test_words_the_engine_does_not_know_still_pick_colours(engine: LocalImageGenerator) -> None:
    # each unknown word gets a hue from a stable hash: "cat" hashes to a blue, "dragon" to an orange
    cat = pixels(await engine.text_to_image(spec(prompt="a cat"), ignore))
    dragon = pixels(await engine.text_to_image(spec(prompt="a dragon"), ignore))
    assert warmth(dragon) - warmth(cat) > 20


async def test_the_negative_prompt_pushes_its_colours_away(engine: LocalImageGenerator) -> None:
    plain = pixels(await engine.text_to_image(spec(prompt="a red sunset over mountains"), ignore))
    unred = pixels(
        await engine.text_to_image(spec(prompt="a red sunset over mountains", negative_prompt="red"), ignore)
    )
    assert warmth(plain) - warmth(unred) > 15


async def test_no_x_in_the_prompt_leaves_x_out(engine: LocalImageGenerator) -> None:
    with_city = pixels(await engine.text_to_image(spec(prompt="neon city skyline"), ignore))
    without = pixels(await engine.text_to_image(spec(prompt="neon skyline, no city"), ignore))
    lit_windows = (with_city[..., 1] > 150) & (with_city[..., 2] > 150)
    assert lit_windows.mean() > 0.005
    assert ((without[..., 1] > 150) & (without[..., 2] > 150)).mean() < lit_windows.mean() / 4


async def test_progress_is_reported_once_per_step_from_a_worker_thread(engine: LocalImageGenerator) -> None:
    calls: list[tuple[int, int]] = []
    threads: set[int] = set()

    def progress(done: int, total: int, preview: object = None) -> None:
        calls.append((done, total))
        threads.add(threading.get_ident())

    await engine.text_to_image(spec(steps=7), progress)
    assert calls == [(done, 7) for done in range(1, 8)]
    assert threading.get_ident() not in threads


async def test_few_steps_leave_visible_noise_that_many_steps_remove(engine: LocalImageGenerator) -> None:
    noisy = await engine.text_to_image(spec(steps=2), ignore)
    rough = await engine.text_to_image(spec(steps=8), ignore)
    clean = await engine.text_to_image(spec(steps=40), ignore)
    assert roughness(noisy) > 1.5 * roughness(rough) > 1.5 * roughness(clean)
    # the noise is on top of the same composition, not a different picture
    assert mean_difference(pixels(rough), pixels(clean)) < 12


async def test_guidance_sets_how_strongly_the_palette_shows(engine: LocalImageGenerator) -> None:
    washed = await engine.text_to_image(spec(cfg_scale=0), ignore)
    normal = await engine.text_to_image(spec(cfg_scale=7.5), ignore)
    vivid = await engine.text_to_image(spec(cfg_scale=15), ignore)
    assert saturation(washed) < 0.5 * saturation(normal)
    assert saturation(vivid) > saturation(normal) + 10


async def test_every_size_in_range_renders(engine: LocalImageGenerator) -> None:
    for width, height in [(128, 128), (2048, 128), (128, 2048), (640, 384)]:
        image = await engine.text_to_image(spec(width=width, height=height, steps=1), ignore)
        with Image.open(io.BytesIO(image.data)) as decoded:
            assert decoded.size == (width, height)


# --- image to image -------------------------------------------------------------------------


def gradient_photo(width: int = 256, height: int = 256) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


async def test_image_to_image_at_strength_zero_keeps_the_source(engine: LocalImageGenerator) -> None:
    photo = gradient_photo()
    image = await engine.image_to_image(spec(), source(photo), 0.0, ignore)
    assert mean_difference(pixels(image), np.asarray(photo, np.float32)) < 2


async def test_image_to_image_at_strength_one_is_the_prompts_picture(engine: LocalImageGenerator) -> None:
    photo = gradient_photo()
    image = await engine.image_to_image(spec(), source(photo), 1.0, ignore)
    painted = await engine.text_to_image(spec(), ignore)
    assert mean_difference(pixels(image), np.asarray(photo, np.float32)) > 30
    assert mean_difference(pixels(image), pixels(painted)) < 1


async def test_image_to_image_moves_further_from_the_source_as_strength_grows(
    engine: LocalImageGenerator,
) -> None:
    photo = source(gradient_photo())
    original = np.asarray(gradient_photo(), np.float32)
    distances = [
        mean_difference(pixels(await engine.image_to_image(spec(), photo, strength, ignore)), original)
        for strength in (0.0, 0.3, 0.6, 1.0)
    ]
    assert distances == sorted(distances)
    assert distances[1] > distances[0] + 5


async def test_image_to_image_reports_each_step_and_answers_at_the_specs_size(
    engine: LocalImageGenerator,
) -> None:
    calls: list[tuple[int, int]] = []
    photo = source(gradient_photo(300, 200))
    image = await engine.image_to_image(
        spec(width=256, height=128, steps=5),
        photo,
        0.5,
        lambda done, total, _=None: calls.append((done, total)),
    )
    assert calls == [(done, 5) for done in range(1, 6)]
    assert (image.width, image.height, image.seed, image.extension) == (256, 128, 1234, "jpg")
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == (256, 128)


async def test_image_to_image_is_deterministic(engine: LocalImageGenerator) -> None:
    photo = source(gradient_photo())
    first = await engine.image_to_image(spec(steps=6), photo, 0.6, ignore)
    second = await engine.image_to_image(spec(steps=6), photo, 0.6, ignore)
    assert first.data == second.data


# --- upscale --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
async def test_upscale_multiplies_both_sides_exactly(engine: LocalImageGenerator, scale: int) -> None:
    calls: list[tuple[int, int]] = []
    image = await engine.upscale(
        source(gradient_photo(96, 64)), scale, lambda done, total, _=None: calls.append((done, total))
    )
    assert (image.width, image.height, image.extension, image.seed) == (96 * scale, 64 * scale, "jpg", None)
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", (96 * scale, 64 * scale))
    assert calls
    assert calls[-1][0] == calls[-1][1]


async def test_upscale_resamples_the_same_picture(engine: LocalImageGenerator) -> None:
    photo = gradient_photo(128, 96)
    image = await engine.upscale(source(photo), 2, ignore)
    with Image.open(io.BytesIO(image.data)) as decoded:
        back = decoded.resize(photo.size, Image.Resampling.BOX)
    assert mean_difference(np.asarray(back, np.float32), np.asarray(photo, np.float32)) < 2


def paletted_with_transparency() -> SourceImage:
    image = Image.new("P", (40, 30), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (20, 0, 40, 30))
    return source(image, transparency=0)


def rgba_half_transparent() -> SourceImage:
    image = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # red that must not show through
    image.paste((0, 0, 255, 255), (20, 0, 40, 30))
    return source(image)


def cmyk_jpeg() -> SourceImage:
    return source(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def sixteen_bit_grey() -> SourceImage:
    return source(Image.fromarray(np.full((30, 40), 32896, dtype=np.uint16)))


def grey_with_alpha() -> SourceImage:
    return source(Image.new("LA", (40, 30), (0, 0)))


def animated_gif() -> SourceImage:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return inspect_image_bytes(buffer.getvalue())


def exif_rotated_jpeg() -> SourceImage:
    image = Image.new("RGB", (40, 30), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 40, 15))  # blue on top as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated a quarter turn clockwise
    return source(image, "JPEG", exif=exif, quality=95)


Check = Callable[[np.ndarray[Any, Any]], bool]


def white_left_blue_right(picture: np.ndarray[Any, Any]) -> bool:
    """Transparent pixels were laid on white; the hidden colour under them does not show."""
    return bool(picture[:, :30].mean() > 240 and picture[:, 50:, 2].mean() > 200)


def red(picture: np.ndarray[Any, Any]) -> bool:
    return bool(picture[..., 0].mean() > 200 and picture[..., 2].mean() < 60)


def mid_grey(picture: np.ndarray[Any, Any]) -> bool:
    """16-bit values were scaled to 8 bits, not clipped to white."""
    return bool(110 < picture.mean() < 145)


def white(picture: np.ndarray[Any, Any]) -> bool:
    return bool(picture.mean() > 240)


def blue_on_the_right(picture: np.ndarray[Any, Any]) -> bool:
    """The stored top edge shows on the right once turned a quarter clockwise."""
    return bool(picture[:, 40:, 2].mean() > 200 and picture[:, :20, 2].mean() < 60)


@pytest.mark.parametrize(
    ("make", "size", "looks_right"),
    [
        pytest.param(paletted_with_transparency, (40, 30), white_left_blue_right, id="P-with-transparency"),
        pytest.param(rgba_half_transparent, (40, 30), white_left_blue_right, id="RGBA"),
        pytest.param(cmyk_jpeg, (40, 30), red, id="CMYK-JPEG"),
        pytest.param(sixteen_bit_grey, (40, 30), mid_grey, id="16-bit-PNG"),
        pytest.param(grey_with_alpha, (40, 30), white, id="LA"),
        pytest.param(animated_gif, (40, 30), red, id="animated-GIF-first-frame"),
        pytest.param(exif_rotated_jpeg, (30, 40), blue_on_the_right, id="EXIF-rotated-JPEG"),
    ],
)
async def test_odd_sources_upscale_to_an_upright_rgb_jpeg(
    engine: LocalImageGenerator, make: Callable[[], SourceImage], size: tuple[int, int], looks_right: Check
) -> None:
    image = await engine.upscale(make(), 2, ignore)
    assert (image.width, image.height) == (size[0] * 2, size[1] * 2)
    picture = pixels(image)
    assert picture.shape == (size[1] * 2, size[0] * 2, 3)
    assert looks_right(picture)


async def test_image_to_image_takes_odd_sources_too(engine: LocalImageGenerator) -> None:
    image = await engine.image_to_image(spec(width=128, height=128), rgba_half_transparent(), 0.0, ignore)
    picture = pixels(image)
    assert picture[:, :48].mean() > 235  # the transparent half is white, not the hidden red


async def test_bytes_that_do_not_decode_are_invalid_parameters(engine: LocalImageGenerator) -> None:
    broken = SourceImage(data=b"\x89PNG\r\n\x1a\n not really", width=10, height=10, format="png")
    with pytest.raises(InvalidParameters) as raised:
        await engine.upscale(broken, 2, ignore)
    assert raised.value.details == {"field": "imagePath"}
    with pytest.raises(InvalidParameters) as raised:
        await engine.image_to_image(spec(), broken, 0.5, ignore)
    assert raised.value.details == {"field": "seedImage"}


# --- concurrency ----------------------------------------------------------------------------


def test_the_engine_can_be_made_outside_an_event_loop() -> None:
    engine = LocalImageGenerator(max_workers=2)

    async def use() -> GeneratedImage:
        return await engine.text_to_image(spec(steps=1), ignore)

    assert anyio.run(use).width == 256


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        LocalImageGenerator(max_workers=0)


async def test_no_more_than_max_workers_generations_run_at_once() -> None:
    engine = LocalImageGenerator(max_workers=1)
    lock = threading.Lock()
    running = 0
    most = 0

    def progress(done: int, total: int, preview: object = None) -> None:
        nonlocal running, most
        with lock:
            if done == 1:
                running += 1
                most = max(most, running)
            if done == total:
                running -= 1

    async with anyio.create_task_group() as group:
        for seed in range(1, 5):
            group.start_soon(engine.text_to_image, spec(seed=seed, steps=3), progress)
    assert (most, running) == (1, 0)
