"""The JSON records: ours (``imagestudio``), ComfyUI's ``prompt``/``workflow`` and InvokeAI's
``invokeai_metadata``, each read into the API's parameter names.

- ours is the Generation as the API shows it, less what is known only once it is stored (id,
  file, URLs, time, cost), plus imagestudio's ``version``;
- ComfyUI's ``prompt`` is its API graph (``{node id: {"class_type", "inputs"}}``): the sampler
  node (``KSampler``, ``KSamplerAdvanced``) gives seed (``seed`` or ``noise_seed``), steps,
  cfg, sampler and scheduler names and denoise (as strength when below 1); its ``positive`` and
  ``negative`` inputs lead to ``CLIPTextEncode`` texts, its ``model`` input (through LoRA
  loaders) to the checkpoint's ``ckpt_name``, its ``latent_image`` to an ``EmptyLatentImage``
  size. Without a ``prompt``, the UI ``workflow`` (nodes with ``widgets_values`` and links) is
  read the same way;
- InvokeAI's ``invokeai_metadata`` (3.x and later) has ``positive_prompt``, ``negative_prompt``,
  ``seed``, ``steps``, ``cfg_scale``, ``width``, ``height``, ``scheduler``, ``strength`` and
  ``model`` (``name``, or ``model_name`` in 3.x).

Records are untrusted: a value of the wrong type is left out, never guessed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from imagestudio.domain.model import FoundParameters, Provenance

__all__ = ["comfyui_parameters", "generation_json", "imagestudio_parameters", "invokeai_parameters", "load"]

_MAX_HOPS: Final = 32
"""How many nodes a link is followed through in a ComfyUI graph."""
_SAMPLERS: Final = ("KSampler", "KSamplerAdvanced")
_INVOKE_MODES: Final = {"txt2img": "text-to-image", "img2img": "image-to-image"}


def generation_json(made: Provenance, version: str) -> str:
    """Our record of how an image was made (the API's camelCase names)."""
    p = made.parameters
    parameters: dict[str, Any] = {
        "width": p.width,
        "height": p.height,
        "steps": p.steps,
        "cfgScale": p.cfg_scale,
        "seed": p.seed,
        "model": p.model,
        "engine": p.engine,
    }
    optional = {
        "strength": p.strength,
        "scale": p.scale,
        "sourceId": p.source_id,
        "providerScale": p.provider_scale,
    }
    parameters |= {key: value for key, value in optional.items() if value is not None}
    document = {
        "operation": made.operation.value,
        "prompt": made.prompt,
        "negativePrompt": made.negative_prompt,
        "parameters": parameters,
        "seed": made.seed,
        "width": made.width,
        "height": made.height,
        "taskId": made.task_id,
        "version": version,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def load(text: str) -> Any:
    """``text`` as JSON, or ``None`` if it is not JSON we can hold."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64:
        return value
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _side(value: object) -> int | None:
    number = _int(value)
    return number if number is not None and 0 < number < 2**31 else None


def imagestudio_parameters(document: object) -> FoundParameters | None:
    """Our record, or ``None`` if ``document`` is not one."""
    if not isinstance(document, Mapping) or not isinstance(document.get("operation"), str):
        return None
    nested = document.get("parameters")
    p: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
    return FoundParameters(
        operation=_str(document.get("operation")),
        prompt=_str(document.get("prompt")),
        negative_prompt=_str(document.get("negativePrompt")),
        width=_side(document.get("width", p.get("width"))),
        height=_side(document.get("height", p.get("height"))),
        steps=_int(p.get("steps")),
        cfg_scale=_float(p.get("cfgScale")),
        seed=_int(document.get("seed", p.get("seed"))),
        model=_str(p.get("model")),
        strength=_float(p.get("strength")),
        scale=_float(p.get("scale")),
        engine=_str(p.get("engine")),
        source_id=_int(p.get("sourceId")),
        task_id=_str(document.get("taskId")),
        version=_str(document.get("version")),
    )


def invokeai_parameters(document: object) -> FoundParameters | None:
    """InvokeAI's ``invokeai_metadata``, or ``None`` if ``document`` is not one."""
    if not isinstance(document, Mapping):
        return None
    model = document.get("model")
    if isinstance(model, Mapping):
        model_name = _str(model.get("name")) or _str(model.get("model_name"))
    else:
        model_name = _str(model)
    mode = _str(document.get("generation_mode")) or ""
    operation = next((name for suffix, name in _INVOKE_MODES.items() if mode.endswith(suffix)), None)
    return FoundParameters(
        operation=operation,
        prompt=_str(document.get("positive_prompt")),
        negative_prompt=_str(document.get("negative_prompt")),
        width=_side(document.get("width")),
        height=_side(document.get("height")),
        steps=_int(document.get("steps")),
        cfg_scale=_float(document.get("cfg_scale")),
        seed=_int(document.get("seed")),
        model=model_name,
        sampler=_str(document.get("scheduler")),
        strength=_float(document.get("strength")),
        version=_str(document.get("app_version")),
    )


# --- ComfyUI ------------------------------------------------------------------------------


def comfyui_parameters(prompt: object, workflow: object) -> FoundParameters | None:
    """ComfyUI's graph (``prompt``, else ``workflow``), or ``None`` if neither is one."""
    graph = _api_graph(prompt) if isinstance(prompt, Mapping) else None
    if graph is None and isinstance(workflow, Mapping):
        graph = _workflow_graph(workflow)
    if graph is None:
        return None
    return _read_graph(graph)


_Graph = dict[str, tuple[str, dict[str, Any]]]
"""Node id: (class type, inputs), inputs holding values or links ``[node id, output slot]``."""


def _api_graph(prompt: Mapping[str, Any]) -> _Graph | None:
    graph: _Graph = {}
    for node_id, node in prompt.items():
        if isinstance(node, Mapping) and isinstance(node.get("class_type"), str):
            inputs = node.get("inputs")
            graph[str(node_id)] = (node["class_type"], dict(inputs) if isinstance(inputs, Mapping) else {})
    return graph or None


# What the widgets of the UI workflow's nodes hold, in order ("control_after_generate" follows a seed).
_WIDGETS: Final[dict[str, tuple[str, ...]]] = {
    "KSampler": ("seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
    ),
    "CLIPTextEncode": ("text",),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
}


def _workflow_graph(workflow: Mapping[str, Any]) -> _Graph | None:
    """The UI workflow as an API graph: widget values by name, links as ``[node id, slot]``."""
    nodes, links = workflow.get("nodes"), workflow.get("links")
    if not isinstance(nodes, list):
        return None
    sources: dict[object, list[object]] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 3 and isinstance(link[0], int | str):
            sources[link[0]] = [str(link[1]), link[2]]
    graph: _Graph = {}
    for node in nodes:
        if not isinstance(node, Mapping) or not isinstance(node.get("type"), str):
            continue
        kind: str = node["type"]
        inputs: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        if isinstance(widgets, list):
            inputs |= dict(zip(_WIDGETS.get(kind, ()), widgets, strict=False))
        slots = node.get("inputs")
        for slot in slots if isinstance(slots, list) else []:
            if isinstance(slot, Mapping) and isinstance(slot.get("name"), str):
                link = slot.get("link")
                if isinstance(link, int | str) and link in sources:
                    inputs[slot["name"]] = sources[link]
        graph[str(node.get("id"))] = (kind, inputs)
    return graph or None


def _linked(graph: _Graph, value: object) -> tuple[str, dict[str, Any]] | None:
    if isinstance(value, list) and len(value) == 2 and str(value[0]) in graph:
        return graph[str(value[0])]
    return None


def _text_of(graph: _Graph, link: object) -> str | None:
    """The text of the ``CLIPTextEncode`` node a conditioning input comes from."""
    node = _linked(graph, link)
    if node is None or not node[0].startswith("CLIPTextEncode"):
        return None
    inputs = node[1]
    return _str(inputs.get("text")) or _str(inputs.get("text_g"))


def _checkpoint(graph: _Graph, link: object) -> str | None:
    """The ``ckpt_name`` at the end of a model input's chain (through LoRA loaders and the like)."""
    for _ in range(_MAX_HOPS):
        node = _linked(graph, link)
        if node is None:
            break
        if _str(node[1].get("ckpt_name")):
            return _str(node[1].get("ckpt_name"))
        link = node[1].get("model")
    names = [_str(inputs.get("ckpt_name")) for _, inputs in graph.values()]
    return next((name for name in names if name), None)


def _read_graph(graph: _Graph) -> FoundParameters:
    sampler = next((inputs for kind, inputs in graph.values() if kind in _SAMPLERS), None)
    if sampler is None:
        return FoundParameters(model=_checkpoint(graph, None))
    latent = _linked(graph, sampler.get("latent_image"))
    size = latent[1] if latent is not None and latent[0] == "EmptyLatentImage" else {}
    denoise = _float(sampler.get("denoise"))
    return FoundParameters(
        prompt=_text_of(graph, sampler.get("positive")),
        negative_prompt=_text_of(graph, sampler.get("negative")),
        width=_side(size.get("width")),
        height=_side(size.get("height")),
        steps=_int(sampler.get("steps")),
        cfg_scale=_float(sampler.get("cfg")),
        seed=_int(sampler.get("seed", sampler.get("noise_seed"))),
        model=_checkpoint(graph, sampler.get("model")),
        sampler=_str(sampler.get("sampler_name")),
        scheduler=_str(sampler.get("scheduler")),
        strength=denoise if denoise is not None and denoise < 1 else None,
    )
