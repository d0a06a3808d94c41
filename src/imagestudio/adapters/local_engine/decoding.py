"""Input decoding: an input image's bytes to upright 8-bit sRGB, within the decode budget.

A large input is cropped to the aspect it is wanted in and shrunk before it is converted, so
a huge or hostile image never costs its full size in RGB.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageCms, ImageOps

from imagestudio.adapters.images import ACCEPTED_FORMATS, DECODE_BUDGET, decoded_bytes, upright_size
from imagestudio.adapters.local_engine.palette import F32
from imagestudio.domain.errors import InvalidParameters


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert through the embedded ICC profile, if there is a usable one."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    return converted if converted is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded image as upright 8-bit RGB; transparency is laid on white."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        values: F32 = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and peak > 255):
            values = values / 257
        elif mode == "F" and peak <= 1.0:
            values = values * 255
        grey = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8))
        return grey.convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa") or (mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    image = _to_srgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """Reduce a decoded image by a whole factor while both its sides stay at least ``side``.

    Done before any conversion, so a 64-million-pixel palette or 1-bit input is never expanded to
    full-size RGB just to be scaled down afterwards.
    """
    factor = min(image.size) // side
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce() does not take ("1", "P"): nearest neighbour keeps them exact
        return image.resize((image.width // factor, image.height // factor), Image.Resampling.NEAREST)


def _crop_to_aspect(image: Image.Image, fit: tuple[int, int]) -> Image.Image:
    """The centred part of ``image`` with the aspect of ``fit`` (as displayed), which is all that
    ``ImageOps.fit`` keeps: cutting it out first lets a very tall or wide input be dropped at once
    rather than converted whole. ``image`` itself when little would be cut."""
    width, height = image.size
    target_w, target_h = fit
    if upright_size(image) != (width, height):  # the picture is turned a quarter when displayed
        target_w, target_h = target_h, target_w
    if width * target_h > height * target_w:  # wider than the target: keep the middle columns
        keep = max(1, math.ceil(height * target_w / target_h))
        box = ((width - keep) // 2, 0, (width - keep) // 2 + keep, height)
    else:
        keep = max(1, math.ceil(width * target_h / target_w))
        box = (0, (height - keep) // 2, width, (height - keep) // 2 + keep)
    if (box[2] - box[0]) * (box[3] - box[1]) * 2 > width * height:
        return image
    return image.crop(box)


def _load_rgb(data: bytes, field_name: str, fit: tuple[int, int] | None = None) -> Image.Image:
    """Decode an input image (its first frame) to RGB; ``fit`` lets a large one shrink first.

    The decode takes its size from the process's :data:`DECODE_BUDGET` first (waiting while other
    decodes hold it), and everything at full size is done and freed before that is given back.
    """
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
            # either side may end up as the width once the EXIF orientation is applied
            side = max(fit) if fit is not None else 0
            if side and opened.format in ("JPEG", "MPO"):
                opened.draft(None, (side, side))  # decode at a reduced scale when much larger
            with DECODE_BUDGET.take(decoded_bytes(opened, copy=4)):
                try:
                    opened.load()
                    image: Image.Image = _crop_to_aspect(opened, fit) if fit is not None else opened
                    image = _shrink(image, side) if side else image
                    return _to_rgb(image)  # always a new image, so closing the file is safe
                finally:
                    opened.close()  # the full-size pixels go before the budget is given back
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise InvalidParameters(f"{field_name} could not be decoded as an image", field=field_name) from error
