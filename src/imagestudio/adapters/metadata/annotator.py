"""``PillowImageAnnotator``: the ``ImageAnnotator`` port over the container surgery of
``containers.py`` (standard library) and Pillow's EXIF parser.

What a file of ours carries:

- PNG: a ``parameters`` text chunk (AUTOMATIC1111's infotext, ``infotext.py``) and an
  ``imagestudio`` text chunk (our JSON record, ``records.py``);
- JPEG and WebP: EXIF whose ``UserComment`` is the infotext (``UNICODE`` character code, as
  AUTOMATIC1111 writes it) and ``Software`` names imagestudio, and an XMP packet holding both the
  infotext and the JSON (``xmp.py``). A JPEG segment holds at most 64 KiB: when a packet with
  both would not fit, it holds the JSON alone.

The work runs in a worker thread: files are megabytes and are copied once.
"""

from __future__ import annotations

import anyio.to_thread

from imagestudio._version import __version__
from imagestudio.adapters.metadata.containers import (
    MAX_SEGMENT,
    XMP_HEADER,
    Blocks,
    Unreadable,
    embed,
    extract,
    sniff,
)
from imagestudio.adapters.metadata.exif import ExifFields, exif_block, read_exif
from imagestudio.adapters.metadata.infotext import infotext, parse_infotext
from imagestudio.adapters.metadata.records import (
    comfyui_parameters,
    generation_json,
    imagestudio_parameters,
    invokeai_parameters,
    load,
)
from imagestudio.adapters.metadata.xmp import XmpFields, read_xmp, xmp_packet
from imagestudio.domain.model import FoundMetadata, MetadataSource, Provenance
from imagestudio.log import get_logger

__all__ = ["OUR_KEYWORD", "PARAMETERS_KEYWORD", "PillowImageAnnotator", "annotate_image", "read_image"]

log = get_logger(__name__)

PARAMETERS_KEYWORD = "parameters"
"""The PNG keyword of AUTOMATIC1111's infotext."""
OUR_KEYWORD = "imagestudio"
"""The PNG keyword of our JSON record."""
_COMFY_PROMPT = "prompt:"
_COMFY_WORKFLOW = "workflow:"


def annotate_image(data: bytes, made: Provenance, version: str = __version__) -> bytes:
    """``data`` with ``made`` written in (blocking); unchanged if it is not a file we can write."""
    kind = sniff(data)
    if kind is None:
        return data
    text = infotext(made)
    document = generation_json(made, version)
    if kind == "png":
        blocks = Blocks(texts={PARAMETERS_KEYWORD: text, OUR_KEYWORD: document})
    else:
        creator = f"imagestudio {version}"
        exif = exif_block(text, software=creator)
        xmp = xmp_packet(parameters=text, generation=document, creator=creator)
        if kind == "jpeg" and len(XMP_HEADER) + len(xmp) > MAX_SEGMENT:
            xmp = xmp_packet(parameters=None, generation=document, creator=creator)
            if len(XMP_HEADER) + len(xmp) > MAX_SEGMENT:
                xmp = b""
        blocks = Blocks(exif=exif, xmp=xmp)
    try:
        return embed(data, blocks)
    except Unreadable as error:
        log.warning("image metadata not written", format=kind, reason=str(error))
        return data


def read_image(data: bytes) -> list[FoundMetadata]:
    """Every record of generation parameters in ``data``, ours first (blocking)."""
    try:
        found = extract(data)
    except Unreadable:
        return []
    texts = found.texts
    exif = read_exif(found.exif) if found.exif else ExifFields()
    xmp = read_xmp(found.xmp) if found.xmp else XmpFields()
    records: list[FoundMetadata] = []

    ours = texts.get(OUR_KEYWORD) or xmp.generation
    if ours is not None and (parameters := imagestudio_parameters(load(ours))) is not None:
        records.append(FoundMetadata(source=MetadataSource.IMAGESTUDIO, parameters=parameters, raw=ours))

    in_chunk = texts.get(PARAMETERS_KEYWORD)
    infotext_raw = in_chunk if in_chunk is not None else exif.user_comment
    if infotext_raw is not None:
        parameters, has_line = parse_infotext(infotext_raw)
        if in_chunk is not None or has_line:  # any other UserComment is not a record of parameters
            records.append(
                FoundMetadata(source=MetadataSource.AUTOMATIC1111, parameters=parameters, raw=infotext_raw)
            )

    prompt = texts.get("prompt") or _after(exif.model, _COMFY_PROMPT)
    workflow = texts.get("workflow") or _after(exif.make, _COMFY_WORKFLOW)
    if prompt is not None or workflow is not None:
        graph = comfyui_parameters(load(prompt) if prompt else None, load(workflow) if workflow else None)
        raw = prompt if prompt is not None else workflow
        if graph is not None and raw is not None:
            records.append(FoundMetadata(source=MetadataSource.COMFYUI, parameters=graph, raw=raw))

    invoke = texts.get("invokeai_metadata")
    if invoke is not None and (parameters := invokeai_parameters(load(invoke))) is not None:
        records.append(FoundMetadata(source=MetadataSource.INVOKEAI, parameters=parameters, raw=invoke))
    return records


def _after(value: str | None, prefix: str) -> str | None:
    return value[len(prefix) :] if value is not None and value.startswith(prefix) else None


class PillowImageAnnotator:
    """``ImageAnnotator`` for PNG, JPEG and WebP; all work runs in a worker thread."""

    def __init__(self, version: str = __version__) -> None:
        self._version = version

    async def annotate(self, data: bytes, provenance: Provenance) -> bytes:
        return await anyio.to_thread.run_sync(annotate_image, data, provenance, self._version)

    async def read(self, data: bytes) -> list[FoundMetadata]:
        return await anyio.to_thread.run_sync(read_image, data)
