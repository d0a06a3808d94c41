"""Real ``imagestudio serve`` processes for the fault, crash and load tests.

Like ``tests/e2e/conftest.py`` but the command can be wrapped (a private mount namespace, dropped
capabilities) and the history and files can be compared with what a client saw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server, free_port, stop_server

__all__ = [
    "IMAGE_SUFFIXES",
    "Server",
    "all_rows",
    "drop_file_permission_override",
    "image_files",
    "in_private_mounts",
    "kill",
    "log_problems",
    "private_mounts",
    "start",
    "stop_server",
    "temporaries",
]

IMAGE_SUFFIXES = (".jpg", ".png", ".webp")


def start(
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    wrap: Sequence[str] = (),
    timeout: float = 60,
) -> Server:
    """Start ``imagestudio serve`` on a free port (``wrap`` prefixes the command) and wait for health."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWARE_", "IMAGESTUDIO_"))}
    environment.update(env or {})
    command = [sys.executable, "-m", "imagestudio", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    log_path = data_dir.parent / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*wrap, *command], env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(url=url, port=port, data_dir=data_dir, process=process)
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"server did not become healthy in time: {log_path.read_text()[-3000:]}")


def kill(server: Server) -> None:
    """SIGKILL: no shutdown, no clean-up, no flushing."""
    server.process.kill()
    server.process.wait()


def log_problems(server: Server, last: int = 20) -> str:
    """The server log's last warnings and errors (to explain a failed assertion)."""
    log_path = server.data_dir.parent / f"server-{server.port}.log"
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    problems = [
        line[:600] for line in lines if '"level": "info"' not in line and '"level": "debug"' not in line
    ]
    return "\n".join(problems[-last:])


def all_rows(client: httpx.Client) -> list[dict[str, Any]]:
    """Every history row, through the API's keyset pages."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, "sort": "oldest"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/history", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        rows.extend(body["data"])
        cursor = body.get("nextCursor")
        if not cursor:
            return rows


def image_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in IMAGE_SUFFIXES]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".tmp-*") if p.is_file()]


# --- real storage faults --------------------------------------------------------------------


@cache
def private_mounts() -> tuple[str, ...] | None:
    """An ``unshare`` prefix under which a child may mount file systems of its own, or ``None``.

    Root gets a private mount namespace; anyone else needs an unprivileged user namespace, which
    some systems forbid (then the tests that need it skip).
    """
    if shutil.which("unshare") is None:
        return None
    candidates = [("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private")]
    if os.geteuid() == 0:
        candidates.insert(0, ("unshare", "--mount", "--propagation", "private"))
    with tempfile.TemporaryDirectory() as probe:
        for prefix in candidates:
            done = subprocess.run(
                [*prefix, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', probe],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                return prefix
    return None


def in_private_mounts(script: str, folder: Path) -> list[str]:
    """A command prefix: run ``script`` (``$0`` is ``folder``) in a private mount namespace, then the
    wrapped command. Only the child sees what ``script`` mounts."""
    prefix = private_mounts()
    assert prefix is not None
    return [*prefix, "sh", "-c", f'{script} && exec "$@"', str(folder)]


def drop_file_permission_override() -> list[str] | None:
    """A prefix that makes the child honour file permissions: nothing for an ordinary user; for
    root, ``setpriv`` without CAP_DAC_OVERRIDE (``None`` when that tool is missing)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
