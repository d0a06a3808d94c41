"""The README's WebSocket client works as written, against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import scrubbed_environment, start_server, stop_server

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def _client_code() -> str:
    text = README.read_text()
    marker = text.index("<!-- websocket-client -->")
    found = re.search(r"```python\n(.*?)```", text[marker:], re.DOTALL)
    assert found is not None, "the README's WebSocket client is missing"
    return found.group(1)


def test_the_readme_websocket_client_prints_the_progress_and_the_image_url(tmp_path: Path) -> None:
    code = _client_code()
    assert 'SERVER = "127.0.0.1:8000"' in code
    server = start_server(tmp_path / "data")
    try:
        script = tmp_path / "watch.py"
        script.write_text(code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}"))
        run = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env=scrubbed_environment(),
            check=False,
        )
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[0] in ("queued 0", "generating 0")
        assert "completed 100" in lines
        url = lines[-1]
        assert url.startswith(f"http://127.0.0.1:{server.port}/generated/")
        image = httpx.get(url, timeout=10)
        assert image.status_code == 200
        assert image.headers["content-type"].startswith("image/")
    finally:
        stop_server(server)
