"""AUTOMATIC1111's "infotext": the ``parameters`` text its images carry, written and read.

The format (``create_infotext`` and ``parse_generation_parameters`` of stable-diffusion-webui):

    <prompt, one or more lines>
    Negative prompt: <negative prompt, one or more lines>     (only when there is one)
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 965400086, Size: 512x512, Model: ...

The last line is ``Key: value`` pairs joined by ``", "``; a value holding ``,``, ``:`` or a line
break is written as a JSON string; a value that is not known is left out (key and all). The last
line counts as parameters only with at least three pairs, else it belongs to the prompt. We
write ``Steps``, ``CFG scale``, ``Seed``, ``Size``, ``Model``, then ``Denoising strength``
(image-to-image) and ``Postprocess upscale by`` (upscale), in AUTOMATIC1111's order.
"""

from __future__ import annotations

import json
import math
import re
from typing import Final

from imagestudio.domain.model import FoundParameters, Operation, Provenance

__all__ = ["infotext", "parse_infotext", "parse_pairs"]

_KEY: Final = re.compile(r"\w[\w \-/]+")
_SIZE: Final = re.compile(r"(\d{1,9})x(\d{1,9})")
_NEGATIVE: Final = "Negative prompt:"


def _quote(value: object) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def infotext(made: Provenance) -> str:
    """The ``parameters`` text of an image made as ``made`` says."""
    p = made.parameters
    pairs: list[tuple[str, object | None]] = [
        ("Steps", p.steps),
        ("CFG scale", p.cfg_scale),
        ("Seed", made.seed),
        ("Size", f"{made.width}x{made.height}"),
        ("Model", p.model),
        ("Denoising strength", p.strength if made.operation is Operation.IMAGE_TO_IMAGE else None),
        ("Postprocess upscale by", p.scale if made.operation is Operation.UPSCALE else None),
    ]
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs if value is not None)
    negative = f"\n{_NEGATIVE} {made.negative_prompt}" if made.negative_prompt else ""
    return f"{made.prompt}{negative}\n{line}".strip()


def parse_pairs(line: str) -> dict[str, str]:
    """The ``Key: value`` pairs of a parameters line, JSON-quoted values unquoted.

    One pass over the line (no backtracking regular expression: a hostile line of megabytes
    costs linear time). A pair whose key is not of AUTOMATIC1111's form is skipped.
    """
    pairs: dict[str, str] = {}
    at, end = 0, len(line)
    while at < end:
        colon = line.find(":", at)
        if colon < 0:
            break
        key = line[at:colon].strip()
        at = colon + 1
        while at < end and line[at] == " ":
            at += 1
        if at < end and line[at] == '"':
            close = _closing_quote(line, at)
            raw = line[at : close + 1] if close > 0 else line[at:]
            try:
                value = json.loads(raw) if close > 0 else raw
            except ValueError:
                value = raw
            comma = line.find(",", close + 1 if close > 0 else at)
        else:
            comma = line.find(",", at)
            value = line[at : comma if comma >= 0 else end].strip()
        if _KEY.fullmatch(key) and isinstance(value, str):
            pairs.setdefault(key, value)
        if comma < 0:
            break
        at = comma + 1
    return pairs


def _closing_quote(line: str, start: int) -> int:
    """Where the JSON string opened at ``start`` closes, or -1."""
    at = start + 1
    while at < len(line):
        char = line[at]
        if char == "\\":
            at += 2
            continue
        if char == '"':
            return at
        at += 1
    return -1


def parse_infotext(text: str) -> tuple[FoundParameters, bool]:
    """What an infotext says, and whether it had a parameters line (without one, all of it is
    the prompt)."""
    *lines, last = text.strip().split("\n")
    pairs = parse_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = {}
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    size = _SIZE.fullmatch(pairs.get("Size", ""))
    parameters = FoundParameters(
        prompt="\n".join(prompt) or None,
        negative_prompt="\n".join(negative) or None,
        steps=_int(pairs.get("Steps")),
        sampler=pairs.get("Sampler") or None,
        scheduler=pairs.get("Schedule type") or None,
        cfg_scale=_float(pairs.get("CFG scale")),
        seed=_int(pairs.get("Seed")),
        width=int(size.group(1)) if size else None,
        height=int(size.group(2)) if size else None,
        model=pairs.get("Model") or None,
        strength=_float(pairs.get("Denoising strength")),
        scale=_float(pairs.get("Postprocess upscale by")),
        version=pairs.get("Version") or None,
    )
    return parameters, bool(pairs)


def _int(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"-?\d{1,20}", value.strip()):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**64 else None


def _float(value: str | None) -> float | None:
    if value is None or len(value) > 64:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
