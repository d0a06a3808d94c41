"""``imagestudio doctor``: check (and ``--repair``) that the history and the image files agree.

Exit status: 0 consistent, 1 problems remain, 2 the check could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING

import anyio

from imagestudio.cli.interrupts import EXIT_INTERRUPTED, Interrupts
from imagestudio.cli.shared import check_data_dir, load_config, say, soon
from imagestudio.config import Config
from imagestudio.domain.errors import StudioError

if TYPE_CHECKING:
    from imagestudio.domain.doctor import ConsistencyReport

__all__ = ["doctor", "doctor_report"]


def doctor(args: argparse.Namespace, interrupts: Interrupts) -> int:
    from imagestudio.log import configure_logging

    if args.prune_missing and not args.repair:
        print(
            "imagestudio doctor: --prune-missing deletes history rows, so it needs --repair", file=sys.stderr
        )
        return 2
    if not 0 <= args.min_age < 10**9:
        print("imagestudio doctor: --min-age must be 0 or more seconds", file=sys.stderr)
        return 2
    config = load_config(args)
    configure_logging(fmt=config.log_format, level="warning", secrets=config.secrets)
    check_data_dir(config, args, create=False)
    if config.database_url is None and not (config.data_dir / "imagestudio.db").is_file():
        print(f"imagestudio doctor: no database in {config.data_dir} (is --data-dir right?)", file=sys.stderr)
        return 2
    try:
        report = anyio.run(_check_consistency, config, args, interrupts)
    except StudioError as error:
        print(f"imagestudio doctor: {error.code}: {error.message}", file=sys.stderr)
        return 2
    if report is None:
        say("cancelled")
        return EXIT_INTERRUPTED
    sys.stdout.write(doctor_report(report, min_age=args.min_age))
    return 0 if report.consistent else 1


async def _check_consistency(
    config: Config, args: argparse.Namespace, interrupts: Interrupts
) -> ConsistencyReport | None:
    """The report, or ``None`` when a Ctrl-C stopped the check (what a repair had done stays done)."""
    from imagestudio.bootstrap import consistency_check

    with anyio.CancelScope() as checking, interrupts.calling(soon(checking.cancel)):
        async with consistency_check(config) as check:
            return await check(
                repair=args.repair,
                prune_missing=args.prune_missing,
                min_age=dt.timedelta(seconds=args.min_age),
            )
    return None


def doctor_report(report: ConsistencyReport, *, min_age: float) -> str:
    """The readable text of a consistency report."""
    from imagestudio.domain.doctor import Problem

    labels = {
        Problem.MISSING_FILE: "row without its file",
        Problem.UNREFERENCED_FILE: "image no row names",
        Problem.STALE_TEMPORARY: "stale temporary file",
        Problem.UNREADABLE_FILE: "row with unreadable file",
        Problem.MISSING_THUMBNAIL: "row without its thumbnail",
    }
    folders = "folder" if len(report.roots) == 1 else "folders"
    lines = [
        f"Checked {report.rows} history rows and {report.files} image files in {len(report.roots)} {folders}:"
    ]
    lines += [
        f"  {report.location(root)}{'  (current storage folder)' if root == report.current else ''}"
        for root in report.roots
    ]
    if report.unwritable is not None:
        lines.append(f"The current storage folder cannot be written: {report.unwritable}")
    if report.outside:
        lines.append(
            "Not scanned, outside the storage roots (nothing there is removed; add the folder with"
            " --storage-root or IMAGESTUDIO_STORAGE_ROOTS to check it):"
        )
        refused = "  (current storage folder: new images are refused)"
        lines += [
            f"  {report.location(root)}{refused if root == report.current else ''}" for root in report.outside
        ]
    if report.findings:
        lines.append("Found:")
    for finding in report.findings:
        path = f"{report.location(finding.image.root).rstrip('/')}/{finding.image.key}"
        if finding.generation_id is not None:
            what = f"row {finding.generation_id}: {path}"
            made = "made" if finding.problem is Problem.MISSING_THUMBNAIL else "row deleted"
            done = made if finding.repaired else ""
        else:
            what = f"{path} ({finding.size} bytes)"
            done = "removed" if finding.repaired else ""
        extra = "; ".join(text for text in (done, finding.note) if text)
        lines.append(f"  {labels[finding.problem]:<24} {what}{f'  [{extra}]' if extra else ''}")
    if report.recent:
        lines.append(
            f"{len(report.recent)} file(s) without a row are younger than {min_age:g} s and were not judged:"
            " a running server may still be recording them (--min-age 0 judges them)."
        )
    remaining = report.remaining
    if not remaining and report.unwritable is None:
        fixed = len(report.repaired)
        lines.append(
            f"OK: repaired {fixed} problem(s); the history and the files agree."
            if fixed
            else "OK: the history and the files agree."
        )
        return "\n".join(lines) + "\n"
    lines.append(f"{len(remaining) + (report.unwritable is not None)} problem(s) remain.")
    kinds = {f.problem for f in remaining}
    if kinds & {Problem.STALE_TEMPORARY, Problem.UNREFERENCED_FILE}:
        lines.append("  --repair removes stale temporary files and image files no row names.")
    if Problem.MISSING_FILE in kinds:
        lines.append(
            "  --repair --prune-missing deletes the rows whose file is gone (put a moved file back instead"
            " to keep its row)."
        )
    if Problem.MISSING_THUMBNAIL in kinds:
        lines.append("  --repair makes the missing thumbnails from their images.")
    if Problem.UNREADABLE_FILE in kinds:
        lines.append("  an unreadable file is never repaired: check its permissions and the disk.")
    return "\n".join(lines) + "\n"
