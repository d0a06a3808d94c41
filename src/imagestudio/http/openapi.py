"""OpenAPI documentation of the strictly decoded request bodies.

Handlers decode their bodies themselves (strict msgspec, see ``schemas.decode_body``), so Litestar
cannot see the body type. ``documented_body(Struct)`` returns an ``Operation`` subclass that puts
the Struct's JSON schema (as msgspec generates it, limits included) into the operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

__all__ = ["documented_body", "schema_from_json_schema"]

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


def schema_from_json_schema(node: dict[str, Any]) -> Schema:
    """Convert a self-contained JSON schema dict (no ``$ref``) into Litestar's ``Schema``."""
    values: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SIMPLE_KEYS:
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


def _struct_schema(struct: type[msgspec.Struct]) -> Schema:
    document = msgspec.json.schema(struct)
    definitions = document.get("$defs", {})
    node = definitions[struct.__name__] if "$ref" in document else document
    schema = schema_from_json_schema(node)
    schema.additional_properties = False  # unknown fields are refused (CONTRACT.md section 2)
    return schema


def documented_body(struct: type[msgspec.Struct], description: str | None = None) -> type[Operation]:
    """An ``Operation`` class whose request body is ``struct`` as JSON."""
    body = RequestBody(
        content={"application/json": OpenAPIMediaType(schema=_struct_schema(struct))},
        description=description,
        required=True,
    )

    @dataclass
    class _Documented(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    _Documented.__name__ = f"{struct.__name__}Operation"
    return _Documented
