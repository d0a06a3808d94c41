"""The status table of ``http/errors.py`` and the error tree drawn in ``domain/errors.py``.

Each error class of the domain answers, through the real exception handlers, with its status
and code in the spec's error shape; every class of the tree is in :data:`EXPECTED` (a new one
must be added here, deciding its status); no entry of ``ERROR_STATUS`` is hidden behind a more
general one before it; and the tree drawn in the docstring is the real one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

import pytest
from litestar import Litestar, get
from litestar.params import QueryParameter
from litestar.testing import TestClient

from imagestudio.domain import errors
from imagestudio.domain.errors import (
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    GenerationCancelled,
    IncompatibleDatabase,
    Interrupted,
    InvalidParameters,
    InvalidPrompt,
    InvalidStoragePath,
    NotFound,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    QueueFull,
    StorageError,
    StudioError,
)
from imagestudio.http.errors import ERROR_STATUS, EXCEPTION_HANDLERS, status_for
from tests.assertions import assert_error

EXPECTED: list[tuple[type[StudioError], int, str]] = [
    (StudioError, 500, "INTERNAL_ERROR"),
    (InvalidPrompt, 400, "INVALID_PROMPT"),
    (InvalidParameters, 400, "INVALID_PARAMETERS"),
    (NotFound, 404, "NOT_FOUND"),
    (Conflict, 409, "CONFLICT"),
    (QueueFull, 503, "QUEUE_FULL"),
    (GenerationCancelled, 409, "CANCELLED"),
    (Interrupted, 500, "INTERRUPTED"),
    (StorageError, 500, "STORAGE_ERROR"),
    (InvalidStoragePath, 400, "STORAGE_ERROR"),
    (DatabaseError, 500, "DATABASE_ERROR"),
    (DatabaseUnavailable, 503, "DATABASE_ERROR"),
    (IncompatibleDatabase, 500, "DATABASE_ERROR"),
    (ProviderError, 500, "API_ERROR"),
    (ProviderRejected, 500, "API_ERROR"),
    (ProviderUnavailable, 503, "API_ERROR"),
    (ProviderTimeout, 500, "API_TIMEOUT"),
]

_TREE_LINE = re.compile(r"^(?P<indent> *)[*+-] (?P<name>\w+) +(?P<code>[A-Z_]+)$")


def _domain_errors() -> set[type[StudioError]]:
    return {
        value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, StudioError)
    }


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    by_name = {error_type.__name__: error_type for error_type in _domain_errors()}

    @get("/raise", sync_to_thread=False)
    def raise_error(name: Annotated[str, QueryParameter()]) -> None:
        raise by_name[name](f"{name} happened", details={"which": name})

    app = Litestar([raise_error], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(("error_type", "status", "code"), EXPECTED, ids=[t.__name__ for t, _, _ in EXPECTED])
def test_each_error_class_answers_with_its_status_and_code(
    client: TestClient[Litestar], error_type: type[StudioError], status: int, code: str
) -> None:
    assert error_type.code == code
    assert status_for(error_type("it failed")) == status
    answer = client.get("/raise", params={"name": error_type.__name__})
    assert assert_error(answer, status, code)["details"] == {"which": error_type.__name__}


def test_every_class_of_the_tree_has_its_status_decided_and_no_entry_of_the_table_is_hidden() -> None:
    assert {error_type for error_type, _, _ in EXPECTED} == _domain_errors()
    for error_type, status in ERROR_STATUS:
        assert status_for(error_type("it failed")) == status, f"{error_type.__name__} is shadowed"


def test_the_tree_drawn_in_the_docstring_is_the_real_one() -> None:
    assert errors.__doc__ is not None
    drawn = [m for line in errors.__doc__.splitlines() if (m := _TREE_LINE.match(line))]
    assert {m["name"] for m in drawn} == {error_type.__name__ for error_type in _domain_errors()}
    parents: dict[int, type[StudioError]] = {}
    for m in drawn:
        error_type = getattr(errors, m["name"])
        depth = len(m["indent"]) // 2
        assert error_type.code == m["code"], m["name"]
        if depth:
            assert error_type.__bases__ == (parents[depth - 1],), m["name"]
        else:
            assert error_type is StudioError
        parents[depth] = error_type
