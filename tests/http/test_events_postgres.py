"""The progress WebSocket's tests again, on a PostgreSQL database: the stream is then the shared
``task_events`` table (``adapters/sql/events.py``) rather than the in-memory hub, and the socket
behaves the same (monotone progress, one terminal message, late subscribers, replay by ``seq``,
previews only live)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config
from imagestudio.http.app import create_app
from tests.databases import PostgresServer
from tests.http.test_previews import (
    test_a_socket_that_asks_gets_small_previews_at_most_a_few_a_second,
    test_no_preview_is_made_without_a_watcher_or_kept_for_a_replay,
)
from tests.http.test_tasks import test_a_reconnecting_socket_replays_what_it_missed_after_a_seq
from tests.http.test_websocket import (
    test_a_failed_task_reports_its_error_and_code_and_leaves_nothing,
    test_a_late_subscriber_gets_the_terminal_message_once,
    test_a_task_subscriber_sees_monotone_progress_and_one_completed,
    test_the_all_tasks_socket_receives_every_task_and_filters_are_respected,
)

pytestmark = pytest.mark.postgres

__all__ = [
    "test_a_failed_task_reports_its_error_and_code_and_leaves_nothing",
    "test_a_late_subscriber_gets_the_terminal_message_once",
    "test_a_reconnecting_socket_replays_what_it_missed_after_a_seq",
    "test_a_socket_that_asks_gets_small_previews_at_most_a_few_a_second",
    "test_a_task_subscriber_sees_monotone_progress_and_one_completed",
    "test_no_preview_is_made_without_a_watcher_or_kept_for_a_replay",
    "test_the_all_tasks_socket_receives_every_task_and_filters_are_respected",
]


@pytest.fixture
def client(data_dir: Path, postgres: PostgresServer) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The real application on a fresh PostgreSQL schema (the module's tests use this one)."""
    with postgres.schema() as url:
        app = create_app(Config(data_dir=data_dir, database_url=url))
        with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
            yield test_client
