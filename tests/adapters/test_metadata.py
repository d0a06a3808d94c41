"""The metadata adapter on real files Pillow makes: what it writes, that the pixel data is copied
byte for byte, that Pillow reads the records back, and that it reads them back itself."""

from __future__ import annotations

import io
import json
import struct
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from imagestudio.adapters.metadata import (
    XMP_NAMESPACE,
    annotate_image,
    infotext,
    parse_infotext,
    read_image,
)
from imagestudio.adapters.metadata.exif import user_comment_text
from imagestudio.adapters.metadata.infotext import parse_pairs
from imagestudio.adapters.metadata.xmp import read_xmp
from imagestudio.domain.model import FoundParameters, MetadataSource, Operation, Parameters, Provenance

USER_COMMENT = 0x9286
EXIF_IFD = 0x8769


def made(**changes: Any) -> Provenance:
    values: dict[str, Any] = {
        "operation": Operation.TEXT_TO_IMAGE,
        "prompt": "a lighthouse at dusk, waves: crashing",
        "negative_prompt": "blurry, low quality",
        "parameters": Parameters(
            width=96, height=64, steps=20, cfg_scale=7.5, seed=1234, model="runware:100@1", engine="local"
        ),
        "seed": 1234,
        "width": 96,
        "height": 64,
        "task_id": "task-1",
    }
    return Provenance(**(values | changes))


def _picture(mode: str, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A picture with some structure, so encoders produce real data (not one flat colour)."""
    image = Image.new("RGBA", size)
    image.putdata(
        [
            (x * 5 % 256, y * 7 % 256, (x * y) % 256, (x + y) * 3 % 256)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    return image.convert(mode)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Each file Pillow makes, and the bytes a decoder reads its pixels from (found by the test's own
# walk of the container, not the adapter's).


def _png_data(data: bytes) -> bytes:
    at, parts = 8, []
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        if data[at + 4 : at + 8] in (b"IHDR", b"PLTE", b"tRNS", b"IDAT"):
            parts.append(data[at + 4 : at + 12 + length])
        at += 12 + length
    return b"".join(parts)


def _jpeg_data(data: bytes) -> bytes:
    """Everything from the first frame header on (tables, frame, scans): what a decoder decodes."""
    at = 2
    while data[at + 1] in range(0xE0, 0xF0) or data[at + 1] == 0xFE:  # APPn and COM segments
        (length,) = struct.unpack_from(">H", data, at + 2)
        at += 2 + length
    return data[at:]


def _webp_data(data: bytes) -> bytes:
    at, parts = 12, []
    while at + 8 <= len(data):
        kind, (size,) = data[at : at + 4], struct.unpack_from("<I", data, at + 4)
        if kind in (b"VP8 ", b"VP8L", b"ALPH", b"ICCP"):
            parts.append(data[at : at + 8 + size])
        at += 8 + size + (size & 1)
    return b"".join(parts)


FILES: dict[str, tuple[Callable[[], bytes], Callable[[bytes], bytes]]] = {
    "png-rgb": (lambda: _encode(_picture("RGB"), "PNG"), _png_data),
    "png-rgba": (lambda: _encode(_picture("RGBA"), "PNG"), _png_data),
    "png-palette": (lambda: _encode(_picture("RGB").quantize(16), "PNG", transparency=0), _png_data),
    "png-16-bit-grey": (lambda: _encode(_picture("L").convert("I;16"), "PNG"), _png_data),
    "png-with-text-of-its-own": (
        lambda: _encode(_picture("RGB"), "PNG", pnginfo=_pnginfo(Software="elsewhere", parameters="old")),
        _png_data,
    ),
    "jpeg": (lambda: _encode(_picture("RGB"), "JPEG", quality=90), _jpeg_data),
    "jpeg-progressive-grey": (lambda: _encode(_picture("L"), "JPEG", progressive=True), _jpeg_data),
    "jpeg-with-exif-and-icc": (
        lambda: _encode(_picture("RGB"), "JPEG", exif=_orientation_exif(), icc_profile=b"\x00" * 128),
        _jpeg_data,
    ),
    "webp-lossy": (lambda: _encode(_picture("RGB"), "WEBP", quality=80), _webp_data),
    "webp-lossy-alpha": (lambda: _encode(_picture("RGBA"), "WEBP", quality=80), _webp_data),
    "webp-lossless": (lambda: _encode(_picture("RGB"), "WEBP", lossless=True), _webp_data),
    "webp-lossless-alpha": (lambda: _encode(_picture("RGBA"), "WEBP", lossless=True), _webp_data),
    "webp-with-exif": (
        lambda: _encode(_picture("RGB"), "WEBP", quality=80, exif=_orientation_exif()),
        _webp_data,
    ),
}


def _pnginfo(**texts: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    return info


def _orientation_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "SomeCamera"
    return exif.tobytes()


def _expected_record(provenance: Provenance) -> dict[str, Any]:
    return {
        "operation": "text-to-image",
        "prompt": provenance.prompt,
        "negativePrompt": provenance.negative_prompt,
        "parameters": {
            "width": 96,
            "height": 64,
            "steps": 20,
            "cfgScale": 7.5,
            "seed": 1234,
            "model": "runware:100@1",
            "engine": "local",
        },
        "seed": 1234,
        "width": 96,
        "height": 64,
        "taskId": "task-1",
        "version": "0.1.0",
    }


def _xmp_property(packet: bytes, name: str) -> str | None:
    start = packet.index(b"<x:xmpmeta")
    end = packet.index(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")
    root = ElementTree.fromstring(packet[start:end])  # noqa: S314 - our own packet, just written
    element = root.find(f".//{{{XMP_NAMESPACE}}}{name}")
    return None if element is None else element.text


@pytest.mark.parametrize("name", sorted(FILES))
def test_an_annotated_file_has_the_same_pixel_data_and_pillow_reads_both_records(name: str) -> None:
    build, pixel_data = FILES[name]
    original = build()
    provenance = made()

    annotated = annotate_image(original, provenance)

    assert annotated != original
    assert pixel_data(annotated) == pixel_data(original)  # byte for byte, not re-encoded
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(annotated)) as after:
        assert (after.format, after.mode, after.size) == (before.format, before.mode, before.size)
        assert after.tobytes() == before.tobytes()
        if after.format == "PNG":
            assert isinstance(after, PngImagePlugin.PngImageFile)
            assert after.text["parameters"] == infotext(provenance)
            assert json.loads(after.text["imagestudio"]) == _expected_record(provenance)
        else:
            comment = after.getexif().get_ifd(EXIF_IFD)[USER_COMMENT]
            assert comment == b"UNICODE\x00" + infotext(provenance).encode("utf-16-be")
            assert after.getexif()[0x0131] == "imagestudio 0.1.0"
            packet = after.info["xmp"]
            assert _xmp_property(packet, "parameters") == infotext(provenance)
            assert json.loads(_xmp_property(packet, "generation") or "") == _expected_record(provenance)
    found = read_image(annotated)
    assert [record.source for record in found] == [MetadataSource.IMAGESTUDIO, MetadataSource.AUTOMATIC1111]
    ours, theirs = found
    assert json.loads(ours.raw) == _expected_record(provenance)
    assert ours.parameters == FoundParameters(
        operation="text-to-image",
        prompt=provenance.prompt,
        negative_prompt=provenance.negative_prompt,
        width=96,
        height=64,
        steps=20,
        cfg_scale=7.5,
        seed=1234,
        model="runware:100@1",
        engine="local",
        task_id="task-1",
        version="0.1.0",
    )
    assert theirs.raw == infotext(provenance)
    assert (theirs.parameters.prompt, theirs.parameters.negative_prompt) == (
        provenance.prompt,
        provenance.negative_prompt,
    )


@pytest.mark.parametrize("name", ["png-rgb", "jpeg", "webp-lossy", "webp-lossless-alpha"])
def test_annotating_again_replaces_the_records_instead_of_adding_more(name: str) -> None:
    original = FILES[name][0]()
    once = annotate_image(original, made(prompt="the first prompt"))
    twice = annotate_image(once, made(prompt="the second prompt"))

    assert b"the first prompt" not in twice
    assert twice.count(b"imagestudio 0.1.0") == once.count(b"imagestudio 0.1.0")
    found = read_image(twice)
    assert [record.parameters.prompt for record in found] == ["the second prompt", "the second prompt"]
    with Image.open(io.BytesIO(twice)) as image:
        assert image.tobytes() == Image.open(io.BytesIO(original)).tobytes()


def test_a_file_of_ours_keeps_the_other_texts_it_had() -> None:
    original = FILES["png-with-text-of-its-own"][0]()
    with Image.open(io.BytesIO(annotate_image(original, made()))) as image:
        assert isinstance(image, PngImagePlugin.PngImageFile)
        assert image.text["Software"] == "elsewhere"
        assert image.text["parameters"] == infotext(made())  # the old one is gone, not first


@pytest.mark.parametrize("name", ["png-rgb", "jpeg", "webp-lossy"])
def test_text_beyond_latin_1_and_beyond_the_basic_plane_survives(name: str) -> None:
    provenance = made(prompt="夕暮れの灯台 🌅 & <waves>", negative_prompt="ぼやけ\r\nnoise")
    annotated = annotate_image(FILES[name][0](), provenance)

    ours, theirs = read_image(annotated)
    assert (ours.parameters.prompt, ours.parameters.negative_prompt) == (
        "夕暮れの灯台 🌅 & <waves>",
        "ぼやけ\r\nnoise",
    )
    assert theirs.parameters.prompt == "夕暮れの灯台 🌅 & <waves>"
    with Image.open(io.BytesIO(annotated)) as image:
        if image.format == "PNG":
            assert isinstance(image, PngImagePlugin.PngImageFile)
            assert image.text["parameters"].startswith("夕暮れの灯台 🌅")  # an iTXt chunk, UTF-8


def test_the_longest_prompts_still_fit_a_jpeg() -> None:
    """Two 3000-character prompts of characters that cost the most bytes in XML and in UTF-8."""
    provenance = made(prompt="&" * 1500 + "🌅" * 1500, negative_prompt="<" * 1500 + "夕" * 1500)
    annotated = annotate_image(FILES["jpeg"][0](), provenance)

    found = read_image(annotated)
    assert found[0].source is MetadataSource.IMAGESTUDIO
    assert found[0].parameters.prompt == provenance.prompt
    assert found[1].parameters.negative_prompt == provenance.negative_prompt


@pytest.mark.parametrize(
    "data",
    [
        _encode(_picture("RGB"), "GIF"),
        _encode(_picture("RGB"), "BMP"),
        _encode(_picture("RGB"), "PNG")[:-40],  # cut before IEND
        _encode(_picture("RGB"), "JPEG")[:20],
        b"RIFF\x04\x00\x00\x00WEBP",
        b"not an image at all",
    ],
    ids=["gif", "bmp", "truncated-png", "truncated-jpeg", "empty-webp", "text"],
)
def test_a_file_it_cannot_write_comes_back_unchanged_and_reads_as_no_record(data: bytes) -> None:
    assert annotate_image(data, made()) == data
    assert read_image(data) == []


@pytest.mark.parametrize("name", sorted(set(FILES) - {"png-with-text-of-its-own"}))
def test_a_file_without_records_reads_as_none(name: str) -> None:
    assert read_image(FILES[name][0]()) == []


def test_a_parameters_text_chunk_is_a_record_even_without_a_parameters_line() -> None:
    """AUTOMATIC1111's keyword says what the text is; a UserComment has to show it."""
    (found,) = read_image(FILES["png-with-text-of-its-own"][0]())
    assert (found.source, found.raw, found.parameters) == (
        MetadataSource.AUTOMATIC1111,
        "old",
        FoundParameters(prompt="old"),
    )


# --- AUTOMATIC1111's infotext --------------------------------------------------------------


def test_the_infotext_is_automatic1111s_format() -> None:
    assert infotext(made()) == (
        "a lighthouse at dusk, waves: crashing\n"
        "Negative prompt: blurry, low quality\n"
        'Steps: 20, CFG scale: 7.5, Seed: 1234, Size: 96x64, Model: "runware:100@1"'
    )


def test_the_infotext_leaves_out_what_is_not_known_and_adds_what_the_operation_used() -> None:
    image_to_image = made(
        operation=Operation.IMAGE_TO_IMAGE,
        negative_prompt=None,
        seed=None,
        parameters=Parameters(
            width=96,
            height=64,
            steps=None,
            cfg_scale=3.0,
            seed=None,
            model="flux",
            engine="runware",
            strength=0.35,
        ),
    )
    assert infotext(image_to_image) == (
        "a lighthouse at dusk, waves: crashing\n"
        "CFG scale: 3.0, Size: 96x64, Model: flux, Denoising strength: 0.35"
    )
    upscale = made(
        operation=Operation.UPSCALE,
        prompt="",
        negative_prompt=None,
        width=192,
        height=128,
        parameters=Parameters(
            width=192, height=128, steps=None, cfg_scale=None, seed=1234, model=None, engine="local", scale=2
        ),
    )
    assert infotext(upscale) == "Seed: 1234, Size: 192x128, Postprocess upscale by: 2"


def test_the_documented_automatic1111_example_parses() -> None:
    text = (
        "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup,"
        " by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate\n"
        "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x768, Model hash: 45dee52b,"
        ' Model: sd15, Lora hashes: "add_detail: 7c6bad76eb54, film: 12ab", Denoising strength: 0.4,'
        " Schedule type: Karras, Version: v1.9.4"
    )
    parameters, has_line = parse_infotext(text)
    assert has_line
    assert parameters == FoundParameters(
        prompt=text.split("\n")[0],
        negative_prompt="ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured",
        steps=20,
        sampler="Euler a",
        scheduler="Karras",
        cfg_scale=7.0,
        seed=965400086,
        width=512,
        height=768,
        model="sd15",
        strength=0.4,
        version="v1.9.4",
    )
    assert parse_pairs(text.split("\n")[2])["Lora hashes"] == "add_detail: 7c6bad76eb54, film: 12ab"


def test_prompts_over_several_lines_and_a_text_without_parameters() -> None:
    parameters, _ = parse_infotext(
        "line one\nline two\nNegative prompt: bad\nworse\nSteps: 5, Seed: 9, Size: 64x64"
    )
    assert (parameters.prompt, parameters.negative_prompt) == ("line one\nline two", "bad\nworse")
    assert (parameters.steps, parameters.seed) == (5, 9)

    only_prompt, has_line = parse_infotext("just a prompt, Steps: 3")
    assert not has_line
    assert only_prompt == FoundParameters(prompt="just a prompt, Steps: 3")


def test_a_hostile_parameters_line_is_read_in_linear_time() -> None:
    started = time.perf_counter()
    for line in ("a" * 2_000_000, "a:" * 1_000_000, 'k: "' + "\\" * 1_000_000, ("key " * 100 + ", ") * 5000):
        parse_infotext("prompt\n" + line)
    assert time.perf_counter() - started < 5


# --- EXIF and XMP details ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"UNICODE\x00" + "Steps: 20 夕".encode("utf-16-be"), "Steps: 20 夕"),
        (b"UNICODE\x00" + "Steps: 20 夕".encode("utf-16-le"), "Steps: 20 夕"),
        (b"UNICODE\x00\xff\xfe" + "le".encode("utf-16-le"), "le"),
        (b"ASCII\x00\x00\x00Steps: 20\x00\x00", "Steps: 20"),
        (b"\x00" * 8 + "ütf".encode(), "ütf"),
        (b"UNICODE\x00", None),
    ],
)
def test_a_user_comment_is_decoded_by_its_character_code(value: bytes, text: str | None) -> None:
    assert user_comment_text(value) == text


def test_an_xmp_packet_with_a_document_type_is_not_parsed() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:imagestudio="' + XMP_NAMESPACE.encode() + b'">'
        b"<imagestudio:generation>&b;</imagestudio:generation></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert read_xmp(bomb).generation is None
    assert read_xmp(bomb.replace(b"&b;", b"{}").split(b"]>", 1)[1]).generation == "{}"


def test_our_properties_are_read_as_attributes_too() -> None:
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:is="' + XMP_NAMESPACE.encode() + b'" is:generation="{&quot;a&quot;: 1}"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    assert read_xmp(packet).generation == '{"a": 1}'


# --- whatever a file holds, reading it never fails ------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    name=st.sampled_from(["png-rgb", "jpeg", "webp-lossy", "webp-lossless-alpha"]),
    cuts=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=8)), max_size=4),
)
def test_a_damaged_annotated_file_reads_without_failing(name: str, cuts: list[tuple[int, bytes]]) -> None:
    data = bytearray(annotate_image(FILES[name][0](), made()))
    for at, junk in cuts:
        at %= len(data)
        data[at : at + len(junk)] = junk
    found = read_image(bytes(data))
    assert all(isinstance(record.raw, str) for record in found)
    assert annotate_image(bytes(data), made()) is not None  # writes, or hands the bytes back


@settings(max_examples=300, deadline=None, database=None)
@given(prompt=json_values, workflow=json_values, ours=json_values, invoke=json_values)
def test_records_of_any_shape_read_without_failing(
    prompt: Any, workflow: Any, ours: Any, invoke: Any
) -> None:
    if isinstance(workflow, dict):
        workflow = {
            "nodes": [workflow, {"id": 1, "type": "KSampler", "inputs": [workflow]}],
            "links": [workflow],
        }
    if isinstance(prompt, dict):
        prompt = {"1": {"class_type": "KSampler", "inputs": prompt}, "2": prompt}
    texts = {
        "prompt": json.dumps(prompt),
        "workflow": json.dumps(workflow),
        "imagestudio": json.dumps(ours),
        "invokeai_metadata": json.dumps(invoke),
        "parameters": json.dumps(prompt),
    }
    found = read_image(_encode(_picture("RGB", (8, 8)), "PNG", pnginfo=_pnginfo(**texts)))
    assert {record.source for record in found} <= set(MetadataSource)
