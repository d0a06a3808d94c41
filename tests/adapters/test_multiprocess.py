"""Several server processes on one database stay consistent (a SQLite file in WAL mode, or PostgreSQL).

Real processes, each with its own engine, write at the same time: ids stay unique and counted,
settings patches of different keys all survive and the last patch of one key wins, and a
generation deleted by two processes at once is reported deleted by exactly one of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import anyio

from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, SqlSettingsRepository
from imagestudio.domain.model import HistoryQuery, Settings
from tests.adapters.test_repository_contract import make_generation

WRITER = """
import json, sys, anyio
from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, SqlSettingsRepository
from imagestudio.domain.model import SettingsPatch
from tests.adapters.test_repository_contract import make_generation

url, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.stdin.readline()  # start together

async def main() -> list[int]:
    db = SqlDatabase(url)
    generations, settings = SqlGenerationRepository(db), SqlSettingsRepository(db)
    ids = []
    for i in range(count):
        added = await generations.add(make_generation(worker * 10_000 + i))
        ids.append(added.id)
        # worker 0 owns defaultWidth, worker 1 defaultHeight; both write defaultSteps
        if worker == 0:
            await settings.update(SettingsPatch(default_width=128 + 64 * (i % 10), default_steps=1 + i))
        else:
            await settings.update(SettingsPatch(default_height=128 + 64 * (i % 10), default_steps=50 + i))
    db.dispose()
    return ids

print(json.dumps(anyio.run(main)))
"""


def _writers(url: str, count: int, root: Path) -> list[list[int]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(worker), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            text=True,
        )
        for worker in range(2)
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_processes_writing_at_once_keep_ids_counts_and_settings(sql_url: str) -> None:
    setup = SqlDatabase(sql_url)
    setup.upgrade_schema()
    count = 25
    first, second = _writers(sql_url, count, Path(__file__).resolve().parents[2])

    assert len(set(first) | set(second)) == 2 * count
    assert first == sorted(first)
    assert second == sorted(second)

    async def check() -> None:
        page = await SqlGenerationRepository(setup).list(HistoryQuery(limit=500))
        assert page.total == 2 * count
        assert sorted(g.id for g in page.items) == sorted(first + second)
        counted = await SqlGenerationRepository(setup).list(HistoryQuery(limit=1, engine="local"))
        assert counted.total == 2 * count
        settings = await SqlSettingsRepository(setup).get()
        last = count - 1
        assert settings.default_width == 128 + 64 * (last % 10)
        assert settings.default_height == 128 + 64 * (last % 10)
        assert settings.default_steps in (1 + last, 50 + last)
        assert settings.storage_path == Settings().storage_path

    anyio.run(check)
    setup.dispose()


def test_a_generation_deleted_by_two_processes_at_once_is_deleted_once(sql_url: str) -> None:
    databases = [SqlDatabase(sql_url) for _ in range(2)]
    databases[0].upgrade_schema()
    repositories = [SqlGenerationRepository(db) for db in databases]
    for index in range(10):
        added = anyio.run(repositories[0].add, make_generation(index))
        outcomes: list[object] = []
        start = threading.Barrier(2)

        threads = [
            threading.Thread(target=_delete_together, args=(repo, added.id, start, outcomes))
            for repo in repositories
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes, key=lambda o: o is None) == [added, None]
    assert anyio.run(repositories[0].list, HistoryQuery()).total == 0
    for db in databases:
        db.dispose()


def _delete_together(
    repository: SqlGenerationRepository, generation_id: int, start: threading.Barrier, outcomes: list[object]
) -> None:
    start.wait()
    outcomes.append(anyio.run(repository.delete, generation_id))


def test_threads_with_their_own_engines_never_share_an_id(sql_url: str) -> None:
    writers = 4
    databases = [SqlDatabase(sql_url) for _ in range(writers)]
    databases[0].upgrade_schema()
    ids: list[int] = []
    lock = threading.Lock()

    def write(worker: int, db: SqlDatabase) -> None:
        repository = SqlGenerationRepository(db)
        for i in range(15):
            added = anyio.run(repository.add, make_generation(worker * 1000 + i))
            with lock:
                ids.append(added.id)

    threads = [threading.Thread(target=write, args=(n, db)) for n, db in enumerate(databases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == len(set(ids)) == writers * 15
    assert anyio.run(SqlGenerationRepository(databases[0]).list, HistoryQuery()).total == writers * 15
    for db in databases:
        db.dispose()
