"""How an image was made, written into its file and read back: the ``ImageAnnotator`` adapter.

- ``containers.py``: blocks into and out of PNG, JPEG and WebP, pixel data copied as it is;
- ``exif.py``, ``xmp.py``: the EXIF block and the XMP packet;
- ``infotext.py``: AUTOMATIC1111's ``parameters`` text, written and parsed;
- ``records.py``: the JSON records (ours, ComfyUI's, InvokeAI's) into the API's names;
- ``annotator.py``: :class:`PillowImageAnnotator`, which puts them together.
"""

from __future__ import annotations

from imagestudio.adapters.metadata.annotator import (
    OUR_KEYWORD,
    PARAMETERS_KEYWORD,
    PillowImageAnnotator,
    annotate_image,
    read_image,
)
from imagestudio.adapters.metadata.infotext import infotext, parse_infotext
from imagestudio.adapters.metadata.xmp import NAMESPACE as XMP_NAMESPACE

__all__ = [
    "OUR_KEYWORD",
    "PARAMETERS_KEYWORD",
    "XMP_NAMESPACE",
    "PillowImageAnnotator",
    "annotate_image",
    "infotext",
    "parse_infotext",
    "read_image",
]
