"""``imagestudio doctor`` against a real data folder and its SQLite database: as a process (exit
status, flags) and in-process (the same check and report, without an interpreter start-up)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest
from PIL import Image

from imagestudio import Studio
from imagestudio.bootstrap import consistency_check
from imagestudio.cli import doctor_report
from imagestudio.config import Config
from imagestudio.domain.doctor import ConsistencyReport

HOUR_AGO = time.time() - 3600


def doctor(data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWARE_", "IMAGESTUDIO_"))}
    return subprocess.run(
        [sys.executable, "-m", "imagestudio", "doctor", "--data-dir", str(data_dir), *flags],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_history(
    data_dir: Path, count: int, storage_path: str | None = None, roots: tuple[Path, ...] = ()
) -> list[Path]:
    """Generate ``count`` small images with the local engine (storage roots: the data dir and
    ``roots``); return their files."""

    async def run() -> list[Path]:
        async with Studio.open(data_dir, engine="local", storage_roots=roots) as studio:
            if storage_path is not None:
                await studio.update_settings(storage_path=storage_path)
            files = []
            for index in range(count):
                made = await studio.text_to_image(f"a small test {index}", width=128, height=128, steps=1)
                files.append(Path(await studio.file_of(made)))
            return files

    return anyio.run(run)


def aged(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_leftovers_and_a_missing_file_are_reported_then_repaired_step_by_step(data_dir: Path) -> None:
    first, second, third = make_history(data_dir, 3)
    day = first.parent
    temporary = aged(day / f".tmp-{uuid.uuid4().hex}", b"half an image")
    orphan = aged(day / f"{uuid.uuid4().hex}.jpg", first.read_bytes())
    users_own = aged(day.parent / "holiday.jpg", b"a picture the user keeps here")
    users_in_day = aged(day / "notes.txt", b"not ours either")
    third.unlink()

    checked = doctor(data_dir)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "3 problem(s) remain." in checked.stdout
    for label, path in (
        ("stale temporary file", temporary),
        ("image no row names", orphan),
        ("row without its file", third),
    ):
        assert label in checked.stdout
        assert str(path) in checked.stdout
    assert temporary.exists()
    assert orphan.exists()  # a check changes nothing

    repaired = doctor(data_dir, "--repair")
    assert repaired.returncode == 1, repaired.stdout
    assert "[removed]" in repaired.stdout
    assert "1 problem(s) remain." in repaired.stdout
    assert "--repair --prune-missing" in repaired.stdout
    assert not temporary.exists()
    assert not orphan.exists()
    assert first.exists()
    assert second.exists()
    assert users_own.read_bytes() == b"a picture the user keeps here"
    assert users_in_day.exists()

    pruned = doctor(data_dir, "--repair", "--prune-missing")
    assert pruned.returncode == 0, pruned.stdout
    assert "[row deleted]" in pruned.stdout
    assert "OK: repaired 1 problem(s)" in pruned.stdout

    again = doctor(data_dir)
    assert again.returncode == 0, again.stdout
    assert "Checked 2 history rows and 2 image files" in again.stdout


def check(data_dir: Path, roots: tuple[Path, ...] = (), **options: object) -> tuple[ConsistencyReport, str]:
    """The same check in-process (no interpreter start-up): the report and its text."""
    min_age = float(options.pop("min_age", 120.0))  # type: ignore[arg-type]

    async def run() -> ConsistencyReport:
        async with consistency_check(Config(data_dir=data_dir, storage_roots=roots)) as checker:
            return await checker(min_age=dt.timedelta(seconds=min_age), **options)  # type: ignore[arg-type]

    report = anyio.run(run)
    return report, doctor_report(report, min_age=min_age)


def test_files_left_in_an_earlier_storage_folder_are_found_there(data_dir: Path, tmp_path: Path) -> None:
    [old] = make_history(data_dir, 1)
    [new] = make_history(data_dir, 1, storage_path=str(tmp_path / "elsewhere"), roots=(tmp_path,))
    stray = aged(old.parent / f"{uuid.uuid4().hex}.png", b"stray")

    report, text = check(data_dir, roots=(tmp_path / "elsewhere",))
    assert not report.consistent
    assert f"  {tmp_path / 'elsewhere'}  (current storage folder)" in text
    assert f"  {data_dir / 'generated'}\n" in text
    [line] = [line for line in text.splitlines() if str(stray) in line]
    assert line.split() == ["image", "no", "row", "names", str(stray), "(5", "bytes)"]
    assert new.exists()


def test_young_files_are_left_for_a_running_server_unless_min_age_is_zero(data_dir: Path) -> None:
    [image] = make_history(data_dir, 1)
    fresh = image.parent / f".tmp-{uuid.uuid4().hex}"
    fresh.write_bytes(b"being written")

    report, text = check(data_dir, repair=True)
    assert report.consistent
    assert "1 file(s) without a row are younger than 120 s and were not judged" in text
    assert fresh.exists()

    report, text = check(data_dir, repair=True, min_age=0)
    assert report.consistent
    assert "OK: repaired 1 problem(s)" in text
    assert not fresh.exists()


def test_a_moved_image_keeps_its_row_even_with_prune_missing(data_dir: Path, tmp_path: Path) -> None:
    [image] = make_history(data_dir, 1)
    moved_root = tmp_path / "moved"
    make_history(data_dir, 0, storage_path=str(moved_root), roots=(moved_root,))
    target = moved_root / image.parent.name / image.name
    target.parent.mkdir(parents=True)
    shutil.move(image, target)

    report, text = check(data_dir, roots=(moved_root,), repair=True, prune_missing=True)
    assert not report.consistent
    assert f"a file of this name is in {moved_root}" in text
    assert target.exists()


def test_prune_missing_without_repair_and_a_wrong_data_dir_are_refused(tmp_path: Path) -> None:
    refused = doctor(tmp_path, "--prune-missing")
    assert refused.returncode == 2
    assert "needs --repair" in refused.stderr
    nothing = doctor(tmp_path / "typo")
    assert nothing.returncode == 2
    assert "no database in" in nothing.stderr
    assert not (tmp_path / "typo").exists()


def test_repair_never_deletes_in_a_folder_outside_the_storage_roots(data_dir: Path, tmp_path: Path) -> None:
    """A storage folder an older version (or a wider --storage-root) used, like a backup copy of the
    image folder: its image-named files survive ``doctor --repair``, and the folder is reported."""
    backup = tmp_path / "backup"
    [kept] = make_history(data_dir, 1, storage_path=str(backup / "images"), roots=(backup,))
    copy = aged(kept.parent / f"{uuid.uuid4().hex}.png", kept.read_bytes())  # no row names it

    repaired = doctor(data_dir, "--repair", "--min-age", "0")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "Not scanned, outside the storage roots" in repaired.stdout
    assert f"  {backup / 'images'}  (current storage folder: new images are refused)" in repaired.stdout
    assert copy.exists()
    assert kept.exists()

    # the same check with the folder among the roots does judge it: the file above was at stake
    widened = doctor(data_dir, "--repair", "--min-age", "0", "--storage-root", str(backup))
    assert widened.returncode == 0, widened.stdout
    assert f"{copy}" in widened.stdout
    assert not copy.exists()
    assert kept.exists()


def test_a_missing_thumbnail_is_made_and_an_orphan_thumbnail_removed_by_a_repair(data_dir: Path) -> None:
    first, second = make_history(data_dir, 2)
    missing = first.with_name(first.name + ".thumb.webp")
    kept = second.with_name(second.name + ".thumb.webp")
    assert kept.exists()
    missing.unlink()
    orphan = aged(
        first.with_name(f"{uuid.uuid4().hex}.jpg.thumb.webp"), kept.read_bytes()
    )  # its image is gone

    checked = doctor(data_dir)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "2 problem(s) remain." in checked.stdout
    [row_line] = [line for line in checked.stdout.splitlines() if "row without its thumbnail" in line]
    assert row_line.endswith(str(missing))
    assert any("image no row names" in line and str(orphan) in line for line in checked.stdout.splitlines())
    assert "--repair makes the missing thumbnails from their images." in checked.stdout

    repaired = doctor(data_dir, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"{missing}  [made]" in repaired.stdout
    assert f"{orphan} ({len(kept.read_bytes())} bytes)  [removed]" in repaired.stdout
    assert not orphan.exists()
    with Image.open(missing) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("WEBP", (128, 128))
    assert first.exists()
    assert second.exists()

    again = doctor(data_dir)
    assert again.returncode == 0, again.stdout
    assert "Checked 2 history rows and 2 image files" in again.stdout
