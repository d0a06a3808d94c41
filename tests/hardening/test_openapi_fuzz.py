"""Schemathesis against the server's own OpenAPI document, in-process over ASGI.

Every operation is called with data its schema allows (positive) and with data it forbids
(negative): no answer is a 5xx, every answer (error ones included) has a documented status and
matches its documented schema, and forbidden data is refused. The app is the real one (SQLite,
image folder, Pillow) with a fast fake engine, so the fuzzer spends its time on the HTTP edge.
The default run is small enough for the README's test command; ``-m slow`` runs a larger one.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from imagestudio.adapters.filesystem import FilesystemImageStorage
from imagestudio.adapters.images import PillowImageInspector, PillowThumbnailMaker
from imagestudio.adapters.sql import (
    SqlDatabase,
    SqlGenerationRepository,
    SqlIdempotencyStore,
    SqlSettingsRepository,
    SqlTaskRepository,
)
from imagestudio.bootstrap import build_services
from imagestudio.config import Config, Secret
from imagestudio.http.app import create_app
from tests.fakes import FakeImageGenerator
from tests.hardening.conftest import TOKEN


def _app(data_dir: Path, **config: Any) -> Litestar:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = SqlDatabase(f"sqlite:///{data_dir / 'imagestudio.db'}")
    db.upgrade_schema()
    services = build_services(
        generator=FakeImageGenerator(steps_reported=2),
        storage=FilesystemImageStorage(data_dir),
        repository=SqlGenerationRepository(db),
        settings=SqlSettingsRepository(db),
        inspector=PillowImageInspector(),
        thumbnails=PillowThumbnailMaker(),
        task_repository=SqlTaskRepository(db),
        idempotency=SqlIdempotencyStore(db),
        max_running=2,
    )
    # schemathesis calls the app as http://testserver: a name the server must be told it has
    return create_app(Config(data_dir=data_dir, allowed_hosts=("testserver",), **config), services=services)


def _schema(app: Litestar) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _schema(_app(tmp_path_factory.mktemp("fuzz") / "data"))


@pytest.fixture(scope="module")
def api_with_token(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _schema(_app(tmp_path_factory.mktemp("fuzz-token") / "data", api_token=Secret(TOKEN)))


# Where the schema cannot say what is valid, a schema-valid value may rightly be refused: an input
# image reference is valid only if it names an image that exists (else 400 or 404), a history
# cursor only if this server handed it out, and `to` only if it is not before `from`; a re-run's
# overrides apply only if the stored generation's operation takes them (and its input must exist).
# A `q` with non-ASCII characters too: the documented word pattern's `\w` is read by the fuzzer's
# generator as fewer characters than Python's (which the server counts words with), so a text it
# builds as 16 words can hold more. Those cases skip "schema-valid data is accepted"; every other
# check still runs on them.
_SEMANTIC = (
    "/api/generate/image-to-image",
    "/api/generate/upscale",
    "/api/images/inspect",
    "/api/history/{generation_id}/rerun",
)


def _skipped_checks(case: Any) -> list[Any]:
    query = case.query or {}
    if (
        case.operation.path in _SEMANTIC
        or "cursor" in query
        or {"from", "to"} <= set(query)
        or not str(query.get("q", "")).isascii()
    ):
        return [positive_data_acceptance]
    return []


def _contain(case: Any) -> None:
    """Keep a fuzzed ``storagePath`` inside the test's data dir: the server would create the folder
    it names anywhere (that is the setting's purpose), and the fuzzer runs with this user's rights.
    Strings keep what makes them valid or not (blank, NUL, length); only where they point changes."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("storagePath"), str):
        path = body["storagePath"]
        if path.strip() and "\x00" not in path and len(path) <= 1024:
            body["storagePath"] = f"fuzzed/{zlib.crc32(path.encode('utf-8', 'surrogatepass')):08x}"


def _fuzz(schema: Any, examples: int, headers: dict[str, str] | None = None) -> list[str]:
    """Run every operation in both modes; the failures, one line each (all of them, not the first)."""
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,
            )
            def run(case: Any) -> None:
                _contain(case)
                case.call_and_validate(headers=headers, excluded_checks=_skipped_checks(case))

            try:
                run()
            except Unsatisfiable:
                # no input of this operation can break its schema (no parameters, or free-form strings)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, FailureGroup) as error:  # a failed check: report it and carry on
                failures.append(f"{operation.label} ({mode.value}): {error}")
    return failures


def test_every_operation_answers_within_its_documented_schema(api: Any) -> None:
    failures = _fuzz(api, examples=10)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_every_operation_answers_within_its_documented_schema_at_length(api: Any) -> None:
    failures = _fuzz(api, examples=100)
    assert not failures, "\n\n".join(failures)


def test_with_a_token_every_operation_refuses_requests_without_it_and_validates_with_it(
    api_with_token: Any,
) -> None:
    failures = _fuzz(api_with_token, examples=3, headers={"Authorization": f"Bearer {TOKEN}"})
    assert not failures, "\n\n".join(failures)
