"""``modelSearch``: a small model catalogue, answered in the shape of the SDK's ``ModelSearchResult``.

The catalogue holds a few models of each kind the adapter meets (FLUX, SDXL and SD 1.5 community
checkpoints, partner models with fixed sizes), enough for a search by AIR, name, architecture or
category.
"""

from __future__ import annotations

from typing import Any, Final

# A small model catalogue for ``modelSearch``, with the result fields of Runware's model records
# (the names of ``ModelUploadParams``: air, name, version, category, architecture, defaultSteps...).
_CATALOGUE: Final[tuple[dict[str, Any], ...]] = (
    {"air": "runware:100@1", "name": "FLUX.1 [schnell]", "version": "1", "category": "checkpoint",
     "architecture": "flux-1-schnell", "defaultSteps": 4, "defaultCFG": 1.0,
     "defaultWidth": 1024, "defaultHeight": 1024},
    {"air": "runware:101@1", "name": "FLUX.1 [dev]", "version": "1", "category": "checkpoint",
     "architecture": "flux-1-dev", "defaultSteps": 28, "defaultCFG": 3.5,
     "defaultWidth": 1024, "defaultHeight": 1024},
    {"air": "civitai:133005@357609", "name": "Juggernaut XL", "version": "v9", "category": "checkpoint",
     "architecture": "sdxl", "defaultSteps": 30, "defaultCFG": 6.0,
     "defaultWidth": 1024, "defaultHeight": 1024},
    {"air": "civitai:4384@128713", "name": "DreamShaper", "version": "8", "category": "checkpoint",
     "architecture": "sd-1-5", "defaultSteps": 25, "defaultCFG": 7.0,
     "defaultWidth": 512, "defaultHeight": 512},
    {"air": "bfl:2@1", "name": "FLUX1.1 [pro]", "version": "1", "category": "checkpoint",
     "architecture": "flux-1-1-pro"},
    {"air": "openai:1@1", "name": "GPT Image 1", "version": "1", "category": "checkpoint",
     "architecture": "gpt-image-1"},
)  # fmt: skip


def _search(task: dict[str, Any]) -> dict[str, Any]:
    """A ``modelSearch`` answer over the fake's catalogue (``search`` matches AIR or name)."""
    search = str(task.get("search", "")).lower()
    found = [
        dict(model)
        for model in _CATALOGUE
        if (not search or search in model["air"].lower() or search in model["name"].lower())
        and task.get("architecture") in (None, model.get("architecture"))
        and task.get("category") in (None, model.get("category"))
    ]
    offset, limit = task.get("offset", 0), task.get("limit", 20)
    return {
        "taskType": "modelSearch",
        "taskUUID": task["taskUUID"],
        "totalResults": len(found),
        "results": found[offset : offset + limit],
    }
