"""The real application (SQLite file, folder, local engine) behind Litestar's test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config
from imagestudio.http.app import create_app


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(Config(data_dir=data_dir))
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client
