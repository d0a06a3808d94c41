"""Request bodies from bytes to Structs: read whole, decoded strictly, off the event loop when big.

Bodies are decoded strictly (``"512"`` is not an integer), see :func:`decode_body`; request bodies
are flat objects of scalars and lists of scalars (the decoder relies on it). Big bodies are
decoded off the event loop (:func:`prepare_body`). The Structs they become are
``http/schemas.py``'s (and ``http/gallery.py``'s).
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import msgspec
import msgspec.inspect
from anyio import CapacityLimiter
from msgspec import UNSET, Struct, UnsetType

from imagestudio.domain.errors import InvalidParameters, InvalidPrompt

__all__ = ["OFF_LOOP_BYTES", "decode_body", "prepare_body", "read_body"]

B = TypeVar("B", bound=Struct)

_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:missing required field|unknown field) `([^`]+)`")
_NESTED = re.compile(r"got `(array|object)` - at `\$\.([^`.\[]+)(\[[0-9]+\])?`$")
_EMPTY: dict[str, Any] = {"array": [], "object": {}}

OFF_LOOP_BYTES = 256 * 1024
"""Bodies at least this big are decoded and validated in a worker thread (:func:`prepare_body`)."""

T = TypeVar("T")


def decode_body(raw: bytes | bytearray, body_type: type[B]) -> B:
    """Decode a JSON request body strictly into ``body_type``.

    Malformed JSON, a wrong type, an unknown field or an out-of-range value is
    ``InvalidParameters`` naming the field; a missing or null prompt is ``InvalidPrompt``.

    Every body is one flat object of JSON scalars (and, for fields that take a list, arrays of
    scalars), so it is read in two steps that never build more than that: first into a twin of
    ``body_type`` whose fields take any scalar (an unknown field, an array or an object is
    refused where it starts, however big or deep it is: nothing nested deeper is ever decoded),
    then the values are converted into ``body_type`` with its limits.
    """
    if not raw or raw.isspace():
        raise InvalidParameters("Request body must be a JSON object")
    try:
        scalars = msgspec.json.decode(raw, type=_scalar_twin(body_type), strict=True)
    except msgspec.ValidationError as error:
        raise _invalid(_in_own_words(error, body_type)) from error
    except msgspec.DecodeError as error:
        raise InvalidParameters(f"Malformed JSON: {error}") from error
    # JSON has one number type: 512.0 is the integer 512 (as JSON Schema says), 512.5 and "512" are not
    values = {
        field.encode_name: int(value) if isinstance(value, float) and value.is_integer() else value
        for field in msgspec.structs.fields(body_type)
        if (value := getattr(scalars, field.name)) is not UNSET
    }
    try:
        return msgspec.convert(values, type=body_type, strict=True)
    except msgspec.ValidationError as error:
        raise _invalid(error) from error


_Scalar = str | int | float | bool | None


def _takes_a_list(field: msgspec.structs.FieldInfo) -> bool:
    def lists(kind: msgspec.inspect.Type) -> bool:
        if isinstance(kind, msgspec.inspect.Metadata):
            return lists(kind.type)
        if isinstance(kind, msgspec.inspect.UnionType):
            return any(lists(member) for member in kind.types)
        return isinstance(kind, msgspec.inspect.ListType)

    return lists(msgspec.inspect.type_info(field.type))


@functools.cache
def _scalar_twin(body_type: type[Struct]) -> type[Struct]:
    """A Struct with ``body_type``'s wire names whose every field takes any JSON scalar, and a
    flat array of them where ``body_type`` takes a list.

    ``msgspec.structs.fields`` lists inherited fields too, so a body built by Struct inheritance
    (the two diffusion bodies) gets every field of its twin."""
    fields = msgspec.structs.fields(body_type)
    twin: type[Struct] = msgspec.defstruct(
        f"{body_type.__name__}Scalars",
        [
            (field.name, (_Scalar | list[_Scalar] if _takes_a_list(field) else _Scalar) | UnsetType, UNSET)
            for field in fields
        ],
        kw_only=True,
        forbid_unknown_fields=True,
        rename={field.name: field.encode_name for field in fields},
    )
    return twin


def _in_own_words(error: msgspec.ValidationError, body_type: type[Struct]) -> msgspec.ValidationError:
    """The twin's refusal of a nested value, as ``body_type`` says it ("Expected `str`, got `array`")."""
    nested = _NESTED.search(str(error))
    if nested is None:
        return error
    kind, name, in_a_list = nested.groups()
    try:
        msgspec.convert({name: [_EMPTY[kind]] if in_a_list else _EMPTY[kind]}, type=body_type, strict=True)
    except msgspec.ValidationError as own:
        if _AT_PATH.search(str(own)):
            return own
    return error


def _invalid(error: msgspec.ValidationError) -> InvalidParameters | InvalidPrompt:
    text = str(error)
    at = _AT_PATH.search(text)
    named = _NAMED_FIELD.search(text)
    path = at.group(1) if at else (named.group(1) if named else "")
    field = path.split(".")[0].split("[")[0] or None
    reason = _AT_PATH.sub("", text)
    if field == "prompt" and ("missing required field" in text or "got `null`" in text):
        return InvalidPrompt("Prompt is required", details={"field": "prompt"})
    message = f"Invalid value for {field}: {reason}" if field and at else reason
    if text.startswith("Expected `object`"):
        message, field = "Request body must be a JSON object", None
    return InvalidParameters(message, field=field)


async def prepare_body(
    raw: bytes | bytearray, prepare: Callable[[bytes | bytearray], T], limiter: CapacityLimiter | None = None
) -> T:
    """``prepare(raw)`` (decode and validate a body): at once for a small body, in a worker thread
    (at most ``limiter``'s number at a time) for one of :data:`OFF_LOOP_BYTES` or more, so the
    event loop keeps answering other requests while big bodies are read."""
    if len(raw) < OFF_LOOP_BYTES:
        return prepare(raw)
    return await anyio.to_thread.run_sync(prepare, raw, limiter=limiter)


async def read_body(stream: AsyncIterator[bytes], length: int | None = None) -> bytes | bytearray:
    """The whole body from a request's ``stream()``.

    With its ``Content-Length`` known, the chunks are copied once into a buffer of that size (no
    growing buffer copied again and again, no list of chunks joined into a second copy); the
    framework has already refused a length over the body limit.
    """
    if length is None:
        return b"".join([chunk async for chunk in stream])
    body = bytearray(length)
    filled = 0
    async for chunk in stream:
        end = filled + len(chunk)
        if end > length:  # more than announced (the server should have refused it): keep it all
            body[filled:] = chunk
        else:
            body[filled:end] = chunk
        filled = end
    if filled < length:
        del body[filled:]
    return body
