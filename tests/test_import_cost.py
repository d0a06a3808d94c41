"""``import imagestudio`` in a fresh interpreter loads no database or imaging library: SQLAlchemy,
Alembic, Pillow and NumPy wait until a studio is opened (``Studio.open``), so a script that only
names the library, and the CLI's ``--help``, start without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import imagestudio

HEAVY = ("sqlalchemy", "alembic", "PIL", "numpy")
SOURCES = str(Path(imagestudio.__file__).resolve().parents[1])


def loaded_after(code: str) -> list[str]:
    """The libraries of ``HEAVY`` that a fresh interpreter has in ``sys.modules`` after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [SOURCES, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    return [name for name in HEAVY if name in loaded]


@pytest.mark.parametrize(
    "code",
    [
        "import imagestudio",
        "from imagestudio import Studio, Config, Generation, HistoryPage, StudioError, TaskStatus",
        "import imagestudio.cli",
    ],
)
def test_importing_the_library_loads_no_database_or_imaging_library(code: str) -> None:
    assert loaded_after(code) == []


def test_the_probe_sees_a_library_once_a_studio_can_be_opened() -> None:
    """The check above can fail: the composition root (what ``Studio.open`` builds) loads them."""
    assert {"sqlalchemy", "alembic", "PIL"} <= set(loaded_after("import imagestudio.bootstrap"))
