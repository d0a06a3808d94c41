"""A fake Runware REST server for tests and offline work, and the oracle it validates with.

- :mod:`.server`: :class:`FakeRunware` and its launcher (``running()``, ``start``, ``stop``);
- :mod:`.app`: the ASGI app (the task endpoint, image downloads, ``/_fake/...`` control);
- :mod:`.tasks`: a request checked like Runware, its tasks run, billed and answered;
- :mod:`.images`: the images the fake keeps, resolves as inputs and serves;
- :mod:`.state`: what it remembers and counts, and the control and observation of a test;
- :mod:`.faults`: :class:`Fault`, the ways it misbehaves on request;
- :mod:`.checks`: the rules a task must meet (the schemas through :mod:`.oracle`, then RUNWARE.md);
- :mod:`.pictures`: rendering and upscaling; :mod:`.catalogue`: ``modelSearch``;
- :mod:`.protocol`: the wire (ASGI types, paths, error bodies); :mod:`.cli`: ``python -m``;
- :mod:`.oracle`: Runware's own schemas, from ``runware-sdk``.

Names with a leading underscore are shared between these modules and private to the package.
"""

from imagestudio.testing.fake_runware.cli import main
from imagestudio.testing.fake_runware.faults import Fault
from imagestudio.testing.fake_runware.server import FakeRunware

__all__ = ["FakeRunware", "Fault", "main"]
