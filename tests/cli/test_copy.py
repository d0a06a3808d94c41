"""A Ctrl-C while the CLI copies the image to ``--out``: the copy stops, no partial file is left and
an earlier file at ``--out`` stays whole; the image made stays in the history."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from imagestudio.cli.generating import report
from imagestudio.cli.interrupts import Interrupts
from imagestudio.domain.model import StoredImage
from imagestudio.domain.ports import StoredStream
from imagestudio.studio import Studio
from tests.fakes import InMemoryImageStorage, fake_services

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="raises SIGINT in the test process")


class CtrlCMidCopy(InMemoryImageStorage):
    """Hands an image out 64 bytes at a time, and presses Ctrl-C after the first of them."""

    async def open(self, image: StoredImage) -> StoredStream:
        stream = await super().open(image)
        data = self.files[(image.root, image.key)]

        async def chunks() -> AsyncGenerator[bytes, None]:
            for start in range(0, len(data), 64):
                yield data[start : start + 64]
                if start == 0:
                    signal.raise_signal(signal.SIGINT)

        return replace(stream, chunks=chunks())


@pytest.mark.anyio
async def test_ctrl_c_during_the_copy_to_out_leaves_no_partial_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    studio = Studio(fake_services(storage=CtrlCMidCopy()))
    made = await studio.text_to_image("a field of poppies", width=256, height=256)
    out = tmp_path / "poppies.png"
    out.write_bytes(b"the picture that was here before")

    with Interrupts.installed() as interrupts:
        status = await report(studio, [made], out, interrupts)

    assert status == 130
    assert out.read_bytes() == b"the picture that was here before"
    assert [p.name async for p in anyio.Path(tmp_path).iterdir()] == ["poppies.png"]  # no partial copy
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "cancelled"
    assert lines[1] == f"imagestudio: --out was not written; generation {made.id} is in the history"
    assert (await studio.get(made.id)).id == made.id  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_without_ctrl_c_the_copy_is_written_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = InMemoryImageStorage()
    studio = Studio(fake_services(storage=storage))
    made = await studio.text_to_image("a field of poppies", width=256, height=256)
    out = tmp_path / "poppies.png"

    with Interrupts.installed() as interrupts:
        status = await report(studio, [made], out, interrupts)

    assert status == 0
    assert out.read_bytes() == storage.files[(made.image.root, made.image.key)]
    assert capsys.readouterr().out.splitlines()[-1] == str(out)
