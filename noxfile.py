"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s slow``, ``nox -s bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole test suite, in the current environment (install with `pip install -e '.[test]'`)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy (strict, src/) and the import rule (domain imports no adapter, http or framework)."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python=False)
def slow(session: nox.Session) -> None:
    """The long-running suites (crash consistency, load): `pytest -m slow`. CI runs them too."""
    session.run("python", "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks of BENCHMARKS.md against real server processes; `-- --quick` for a smoke run.

    Writes BENCHMARKS.md (and bench/last-run.json). Not a test: it never fails on a slow figure.
    `-- --with-suite` also times the test suite; `-- --only P1,P4` re-measures some scenarios.
    """
    session.install("-e", ".[test,bench]")
    session.run("python", "bench/run.py", *session.posargs)
