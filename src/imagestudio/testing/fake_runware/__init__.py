"""A fake Runware REST server for tests and offline work (see :mod:`.server`), and the oracle
it validates with: Runware's own schemas, from ``runware-sdk`` (see :mod:`.oracle`)."""

from imagestudio.testing.fake_runware.server import FakeRunware, Fault, main

__all__ = ["FakeRunware", "Fault", "main"]
