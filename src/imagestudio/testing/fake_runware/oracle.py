"""Runware's own schemas as an oracle: is this task body one Runware's schema bundle accepts?

The schemas come from Runware's official SDK (``runware-sdk`` on PyPI, a test dependency):
``runware.types.task_map`` is generated from Runware's schema bundle (``SCHEMAS_VERSION``) and
holds one ``TypedDict`` of parameters per curated model (its ``model`` key is a ``Literal`` of
the model's AIR), per architecture (``SdxlArchParams``...) and per operation or utility task
(``UpscaleImageParams``, ``GetResponseParams``, ``ModelSearchParams``, ``ImageUploadParams``).

How the oracle reads a ``TypedDict`` (what the generator means, not what Python's typing says):
the classes are declared ``total=False`` with ``from __future__ import annotations``, so Python's
``__required_keys__`` is always empty. The generator marks optional keys ``NotRequired[...]``;
every other key is required (``ImageUploadParams`` is ``taskType``, ``taskUUID``, ``image``).

A task is checked against the schema of its model when there is one, else (an ``imageInference``
task for a community model) against the architecture schemas, any of which may accept it, else
against its operation's schema. Checks: no unknown key, every required key, every value of the
declared JSON type, every ``Literal`` value inside its set. The schemas say nothing of the keys
inside ``inputs`` (``dict[str, object]``) nor of ranges; those are the fake's own, cited there.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Final, Literal, NotRequired

__all__ = [
    "Field",
    "Schema",
    "Violation",
    "known_models",
    "schema_for",
    "schema_version",
    "violations",
]

_UTILITY_SCHEMAS: Final = {
    "getResponse": "GetResponseParams",
    "imageUpload": "ImageUploadParams",
    "modelSearch": "ModelSearchParams",
    "accountManagement": "AccountManagementParams",
}
_OPERATION_SCHEMAS: Final = {
    "upscale": "UpscaleImageParams",
    "imageInference": "ImageInferenceParams",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a schema: whether it is required, its JSON type, its allowed values if enumerated."""

    name: str
    required: bool
    kinds: tuple[type, ...]
    """Python types of the decoded JSON value (``int`` also counts as ``float``)."""
    choices: tuple[Any, ...] | None
    """The ``Literal`` values, when the schema enumerates them."""


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    fields: dict[str, Field]

    @property
    def required(self) -> frozenset[str]:
        return frozenset(name for name, field in self.fields.items() if field.required)

    def choices(self, name: str) -> tuple[Any, ...] | None:
        field = self.fields.get(name)
        return field.choices if field is not None else None


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a task does not pass: Runware-style ``code`` and the offending ``parameter``."""

    code: str
    parameter: str
    message: str


def _task_map() -> Any:
    from runware.types import task_map  # the SDK is a test dependency, imported on first use

    return task_map


def schema_version() -> str:
    return str(_task_map().SCHEMAS_VERSION)


def _kinds_and_choices(hint: Any) -> tuple[tuple[type, ...], tuple[Any, ...] | None]:
    origin = typing.get_origin(hint)
    if origin is Literal:
        values = typing.get_args(hint)
        return tuple({type(value) for value in values}), values
    if origin in (typing.Union, types.UnionType):
        kinds: list[type] = []
        choices: list[Any] | None = []
        for arm in typing.get_args(hint):
            arm_kinds, arm_choices = _kinds_and_choices(arm)
            kinds.extend(arm_kinds)
            if arm_choices is None:
                choices = None
            elif choices is not None:
                choices.extend(arm_choices)
        return tuple(dict.fromkeys(kinds)), tuple(choices) if choices is not None else None
    if origin is not None:
        return (origin,), None
    if hint is object or hint is Any:
        return (object,), None
    return (hint,), None


def _schema(cls: type) -> Schema:
    fields: dict[str, Field] = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        required = typing.get_origin(hint) is not NotRequired
        inner = typing.get_args(hint)[0] if not required else hint
        kinds, choices = _kinds_and_choices(inner)
        fields[name] = Field(name=name, required=required, kinds=kinds, choices=choices)
    return Schema(name=cls.__name__, fields=fields)


@functools.cache
def _index() -> tuple[dict[str, Schema], dict[str, Schema], dict[str, Schema]]:
    """(schemas by model AIR, architecture schemas by class name, schemas by class name)."""
    module = _task_map()
    by_model: dict[str, Schema] = {}
    by_arch: dict[str, Schema] = {}
    by_name: dict[str, Schema] = {}
    for name, value in vars(module).items():
        if not isinstance(value, type) or not (name.endswith("Params") or "ParamsVariant" in name):
            continue
        schema = _schema(value)
        by_name[name] = schema
        model = schema.fields.get("model")
        if model is not None and model.choices and len(model.choices) == 1:
            by_model.setdefault(str(model.choices[0]), schema)
        elif name.endswith("ArchParams"):
            by_arch[name] = schema
    return by_model, by_arch, by_name


def known_models() -> dict[str, str]:
    """Every model of the bundled registry: AIR -> task type (``imageInference``, ``upscale``...)."""
    return {air: entry.task_type for air, entry in _task_map().models.items()}


def schema_for(task: dict[str, Any]) -> list[Schema]:
    """The schemas a task may satisfy (any one of them suffices), most specific first."""
    by_model, by_arch, by_name = _index()
    task_type = task.get("taskType")
    if task_type in _UTILITY_SCHEMAS:
        return [by_name[_UTILITY_SCHEMAS[task_type]]]
    model = task.get("model")
    if isinstance(model, str) and model in by_model:
        return [by_model[model]]
    if task_type == "imageInference":
        return sorted(by_arch.values(), key=lambda schema: schema.name != "SdxlArchParams")
    if isinstance(task_type, str) and task_type in _OPERATION_SCHEMAS:
        return [by_name[_OPERATION_SCHEMAS[task_type]]]
    return []


def _fits(value: Any, field: Field) -> bool:
    if field.choices is not None:
        return any(value == choice and type(value) is type(choice) for choice in field.choices) or (
            # a JSON 2.0 is the number 2: Literal[2] accepts it, as JSON Schema's enum would
            not isinstance(value, bool)
            and isinstance(value, float)
            and value.is_integer()
            and int(value) in field.choices
        )
    for kind in field.kinds:
        if kind is object:
            return True
        if kind is bool:
            if isinstance(value, bool):
                return True
        elif kind is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif isinstance(value, kind):
            return True
    return False


def _against(task: dict[str, Any], schema: Schema) -> list[Violation]:
    found: list[Violation] = []
    for name, value in task.items():
        field = schema.fields.get(name)
        if field is None:
            found.append(
                Violation("unknownParameter", name, f"'{name}' is not a parameter of {schema.name}.")
            )
        elif not _fits(value, field):
            allowed = (
                f"one of {', '.join(repr(choice) for choice in field.choices)}"
                if field.choices is not None
                else " or ".join(kind.__name__ for kind in field.kinds)
            )
            found.append(
                Violation(
                    f"invalid{name[:1].upper()}{name[1:]}",
                    name,
                    f"Invalid value for '{name}': it must be {allowed} ({schema.name}).",
                )
            )
    for name in sorted(schema.required - task.keys()):
        found.append(
            Violation(
                f"missing{name[:1].upper()}{name[1:]}",
                name,
                f"Missing required parameter '{name}' ({schema.name}).",
            )
        )
    return found


def violations(task: dict[str, Any]) -> list[Violation]:
    """Everything in ``task`` that Runware's schemas do not accept (empty: it passes)."""
    schemas = schema_for(task)
    if not schemas:
        return [
            Violation(
                "invalidTaskType",
                "taskType",
                f"No schema of bundle {schema_version()} has taskType {task.get('taskType')!r}.",
            )
        ]
    best: list[Violation] | None = None
    for schema in schemas:
        found = _against(task, schema)
        if not found:
            return []
        if best is None or len(found) < len(best):
            best = found
    assert best is not None
    return best
