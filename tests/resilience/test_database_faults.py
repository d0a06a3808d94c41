"""A database that is locked or unreachable: 503 DATABASE_ERROR, nothing half-written, and the next
request after it returns works, without a restart.

The faults are real: another SQLite connection holding the write lock longer than the busy
timeout (``?timeout=`` in the URL keeps the test quick), before a request or while its image is
being made; a SQLite file made read-only and then writable again (the server runs without the
permission override root has); PostgreSQL behind a TCP relay that the test cuts and restores (the
shared PostgreSQL server itself is never stopped), and its server ending every connection of the
database (``pg_terminate_backend``); and a URL on which nothing listens at all.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy.engine import make_url

from imagestudio.adapters.sql import SqlDatabase
from imagestudio.config import Config, Secret
from imagestudio.domain.errors import DatabaseError
from imagestudio.http.app import create_app
from imagestudio.testing.fake_runware import FakeRunware
from tests.databases import PostgresServer
from tests.resilience.servers import drop_file_permission_override, image_files, temporaries
from tests.servers import free_port, start_server, stop_server

SMALL = {"prompt": "a small green circle", "width": 128, "height": 128, "steps": 1}
BUSY_TIMEOUT = 0.5
RUNWARE_KEY = "rw-db-fault-key-0123456789"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "DATABASE_ERROR"
    assert body["error"].startswith("The database is unavailable")


@contextmanager
def write_lock(db_path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock (readers of a WAL database carry on)."""
    with closing(sqlite3.connect(db_path, isolation_level=None, timeout=0)) as other:
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


def test_a_database_locked_longer_than_the_busy_timeout_is_503_and_works_once_released(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    db_path = data_dir / "imagestudio.db"
    config = Config(data_dir=data_dir, database_url=f"sqlite:///{db_path}?timeout={BUSY_TIMEOUT}")
    with TestClient(create_app(config), base_url="http://127.0.0.1:8000") as client:
        first = client.post("/api/generate/text-to-image", json=SMALL).json()["data"]
        storage = data_dir / "generated"

        with write_lock(db_path):
            started = time.monotonic()
            assert_unavailable(client.post("/api/generate/text-to-image", json=SMALL))
            assert time.monotonic() - started < 10 * BUSY_TIMEOUT + 5
            assert_unavailable(client.put("/api/settings", json={"defaultSteps": 9}))
            assert_unavailable(client.delete(f"/api/history/{first['id']}"))
            assert client.get(first["filePath"]).status_code == 200  # the row went nowhere, nor its file
            assert client.get("/api/history").json()["total"] == 1  # reading a WAL database still works
            assert len(image_files(storage)) == 1
            assert temporaries(storage) == []

        again = client.post("/api/generate/text-to-image", json=SMALL)
        assert again.status_code == 200, again.text
        assert client.put("/api/settings", json={"defaultSteps": 9}).json()["data"]["defaultSteps"] == 9
        assert client.delete(f"/api/history/{first['id']}").status_code == 200
        history = client.get("/api/history").json()
        assert [g["id"] for g in history["data"]] == [again.json()["data"]["id"]]
        assert len(image_files(storage)) == 1


def test_a_lock_taken_while_an_image_is_made_fails_that_generation_with_503_and_removes_its_file(
    tmp_path: Path,
) -> None:
    """The engine (the fake Runware, 1.5 s per image) is working when the lock is taken: the image
    is written, its task cannot be recorded, and the file is removed again."""
    data_dir = tmp_path / "data"
    db_path = data_dir / "imagestudio.db"
    with FakeRunware.running(api_key=RUNWARE_KEY, latency=1.5) as fake:
        config = Config(
            data_dir=data_dir,
            database_url=f"sqlite:///{db_path}?timeout={BUSY_TIMEOUT}",
            engine="runware",
            runware_api_key=Secret(RUNWARE_KEY),
            runware_api_url=fake.url,
            runware_timeout=20,
        )
        with TestClient(create_app(config), base_url="http://127.0.0.1:8000") as client:
            answers: list[httpx.Response] = []
            body = {**SMALL, "taskId": "mid-lock"}
            post = threading.Thread(
                target=lambda: answers.append(client.post("/api/generate/text-to-image", json=body))
            )
            post.start()
            deadline = time.monotonic() + 20
            while client.get("/api/tasks/mid-lock").json().get("data", {}).get("status") != "generating":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            with write_lock(db_path):
                post.join(timeout=30)
                [answer] = answers
                assert_unavailable(answer)
                task = client.get("/api/tasks/mid-lock").json()["data"]
                assert (task["status"], task["error"]["code"]) == ("failed", "DATABASE_ERROR")
            storage = data_dir / "generated"
            assert image_files(storage) == []
            assert temporaries(storage) == []
            assert client.get("/api/history").json()["total"] == 0

            again = client.post("/api/generate/text-to-image", json=SMALL)
            assert again.status_code == 200, again.text
            assert len(image_files(storage)) == 1


def burst(client: httpx.Client, count: int = 6) -> list[int]:
    """``count`` generations at once (the server opens more connections than one request would)."""
    statuses: list[int] = []

    def one() -> None:
        statuses.append(client.post("/api/generate/text-to-image", json=SMALL).status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def test_a_database_file_made_read_only_is_503_and_works_again_once_writable_without_a_restart(
    tmp_path: Path,
) -> None:
    """Connections SQLite opened while the file was read-only stay read-only for good; the server
    must drop them (and the older ones) once a write fails that way."""
    wrap = drop_file_permission_override()
    if wrap is None:
        pytest.skip("running as root without setpriv: root would ignore the file's permissions")
    data_dir = tmp_path / "data"
    server = start_server(data_dir, wrap=wrap)
    db_files = [data_dir / name for name in ("imagestudio.db", "imagestudio.db-wal", "imagestudio.db-shm")]
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert burst(client) == [200] * 6
            present = [path for path in db_files if path.exists()]
            for path in present:
                path.chmod(0o444)
            try:
                # connections opened before keep their writable handle: load makes new ones
                refusals = 0
                for _ in range(30):  # on a loaded machine the pool may take a few bursts to grow
                    statuses = burst(client, 12)
                    assert set(statuses) <= {200, 503}
                    refusals += statuses.count(503)
                    if refusals:
                        break
                assert refusals > 0
                refused = client.put("/api/settings", json={"defaultSteps": 9})
                assert_unavailable(refused)
                assert "readonly" in refused.json()["error"]
            finally:
                for path in present:
                    path.chmod(0o644)

            for _ in range(3):
                assert burst(client) == [200] * 6
            assert client.put("/api/settings", json={"defaultSteps": 9}).status_code == 200
            total = client.get("/api/history").json()["total"]
            assert total >= 6 * 4
            assert len(image_files(data_dir / "generated")) == total
    finally:
        stop_server(server)


def test_a_busy_timeout_in_the_url_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="must be a number of seconds"):
        SqlDatabase(f"sqlite:///{tmp_path / 'x.db'}?timeout=soon")


def test_a_server_whose_database_nobody_listens_on_stops_at_startup_with_one_readable_line(
    tmp_path: Path,
) -> None:
    url = f"postgresql://imagestudio:s3cret-pw@127.0.0.1:{free_port()}/nothing?connect_timeout=3"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagestudio",
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
        ],
        env={"IMAGESTUDIO_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "DATABASE_ERROR" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr


class Relay:
    """A TCP relay to PostgreSQL on a fixed loopback port that can be cut (nothing listens, every
    connection through it is dropped) and restored, as if the database server stopped and came back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):  # wakes the accepting thread; close() alone would not
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
def test_postgresql_going_away_is_503_and_the_server_recovers_when_it_returns(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with postgres.schema() as url:
        target = make_url(url)
        relay = Relay(target.host or "127.0.0.1", target.port or 5432)
        relay.restore()
        relayed = target.set(host="127.0.0.1", port=relay.port).update_query_dict({"connect_timeout": "3"})
        env = {"IMAGESTUDIO_DATABASE_URL": relayed.render_as_string(hide_password=False)}
        server = start_server(tmp_path / "data", env)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                first = client.post("/api/generate/text-to-image", json=SMALL)
                assert first.status_code == 200, first.text

                relay.cut()
                for request in (
                    lambda: client.get("/api/history"),
                    lambda: client.post("/api/generate/text-to-image", json=SMALL),
                    lambda: client.put("/api/settings", json={"defaultSteps": 7}),
                ):
                    assert_unavailable(request())
                storage = tmp_path / "data" / "generated"
                assert len(image_files(storage)) == 1
                assert temporaries(storage) == []

                relay.restore()
                recovered = client.post("/api/generate/text-to-image", json=SMALL)
                assert recovered.status_code == 200, recovered.text
                assert client.get("/api/history").json()["total"] == 2
                assert len(image_files(storage)) == 2
        finally:
            stop_server(server)
            relay.cut()


@pytest.mark.postgres
def test_postgresql_ending_every_connection_of_the_database_leaves_the_next_requests_working(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """``pg_terminate_backend`` (an administrator, a failover, a restart) kills the pooled
    connections; the requests after it are answered on new ones."""
    with postgres.schema() as url:
        server = start_server(tmp_path / "data", {"IMAGESTUDIO_DATABASE_URL": url})
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                assert burst(client) == [200] * 6
                assert postgres.terminate_connections() > 0
                assert burst(client) == [200] * 6
                assert client.put("/api/settings", json={"defaultSteps": 7}).status_code == 200
                assert client.get("/api/history").json()["total"] == 12
        finally:
            stop_server(server)


def test_a_server_started_on_a_read_only_database_works_once_it_is_writable(
    tmp_path: Path,
) -> None:
    """Connections SQLite opens while the file is read-only stay read-only for good; the server
    must drop them (and the older ones) once a write fails that way.

    The server is started while the file is read-only, so every connection it has is one of
    those, and so are the -wal and -shm files it makes: all its connections, the change watch's
    too, share one read-only wal-index until every one of them is closed (and the failed
    statement's cursor, left open, kept a closed connection's files open)."""
    wrap = drop_file_permission_override()
    if wrap is None:
        pytest.skip("running as root without setpriv: root would ignore the file's permissions")
    data_dir = tmp_path / "data"
    server = start_server(data_dir, wrap=wrap)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert burst(client) == [200] * 6
    finally:
        stop_server(server)
    database = data_dir / "imagestudio.db"
    database.chmod(0o444)

    def writable_again() -> None:
        # SQLite made its -wal and -shm files with the database's (read-only) mode: the user
        # makes the database's files writable again, as a remount or a restored backup would
        for path in (database, data_dir / "imagestudio.db-wal", data_dir / "imagestudio.db-shm"):
            if path.exists():
                path.chmod(0o644)

    try:
        server = start_server(data_dir, wrap=wrap)
    except BaseException:
        writable_again()
        raise
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            try:
                assert client.get("/api/history").json()["total"] == 6  # reads still work
                assert set(burst(client, 4)) == {503}
                refused = client.put("/api/settings", json={"defaultSteps": 9})
                assert_unavailable(refused)
                assert "readonly" in refused.json()["error"]
            finally:
                writable_again()

            for _ in range(3):
                assert burst(client) == [200] * 6
            assert client.put("/api/settings", json={"defaultSteps": 9}).status_code == 200
            total = client.get("/api/history").json()["total"]
            assert total == 6 + 6 * 3
            assert len(image_files(data_dir / "generated")) == total
    finally:
        stop_server(server)


_READ_ONLY_SPELL = """
import asyncio, sys
from pathlib import Path
from sqlalchemy import text
from imagestudio.adapters.sql import SqlDatabase
from imagestudio.domain.errors import DatabaseUnavailable

database = Path(sys.argv[1])
db = SqlDatabase(f"sqlite:///{database}")
db.upgrade_schema()  # leaves -wal and -shm files as read-only as the database
held = [db.engine.connect() for _ in range(3)]  # three connections at once: three idle ones after
for connection in held:
    connection.execute(text("SELECT count(*) FROM generations")).scalar()
for connection in held:
    connection.close()

def write(connection):
    connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (a)")
    connection.exec_driver_sql("INSERT INTO probe VALUES (1)")
    return "written"

try:
    asyncio.run(db.write(write))
except DatabaseUnavailable as error:
    print("refused:", error)
for path in database.parent.iterdir():
    if path.name.startswith(database.name):
        path.chmod(0o644)
print(asyncio.run(db.write(write)))
print("faulted:", db.faulted)  # a write committed: back to the pool's connections as they are
"""


def test_sql_database_opened_on_a_read_only_file_writes_once_it_is_writable(tmp_path: Path) -> None:
    """SqlDatabase alone, no watch: the files SQLite made in the read-only spell are read-only
    too, so each connection of the spell maps the wal-index read-only, and the process shares
    that mapping while any of them is open. The invalidated connection must really close (its
    failed statement's cursor is closed) and so must the idle ones the pool still holds."""
    wrap = drop_file_permission_override()
    if wrap is None:
        pytest.skip("running as root without setpriv: root would ignore the file's permissions")
    database = tmp_path / "imagestudio.db"
    db = SqlDatabase(f"sqlite:///{database}")
    db.upgrade_schema()
    db.dispose()
    database.chmod(0o444)
    package_root = Path(sys.modules["imagestudio"].__file__ or "").parents[1]
    result = subprocess.run(
        [*wrap, sys.executable, "-c", _READ_ONLY_SPELL, str(database)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(package_root)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused:")
    assert "readonly" in lines[0]
    assert lines[1:] == ["written", "faulted: False"]
