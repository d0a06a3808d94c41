"""Apps with the protections switched on, and the checks every hardening test shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config
from imagestudio.http.app import create_app

Client = TestClient  # type: ignore[type-arg]
TOKEN = "test-token-5f1c2a9e7b3d4c6a"  # noqa: S105 - a made-up token for tests
BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app_client(data_dir: Path) -> Callable[..., AbstractContextManager[Client]]:
    """``with app_client(api_token=..., rate_limit=...) as client``: the real app with that config."""

    @contextmanager
    def open_client(**config: Any) -> Iterator[Client]:
        app = create_app(Config(data_dir=data_dir, **config))
        with TestClient(app, base_url=BASE_URL) as client:
            yield client

    return open_client


@pytest.fixture
def client(app_client: Callable[..., AbstractContextManager[Client]]) -> Iterator[Client]:
    """The real app with the default configuration (no token, no rate limit)."""
    with app_client() as opened:
        yield opened
