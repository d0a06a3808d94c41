"""The checks of one task: Runware's own schemas first, then the rules the schemas leave open.

What it checks, and where each rule comes from:

- every task against Runware's own schemas through :mod:`.oracle` (``runware-sdk``'s
  ``runware.types.task_map``): no unknown key, every required key, enumerated values such as
  ``upscaleFactor`` (``Literal[2, 4]`` for Real-ESRGAN, ``Literal[2]`` for CCSR) inside their set;
- what the schemas leave open comes from RUNWARE.md ("Unchanged and correct"): prompts of 2 to
  3000 characters, ``steps`` 1-100, ``CFGScale`` 0-50, ``numberResults`` 1-20, ``outputQuality``
  20-99, ``strength`` 0-1; input images PNG, JPG or WEBP only (its point 6); Clarity takes
  factor 2 (its point 1; its schema types the factor as a bare ``float``); sizes per model (its
  point 5: multiples of 8, of 16 for FLUX; fixed lists for some partner models).

A failed check raises :class:`~.protocol._TaskError` with Runware's error entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from imagestudio.testing.fake_runware import oracle
from imagestudio.testing.fake_runware.protocol import _capitalised, _task_error

__all__ = ["MAX_SEED"]

MAX_SEED: Final = 9_223_372_036_854_775_807

# Ranges the schemas leave open: RUNWARE.md, "Unchanged and correct".
_INT_RANGES: Final = {
    "steps": (1, 100),
    "numberResults": (1, 20),
    "outputQuality": (20, 99),
    "seed": (1, MAX_SEED),
}
_NUMBER_RANGES: Final = {"CFGScale": (0.0, 50.0), "strength": (0.0, 1.0)}
_TEXT_FIELDS: Final = ("positivePrompt", "negativePrompt")
# Keys inside ``inputs``, which the schemas type as a bare object: Runware's model pages name
# ``inputs.image`` for upscalers and ``inputs.seedImage`` / ``inputs.referenceImages`` for inference.
_INPUT_KEYS: Final = {"upscale": ("image",), "imageInference": ("seedImage", "referenceImages")}


@dataclass(frozen=True)
class _SizeRule:
    low: int = 128
    high: int = 2048
    multiple: int = 8
    fixed: tuple[tuple[int, int], ...] = ()


# RUNWARE.md point 5: sizes are per model; multiples of 8 (16 for FLUX); fixed lists for some
# partner models (OpenAI's GPT Image 1 takes three sizes; BFL's FLUX1.1 [pro] 256-1440 in 32s).
_SIZE_RULES: Final = {
    "runware:100@1": _SizeRule(multiple=16),
    "runware:101@1": _SizeRule(multiple=16),
    "bfl:2@1": _SizeRule(low=256, high=1440, multiple=32),
    "openai:1@1": _SizeRule(fixed=((1024, 1024), (1536, 1024), (1024, 1536))),
}
_DEFAULT_SIZE_RULE: Final = _SizeRule()
_CLARITY: Final = "runware:500@1"

_COMMUNITY: Final = re.compile(r"civitai:[0-9]+@[0-9]+")


def _check_schema(task: dict[str, Any]) -> None:
    found = oracle.violations(task)
    if found:
        first = found[0]
        raise _task_error(first.code, first.message, parameter=first.parameter)


def _check_ranges(task: dict[str, Any]) -> None:
    for name in _TEXT_FIELDS:
        value = task.get(name)
        if value is not None and not 2 <= len(value) <= 3000:
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be a string of 2 to 3000 characters.",
                parameter=name,
                type="string",
                min=2,
                max=3000,
            )
    for name, (low, high) in _INT_RANGES.items():
        value = task.get(name)
        if value is not None and not (isinstance(value, int) and low <= value <= high):
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be an integer between {low} and {high}.",
                parameter=name,
                type="integer",
                min=low,
                max=high,
            )
    for name, (low_f, high_f) in _NUMBER_RANGES.items():
        value = task.get(name)
        if value is not None and not low_f <= value <= high_f:
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be a number between {low_f:g} and {high_f:g}.",
                parameter=name,
                type="float",
                min=low_f,
                max=high_f,
            )
    delivery = task.get("deliveryMethod", "sync")
    if delivery not in ("sync", "async"):
        raise _task_error(
            "invalidDeliveryMethod",
            "Invalid value for 'deliveryMethod'. It must be 'sync' or 'async'.",
            parameter="deliveryMethod",
        )


def _check_size(task: dict[str, Any]) -> tuple[int, int]:
    model = task.get("model", "")
    rule = _SIZE_RULES.get(model, _DEFAULT_SIZE_RULE)
    width, height = task["width"], task["height"]
    if rule.fixed:
        if (width, height) not in rule.fixed:
            sizes = ", ".join(f"{w}x{h}" for w, h in rule.fixed)
            raise _task_error(
                "invalidWidth",
                f"Invalid size for model {model}. It must be one of {sizes}.",
                parameter="width",
            )
        return width, height
    for name, value in (("width", width), ("height", height)):
        if not rule.low <= value <= rule.high or value % rule.multiple:
            raise _task_error(
                f"invalid{_capitalised(name)}",
                f"Invalid value for '{name}'. It must be an integer between {rule.low} and {rule.high}"
                f" and a multiple of {rule.multiple}.",
                parameter=name,
                type="integer",
                min=rule.low,
                max=rule.high,
                multiplier=rule.multiple,
            )
    return width, height


def _check_model(task: dict[str, Any]) -> None:
    model = task.get("model")
    if model is None:
        return
    known = oracle.known_models()
    if model in known:
        expected = known[model]
        if expected != task["taskType"]:
            raise _task_error(
                "invalidModel",
                f"The model {model} runs {expected} tasks, not {task['taskType']}.",
                parameter="model",
            )
        return
    if task["taskType"] == "imageInference" and _COMMUNITY.fullmatch(model):
        return
    raise _task_error(
        "invalidModel", f"Invalid value for 'model': there is no model {model!r}.", parameter="model"
    )


def _upscale_factor(task: dict[str, Any]) -> int:
    value = task.get("upscaleFactor", 2)
    if task["model"] == _CLARITY and value != 2:  # RUNWARE.md point 1: Clarity takes 2
        raise _task_error(
            "invalidUpscaleFactor",
            "Invalid value for 'upscaleFactor'. It must be 2.",
            parameter="upscaleFactor",
        )
    return int(value)
