"""The local engine: a deterministic procedural renderer behind the ``ImageGenerator`` port.

No model weights are involved. The prompt is read for mood, colour and form words; a scene is
painted at full resolution with vectorised numpy; then a small latent (1/8 of each side) starts
as seeded noise and is denoised toward that scene over ``steps`` steps, the way a latent
diffusion sampler would. Whatever noise is left is added back, so few steps look blotchy and
many steps look clean. ``cfgScale`` is the strength of the prompt's palette: 0 is washed out,
7.5 is normal, high values are vivid to the point of burning.

The same prompt, seed and parameters give the same pixels. The engine exists so the studio
works offline and tests have a real engine; Runware gives real diffusion.

- :mod:`.reading`: the vocabulary and what a prompt and a negative prompt ask for;
- :mod:`.palette`: the colours a reading and a guidance scale give;
- :mod:`.canvas`: the planar float32 picture, noise fields and masks;
- :mod:`.scene`: the layers of one composition, painted on a canvas;
- :mod:`.sampler`: the latent denoised toward the scene, then quantised and encoded;
- :mod:`.decoding`: input images to upright sRGB within the decode budget;
- :mod:`.generator`: ``LocalImageGenerator`` and its three operations;
- :mod:`.models`: ``LocalModelCatalogue``, the one procedural model.
"""

from imagestudio.adapters.local_engine.generator import LocalImageGenerator
from imagestudio.adapters.local_engine.models import LOCAL_MODEL, LocalModelCatalogue

__all__ = ["LOCAL_MODEL", "LocalImageGenerator", "LocalModelCatalogue"]
