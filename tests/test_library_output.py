"""A script that imports imagestudio hears only what it asks for: nothing on stdout, nothing on
stderr at the default logging setup, and the generation lines once it configures logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import structlog

from imagestudio.log import get_logger, protect
from tests.servers import scrubbed_environment

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys
    from imagestudio import Studio

    if sys.argv[1] == "configured":
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")

    async def main():
        async with Studio.open(data_dir=sys.argv[2]) as studio:
            made = await studio.text_to_image("a cat", width=128, height=128, steps=2)
            print("made", made.id)

    asyncio.run(main())
    """
)


def _run(mode: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=scrubbed_environment(),
        check=True,
    )


def test_the_library_writes_nothing_a_script_did_not_ask_for(tmp_path: Path) -> None:
    quiet = _run("default", tmp_path / "quiet")
    assert quiet.stdout == "made 1\n"
    assert quiet.stderr == ""


def test_a_script_that_configures_logging_gets_the_lines(tmp_path: Path) -> None:
    told = _run("configured", tmp_path / "told")
    assert told.stdout == "made 1\n"
    lines = told.stderr.splitlines()
    assert any(line.startswith("imagestudio.bootstrap|event='services ready'") for line in lines), lines
    [made] = [line for line in lines if "generation completed" in line]
    assert made.startswith("imagestudio.generation|")
    assert "size='128x128'" in made
    assert "engine='local'" in made


def test_secrets_a_studio_was_opened_with_are_redacted_on_the_library_path() -> None:
    structlog.reset_defaults()  # a library user's process (the autouse fixture restores it)
    caught: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    handler = Keep()
    target = logging.getLogger("imagestudio.tests.library")
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        protect(["library-secret-0123456789"])
        get_logger("imagestudio.tests.library").info("called", url="https://x/?key=library-secret-0123456789")
    finally:
        target.removeHandler(handler)
    assert caught == ["event='called' url='https://x/?key=[redacted]'"]
