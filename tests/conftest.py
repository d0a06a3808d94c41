"""Shared fixtures: the anyio backend, a data folder, the app over a test client."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
