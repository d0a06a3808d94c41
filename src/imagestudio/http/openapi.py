"""What the OpenAPI document says beyond what Litestar infers: request bodies, response headers,
operation ids.

Handlers decode their bodies themselves (strict msgspec, see ``bodies.decode_body``), so Litestar
cannot see the body type. ``documented(Struct)`` returns an ``Operation`` subclass whose request
body refers to the Struct's JSON schema (as msgspec generates it, limits included), a component
named after it (``TextToImageBody`` is ``TextToImageRequest``); :class:`DocumentComponents` puts
those components beside the ones Litestar generates. The same operation class adds the headers of
its answers (``Location`` on a 202, ``Retry-After`` on a 429, ...), which Litestar's
``ResponseSpec`` cannot carry. :func:`operation_id` names an operation once, short and stable, so
generated clients get ``text_to_image``, not ``api_generate_text_to_image_text_to_image``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.enums import HttpMethod
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import QueryParameter

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler
    from litestar.types import Method, OperationIDCreator

__all__ = [
    "DocumentComponents",
    "documented",
    "header",
    "int_query",
    "operation_id",
    "request_components",
    "request_name",
    "schema_from_json_schema",
]

_REF = "#/components/schemas/{name}"

_SIMPLE_KEYS = {
    "title": "title",
    "description": "description",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "default": "default",
    "enum": "enum",
    "const": "const",
    "required": "required",
    "format": "format",
    "minItems": "min_items",
    "maxItems": "max_items",
}


def schema_from_json_schema(node: dict[str, Any]) -> Schema | Reference:
    """Convert a JSON schema dict, whose ``$ref`` point into the components, into Litestar's ``Schema``."""
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    values: dict[str, Any] = {}
    for key, value in node.items():
        if key == "enum" and len(value) == 1 and isinstance(value[0], str):
            # one value (a Literal): a const, which generators read as that literal, where they
            # make an inline enumeration a class of its own (``..._type_1``)
            values["const"], values["type"] = value[0], OpenAPIType.STRING
        elif key in _SIMPLE_KEYS:
            values[_SIMPLE_KEYS[key]] = value
        elif key == "type":
            values["type"] = (
                [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
            )
        elif key == "properties":
            values["properties"] = {name: schema_from_json_schema(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf", "allOf"):
            attr = {"anyOf": "any_of", "oneOf": "one_of", "allOf": "all_of"}[key]
            values[attr] = [schema_from_json_schema(sub) for sub in value]
        elif key == "items":
            values["items"] = schema_from_json_schema(value)
        elif key == "additionalProperties" and isinstance(value, bool):
            values["additional_properties"] = value
    return Schema(**values)


def request_name(struct: type[msgspec.Struct]) -> str:
    """The component name of a request body: ``TextToImageBody`` is ``TextToImageRequest``."""
    return struct.__name__.removesuffix("Body") + "Request"


_REQUEST_BODIES: dict[str, type[msgspec.Struct]] = {}
"""Every request body an operation documents, by component name (filled as routes are declared)."""


def request_components() -> dict[str, Schema | Reference]:
    """The component schemas of every documented request body (and of the types they refer to)."""
    bodies = list(_REQUEST_BODIES.values())
    _, definitions = msgspec.json.schema_components(bodies, ref_template=_REF)
    components: dict[str, Schema | Reference] = {}
    for name, node in definitions.items():
        body = next((struct for struct in bodies if struct.__name__ == name), None)
        if body is not None:
            name = request_name(body)
            node = {**node, "title": name}
        schema = schema_from_json_schema(node)
        if body is not None and isinstance(schema, Schema):
            schema.additional_properties = False  # unknown fields are refused (CONTRACT.md section 2)
            for key, value in getattr(body, "schema_extra", {}).items():  # what msgspec cannot say
                setattr(schema, key, value)
        components[name] = schema
    return components


class DocumentComponents(Components):
    """The document's components: the schemas Litestar generates and those of the request bodies.

    Litestar sets ``components.schemas`` to exactly the schemas its routes generated (an
    assignment in ``litestar/_openapi/plugin.py``), so schemas handed to ``OpenAPIConfig`` are
    dropped; these components add the request bodies' whenever the schemas are set.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "schemas" and value:  # not the empty default the constructor sets
            merged = {**value, **request_components()}
            value = {key: merged[key] for key in sorted(merged)}
        super().__setattr__(name, value)


def header(description: str, *, required: bool = True, **schema: Any) -> OpenAPIHeader:
    """A documented response header whose value is a string (``schema`` adds to its schema)."""
    return OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING, **schema), description=description, required=required
    )


_ERROR_HEADERS: dict[int, dict[str, OpenAPIHeader]] = {
    401: {"WWW-Authenticate": header("`Bearer`: the token to send")},
    429: {"Retry-After": header("Seconds until this client may send again", pattern="^[0-9]+$")},
    503: {
        "Retry-After": header(
            "Seconds to wait, when the server is at its connection limit", required=False, pattern="^[0-9]+$"
        )
    },
}
"""Headers of error answers, whichever route gives them (``http/security.py``, ``http/server.py``)."""


def documented(
    body: type[msgspec.Struct] | None = None,
    *,
    headers: Mapping[int, Mapping[str, OpenAPIHeader]] | None = None,
    description: str | None = None,
    parameters: Sequence[Parameter] = (),
) -> type[Operation]:
    """An ``Operation`` class whose request body is ``body`` as JSON (if any), whose answers of
    the statuses in ``headers`` document those headers (error answers theirs, always), and which
    also documents ``parameters`` (read by the handler itself, not from its signature)."""
    request_body = None
    if body is not None:
        name = request_name(body)
        if _REQUEST_BODIES.setdefault(name, body) is not body:
            raise ValueError(f"two request bodies are named {name}")
        request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=Reference(ref=_REF.format(name=name)))},
            description=description,
            required=True,
        )
    answer_headers = {**_ERROR_HEADERS, **(headers or {})}

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            if request_body is not None:
                self.request_body = request_body
            if parameters:
                self.parameters = [*(self.parameters or []), *parameters]
            for status, response in (self.responses or {}).items():
                if (extra := answer_headers.get(int(status))) and not isinstance(response, Reference):
                    response.headers = {**(response.headers or {}), **extra}

    _Documented.__name__ = f"{body.__name__ if body else 'Route'}Operation"
    return _Documented


def operation_id(name: str) -> OperationIDCreator:
    """The route's ``operationId``: ``name``; a HEAD beside another method gets ``name`` + ``Head``."""

    def create(route_handler: HTTPRouteHandler, http_method: Method, path_components: list[Any]) -> str:
        twin = http_method == HttpMethod.HEAD and len(route_handler.http_methods) > 1
        return f"{name}Head" if twin else name

    return create


def int_query(*, ge: int, le: int, description: str) -> Any:
    """A query parameter of integers from ``ge`` to ``le``, documented with integer bounds (Litestar
    writes ``ge``/``le`` as floats, ``maximum: 500.0``, which generators type as a float)."""
    return QueryParameter(ge=ge, le=le, description=description, schema_extra={"minimum": ge, "maximum": le})


_ROLE = re.compile(r":(?:class|data|func|meth|attr):`~?([^`]+)`")


def described_by(use_case: type) -> str:
    """The route's description: the docstring of the use case it calls, its reStructuredText
    roles and double backticks turned into Markdown code, so the rules are written once."""
    text = inspect.getdoc(use_case) or ""
    return _ROLE.sub(r"`\1`", text).replace("``", "`")
