"""The fake Runware server the adapter tests share: one per module, on that module's ``KEY``,
reset around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagestudio.testing.fake_runware import FakeRunware


@pytest.fixture(scope="module")
def fake_server(request: pytest.FixtureRequest) -> Iterator[FakeRunware]:
    with FakeRunware.running(api_key=request.module.KEY) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeRunware) -> Iterator[FakeRunware]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()
