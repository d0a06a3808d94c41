"""The Runware engine: ``ImageGenerator`` and ``ModelCatalogue`` on Runware's REST API.

- :mod:`.generator`: the tasks (inference, upscale, inputs by ``imageUUID``) and the download;
- :mod:`.transport`: submit, poll, retry without paying twice, map failures to domain errors;
- :mod:`.protocol`: Runware's answers and errors in every documented form;
- :mod:`.models`: what each model takes (known facts, ``modelSearch``, the SDK's registry);
- :mod:`.convert`: input images as Runware reads them.
"""

from imagestudio.adapters.runware.generator import DEFAULT_API_URL, RunwareImageGenerator, runware_client
from imagestudio.adapters.runware.models import (
    DEFAULT_MODEL,
    DEFAULT_UPSCALER,
    KNOWN_MODELS,
    RunwareModelCatalogue,
)
from imagestudio.adapters.runware.transport import RunwareTransport

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_MODEL",
    "DEFAULT_UPSCALER",
    "KNOWN_MODELS",
    "RunwareImageGenerator",
    "RunwareModelCatalogue",
    "RunwareTransport",
    "runware_client",
]
