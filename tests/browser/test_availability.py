"""Without Chromium the browser tests skip, saying why; under ``CI=true`` they fail instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM_ENV, chromium_executable


def test_a_missing_chromium_skips_with_the_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-chromium")
    with pytest.raises(pytest.skip.Exception, match=r"Chromium not found at .*no-chromium"):
        chromium_executable({CHROMIUM_ENV: missing})


def test_a_missing_chromium_fails_under_ci(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires the browser tests"):
        chromium_executable({CHROMIUM_ENV: missing, "CI": "true"})


def test_the_executable_named_is_the_one_used(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert chromium_executable({CHROMIUM_ENV: str(fake)}) == str(fake)
