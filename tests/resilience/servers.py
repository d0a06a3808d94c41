"""What the fault, crash and load tests need around a real server (launched by :mod:`tests.servers`).

Command prefixes that put the server in real storage faults (a private mount namespace, dropped
capabilities), and readers that compare the history and files with what a client saw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from imagestudio.domain.model import THUMBNAIL_SUFFIX
from tests.servers import Server

__all__ = [
    "IMAGE_SUFFIXES",
    "all_rows",
    "drop_file_permission_override",
    "image_files",
    "in_private_mounts",
    "log_problems",
    "private_mounts",
    "temporaries",
    "thumbnail_files",
]

IMAGE_SUFFIXES = (".jpg", ".png", ".webp")


def log_problems(server: Server, last: int = 20) -> str:
    """The server log's last warnings and errors (to explain a failed assertion)."""
    lines = server.log_text().splitlines()
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
    """The image files under ``folder`` (their thumbnails not included: :func:`thumbnail_files`)."""
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in IMAGE_SUFFIXES and not p.name.endswith(THUMBNAIL_SUFFIX)
    ]


def thumbnail_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"*{THUMBNAIL_SUFFIX}") if p.is_file()]


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
