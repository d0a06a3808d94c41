"""P3: the history at a million generations, on SQLite and PostgreSQL (a measurement, not a test).

    python bench/history.py                  # 1,000,000 rows on both databases; writes BENCHMARKS.md
    python bench/history.py --rows 100000    # fewer rows (the section says how many)
    python bench/history.py --quick          # 20,000 rows, few repeats: a smoke run, prints only
    python bench/history.py --only sqlite    # one database
    python bench/history.py --keep /tmp/hist # keep the filled databases and reuse them next time

Each database is made by the real migrations, then filled in bulk without the API, as an import
would: secondary indexes (and on SQLite the triggers) off, rows in (SQLite ``executemany`` in one
transaction, PostgreSQL ``COPY``), then indexes, triggers, the FTS index and the counts made again
from the rows; PostgreSQL then gets ``VACUUM ANALYZE`` (as autovacuum would) and a ``CHECKPOINT``.
Every figure is the time of one ``SqlGenerationRepository.list`` call as the server makes it
(worker thread, connection, page query, total, mapping to domain objects), measured in-process,
repeated, warm cache.

PostgreSQL: ``IMAGESTUDIO_BENCH_POSTGRES_URL``, else ``IMAGESTUDIO_TEST_POSTGRES_URL``, else the
local server (``postgres@127.0.0.1:5432/test``); a database ``imagestudio_bench_<pid>`` is made
there and dropped at the end. The P3 section of ``BENCHMARKS.md`` (between its markers) is this
script's; the rest of the file is left as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, database_url  # noqa: E402
from imagestudio.domain.model import (  # noqa: E402
    HistoryCursor,
    HistoryQuery,
    HistorySort,
    Operation,
    TagQuery,
)

BEGIN = "<!-- bench/history.py: P3 begin -->"
END = "<!-- bench/history.py: P3 end -->"
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
COLUMNS = (
    "type, operation, prompt, negative_prompt, parameters, seed, width, height, file_key, storage_root,"
    " remote_url, task_id, engine, model, cost, favorite, tags, created_at"
)

SUBJECTS = [
    *("castle", "lighthouse", "city", "forest", "mountain", "ocean", "desert", "village", "harbor"),
    *("temple", "garden", "river", "bridge", "robot", "dragon", "astronaut", "cat", "fox", "owl"),
    *("wolf", "horse", "whale", "ship", "train", "tower", "cathedral", "market", "island", "volcano"),
    *("canyon", "glacier", "meadow"),
]
ADJECTIVES = [
    *("red", "blue", "golden", "silver", "ancient", "futuristic", "misty", "quiet", "stormy", "frozen"),
    *("glowing", "dark", "bright", "tiny", "giant", "ruined", "floating", "hidden", "peaceful"),
    *("vibrant", "lonely", "crowded", "sunlit", "moonlit", "rainy", "snowy", "dusty", "neon"),
    *("emerald", "crimson"),
]
STYLES = [
    *("oil painting", "watercolor", "photograph", "35mm film", "digital art", "concept art"),
    *("pencil sketch", "isometric", "ukiyo-e", "art nouveau", "cyberpunk", "steampunk", "baroque"),
    *("minimalist", "low poly", "pixel art", "studio lighting", "cinematic", "volumetric light"),
    *("golden hour", "4k", "8k", "highly detailed", "bokeh", "wide angle", "macro"),
]
PLACES = [
    "at dawn",
    "at dusk",
    "at night",
    "in winter",
    "in autumn",
    "under the stars",
    "in the rain",
    "in fog",
]
NEGATIVES = ["blurry", "low quality", "watermark", "text", "deformed", "extra fingers", "oversaturated"]
MODELS = [f"runware:{n}@1" for n in (100, 101, 97, 5, 2)] + ["civitai:4384@128713", "civitai:133005@782002"]
OPERATIONS = ["text-to-image"] * 40 + ["image-to-image"] * 7 + ["upscale"] * 3
TAGS = [
    *("portfolio", "wallpaper", "reference", "print", "client-a", "client-b", "draft", "keep"),
    *("sunset", "portrait", "landscape", "night", "winter", "blue", "moody", "bright", "sketch"),
    *("series-1", "series-2", "series-3", "to-upscale", "to-delete", "shared", "favourite-style"),
    *("mood-board", "concept", "cover", "poster", "texture", "icon", "banner", "story", "study"),
    *("experiment", "seed-hunt", "lora-test", "cfg-test", "steps-test", "colour", "monochrome"),
]
TAG_WEIGHTS = [1 / (rank + 1) for rank in range(len(TAGS))]
"""Zipf-like: ``portfolio`` is the most used tag (on 11% of all generations), the last ones rare."""


def rows(count: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """``count`` generations in creation order, spread over three years, a few at the same instant.

    Prompts: "a [adjective] adjective subject place, 1 to 4 styles"; 40% have a negative prompt;
    80% text-to-image, 14% image-to-image, 6% upscale; half local, half Runware; seven models.
    3% are favourites; 30% carry 1 to 3 of 40 tags (Zipf-like: ``portfolio`` on 11% of all
    generations, ``monochrome`` on 0.3%). Favourites and tags come from a random stream of their
    own, so the other columns are the rows earlier runs measured.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    kept = random.Random(seed + 1)  # noqa: S311 - as above
    pick = rng.choice
    step = dt.timedelta(days=3 * 365) / count
    for index in range(count):
        created = START + step * (index if rng.random() > 0.02 else index - 1)
        operation = pick(OPERATIONS)
        engine = "runware" if rng.random() < 0.5 else "local"
        model = None if operation == "upscale" else pick(MODELS)
        side = pick((512, 768, 1024))
        seed_value = rng.getrandbits(52) + 1
        extra = rng.random()
        prompt = f"a {pick(ADJECTIVES)} {pick(SUBJECTS)} {pick(PLACES)}, {pick(STYLES)}"
        if extra < 0.5:
            prompt = f"a {pick(ADJECTIVES)} {prompt[2:]}, {pick(STYLES)}"
        if extra < 0.2:
            prompt += f", {pick(STYLES)}, {pick(STYLES)}"
        negative = f"{pick(NEGATIVES)}, {pick(NEGATIVES)}" if rng.random() < 0.4 else None
        upscale = operation == "upscale"
        parameters = (
            f'{{"width": {side}, "height": {side}, "steps": {"null" if upscale else 4 + index % 47},'
            f' "cfgScale": {"null" if upscale else 7.5}, "seed": {seed_value},'
            f' "model": {json.dumps(model)}, "engine": "{engine}",'
            f' "strength": {0.7 if operation == "image-to-image" else "null"},'
            f' "scale": {2 if upscale else "null"}, "sourceId": null}}'
        )
        yield (
            "image",
            operation,
            prompt,
            negative,
            parameters,
            seed_value,
            side,
            side,
            f"{index // 3000:04d}/{index:032x}.jpg",
            "/data/generated",
            f"https://im.runware.ai/image/{index:x}.jpg" if engine == "runware" else None,
            f"task-{index:x}",
            engine,
            model,
            0.0013 if engine == "runware" else None,
            kept.random() < 0.03,
            _tags(kept),
            created,
        )


def _tags(rng: random.Random) -> str:
    """The JSON list of a generation's tags: none for 70%, else 1 to 3 distinct ones."""
    if rng.random() >= 0.3:
        return "[]"
    chosen: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        tag = rng.choices(TAGS, weights=TAG_WEIGHTS)[0]
        if tag not in chosen:
            chosen.append(tag)
    return json.dumps(chosen)


# --- filling ------------------------------------------------------------------------------------


def fill_sqlite(path: Path, data: list[tuple[Any, ...]]) -> float:
    """Bulk load as an import would: secondary indexes and triggers off, rows in, the tag rows and
    counts made from them, then indexes, the triggers, the FTS index (``rebuild``) and the counts
    made again from the rows."""
    db = SqlDatabase(f"sqlite:///{path}")
    db.upgrade_schema()
    db.dispose()
    started = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")
    schema = connection.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('generations', 'generation_tags')"
        " AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    marks = ", ".join("?" * 18)
    connection.execute("BEGIN")
    for kind, name, _ in schema:
        connection.execute(f"DROP {kind} {name}")
    for start in range(0, len(data), 50_000):
        batch = [
            (*row[:-1], row[-1].strftime("%Y-%m-%d %H:%M:%S.%f")) for row in data[start : start + 50_000]
        ]
        connection.executemany(f"INSERT INTO generations ({COLUMNS}) VALUES ({marks})", batch)  # noqa: S608
    for statement in _SQLITE_TAG_REBUILD:
        connection.execute(statement)
    for _, _, ddl in schema:
        connection.execute(ddl)
    connection.execute("INSERT INTO generations_fts (generations_fts) VALUES ('rebuild')")
    connection.execute("DELETE FROM generation_counts")
    connection.execute("INSERT INTO generation_counts SELECT type, count(*) FROM generations GROUP BY type")
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return time.perf_counter() - started


# The tag rows and the tag and favourite counts, made from the rows as the triggers would have made
# them (which, with the other triggers, are off while this runs).
_SQLITE_TAG_REBUILD = [
    "DELETE FROM generation_tags",
    "INSERT INTO generation_tags (tag, created_at, generation_id)"
    " SELECT DISTINCT j.value, g.created_at, g.id FROM generations AS g, json_each(g.tags) AS j"
    " WHERE g.tags <> '[]' ORDER BY 1, 2, 3",
    "DELETE FROM tag_counts",
    "INSERT INTO tag_counts (tag, total) SELECT tag, count(*) FROM generation_tags GROUP BY tag",
    "DELETE FROM favorite_counts",
    "INSERT INTO favorite_counts (type, total)"
    " SELECT type, count(*) FROM generations WHERE favorite GROUP BY type",
]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def fill_postgresql(url: str, data: list[tuple[Any, ...]]) -> float:
    """Bulk load as an import would: secondary indexes off, ``COPY`` (the statement triggers keep the
    counts per type and per search word, and make the tag rows and their counts), indexes made
    again, then ``VACUUM ANALYZE`` as autovacuum would."""
    db = SqlDatabase(url)
    db.upgrade_schema()
    db.dispose()
    started = time.perf_counter()
    with psycopg.connect(_libpq(url)) as connection:
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'generations'"
            " AND indexname NOT IN ('generations_pkey', 'generations_file_key_key')"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        with connection.cursor() as cursor, cursor.copy(f"COPY generations ({COLUMNS}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        connection.execute("SET maintenance_work_mem = '1GB'")
        for _, ddl in indexes:
            connection.execute(ddl.encode())
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE generations")
        connection.execute("VACUUM ANALYZE generation_tags")
        connection.execute("VACUUM ANALYZE tag_counts")
        connection.execute("CHECKPOINT")  # write the load out now, not while measuring
    return time.perf_counter() - started


@contextmanager
def postgres_database(kept: str | None = None) -> Iterator[tuple[str, bool]]:
    """A database to fill (its URL, and whether it is a kept one already filled): a new one dropped at
    the end, or with ``kept`` the database of that name, made if missing and left in place."""
    raw = (
        os.environ.get("IMAGESTUDIO_BENCH_POSTGRES_URL")
        or os.environ.get("IMAGESTUDIO_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    admin = database_url(raw)
    name = kept or f"imagestudio_bench_{os.getpid()}"
    with psycopg.connect(_libpq(admin), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    filled = bool(exists) and _pg_filled(url)
    try:
        yield url, filled
    finally:
        if kept is None:
            with psycopg.connect(_libpq(admin), autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _pg_filled(url: str) -> bool:
    with psycopg.connect(_libpq(url)) as connection:
        made = connection.execute("SELECT to_regclass('generations') IS NOT NULL").fetchone()
        if not made or not made[0]:
            return False
        row = connection.execute("SELECT EXISTS (SELECT 1 FROM generations)").fetchone()
        return bool(row and row[0])


# --- measuring ----------------------------------------------------------------------------------


Scenario = tuple[str, str, float | None, Callable[[], HistoryQuery | TagQuery], int]


def scenarios(db: SqlDatabase, count: int, repeat: int) -> list[Scenario]:
    """(key, what, target ms for p50, query, repetitions)."""
    deep = _cursor_at(db, int(count * 0.9))
    deep_filtered = _cursor_at(db, int(count * 0.45), engine="runware")
    deep_favourite = _cursor_at(db, int(_total(db, favorite=True) * 0.9), favorite=True)
    deep_tag = _cursor_at(db, int(_total(db, tags=("portfolio",)) * 0.9), tags=("portfolio",))
    middle = START + dt.timedelta(days=365)
    window = {"created_from": middle, "created_to": middle + dt.timedelta(days=180)}
    return [
        ("first", "first page of 50, newest first", 5.0, lambda: HistoryQuery(limit=50), repeat),
        (
            "cursor",
            "page of 50 by cursor, 90% deep",
            5.0,
            lambda: HistoryQuery(limit=50, cursor=deep),
            repeat,
        ),
        (
            "cursor_filter",
            "page of 50 by cursor, `engine=runware`, 90% deep",
            None,
            lambda: HistoryQuery(limit=50, engine="runware", cursor=deep_filtered),
            repeat,
        ),
        (
            "oldest",
            "first page of 50, `sort=oldest`",
            None,
            lambda: HistoryQuery(limit=50, sort=HistorySort.OLDEST),
            repeat,
        ),
        (
            "q2",
            "`q=castle golden` (two words, 0.4% of rows)",
            20.0,
            lambda: HistoryQuery(q="castle golden"),
            repeat,
        ),
        ("q1", "`q=castle` (one word, 3% of rows)", 20.0, lambda: HistoryQuery(q="castle"), repeat),
        (
            "qrare",
            "`q=lighthouse emerald watercolor` (134 rows)",
            20.0,
            lambda: HistoryQuery(q="lighthouse emerald watercolor"),
            repeat,
        ),
        (
            "qfilter",
            "`q=castle golden&engine=runware` (search and a filter)",
            None,
            lambda: HistoryQuery(q="castle golden", engine="runware"),
            max(10, repeat // 4),
        ),
        (
            "count",
            "filtered count: `operation=upscale&engine=local` + 6 months (total and first page)",
            None,
            lambda: HistoryQuery(limit=50, operation=Operation.UPSCALE, engine="local", **window),
            max(10, repeat // 4),
        ),
        (
            "count_model",
            "filtered count: `model=runware:100@1` (total and first page)",
            None,
            lambda: HistoryQuery(limit=50, model="runware:100@1"),
            max(10, repeat // 4),
        ),
        (
            "fav_first",
            "first page of 50, `favorite=true` (3% of rows), with its total",
            5.0,
            lambda: HistoryQuery(limit=50, favorite=True),
            repeat,
        ),
        (
            "fav_cursor",
            "page of 50 by cursor, `favorite=true`, 90% deep",
            5.0,
            lambda: HistoryQuery(limit=50, favorite=True, cursor=deep_favourite),
            repeat,
        ),
        (
            "fav_false",
            "first page of 50, `favorite=false` (total: every row less the favourites)",
            None,
            lambda: HistoryQuery(limit=50, favorite=False),
            repeat,
        ),
        (
            "tag_first",
            "first page of 50, `tag=portfolio` (the most used tag, 11% of rows), with its total",
            5.0,
            lambda: HistoryQuery(limit=50, tags=("portfolio",)),
            repeat,
        ),
        (
            "tag_cursor",
            "page of 50 by cursor, `tag=portfolio`, 90% deep",
            5.0,
            lambda: HistoryQuery(limit=50, tags=("portfolio",), cursor=deep_tag),
            repeat,
        ),
        (
            "tag_rare",
            "first page of 50, `tag=monochrome` (the least used of 40 tags, 0.3%)",
            5.0,
            lambda: HistoryQuery(limit=50, tags=("monochrome",)),
            repeat,
        ),
        (
            "tag_two",
            "`tag=portfolio&tag=wallpaper` (two tags; total counted)",
            None,
            lambda: HistoryQuery(limit=50, tags=("portfolio", "wallpaper")),
            max(10, repeat // 4),
        ),
        (
            "tag_filter",
            "`tag=portfolio&favorite=true&engine=runware` (total counted)",
            None,
            lambda: HistoryQuery(limit=50, tags=("portfolio",), favorite=True, engine="runware"),
            max(10, repeat // 4),
        ),
        (
            "tag_list",
            "the tag list (`GET /api/tags`): the 100 most used tags with their counts",
            5.0,
            lambda: TagQuery(limit=100),
            repeat,
        ),
        (
            "offset",
            "page of 50 by `offset`, 90% deep (for contrast)",
            None,
            lambda: HistoryQuery(limit=50, offset=int(count * 0.9)),
            5,
        ),
    ]


def _total(db: SqlDatabase, **filters: Any) -> int:
    async def count() -> int:
        return (await SqlGenerationRepository(db).list(HistoryQuery(limit=1, **filters))).total

    return anyio.run(count)


def _cursor_at(db: SqlDatabase, position: int, **filters: Any) -> HistoryCursor:
    async def find() -> HistoryCursor:
        page = await SqlGenerationRepository(db).list(HistoryQuery(limit=1, offset=position, **filters))
        return HistoryCursor.after(page.items[0], HistorySort.NEWEST)

    return anyio.run(find)


def measure(db: SqlDatabase, count: int, repeat: int) -> dict[str, dict[str, Any]]:
    repository = SqlGenerationRepository(db)
    results: dict[str, dict[str, Any]] = {}
    planned = scenarios(db, count, repeat)

    async def run() -> None:
        for key, what, target, make, times in planned:
            query = make()
            call = repository.count_tags if isinstance(query, TagQuery) else repository.list
            found = await call(query)  # type: ignore[arg-type] # warm-up
            total, items = (
                (len(found), len(found)) if isinstance(found, list) else (found.total, len(found.items))
            )
            samples = []
            for _ in range(times):
                started = time.perf_counter()
                await call(query)  # type: ignore[arg-type]
                samples.append((time.perf_counter() - started) * 1000)
            samples.sort()
            results[key] = {
                "what": what,
                "target": target,
                "p50": statistics.median(samples),
                "p99": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
                "runs": times,
                "total": total,
                "items": items,
            }
            result = results[key]
            print(f"  {key:<13} p50 {result['p50']:8.2f} ms  p99 {result['p99']:8.2f} ms  total {total}")

    anyio.run(run)
    return results


# --- the machine and the report -----------------------------------------------------------------


def machine(pg_url: str | None) -> dict[str, str]:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    facts = {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "load average at the end": " ".join(f"{load:.1f}" for load in os.getloadavg()),
    }
    if pg_url:
        with psycopg.connect(_libpq(pg_url)) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            facts["PostgreSQL"] = str(row[0]) if row else "unknown"
    return facts


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "not run"
    text = f"{result['p50']:.2f} ms (p99 {result['p99']:.2f})"
    if result["target"] is not None:
        text += " ✅" if result["p50"] < result["target"] else " ❌"
    return text


def render(
    results: dict[str, dict[str, dict[str, Any]]], facts: dict[str, str], count: int, fills: dict[str, float]
) -> str:
    keys = list(next(iter(results.values())).keys())
    lines = [
        BEGIN,
        "## P3 history",
        "",
        f"{count:,} generations (three years of prompts from a vocabulary of about 110 words;"
        " 80% text-to-image, half local and half Runware, seven models), schema by the real migrations,"
        " filled in bulk (indexes and triggers made again afterwards, as an import would):"
        + (
            ",".join(f" {kind} in {seconds:.0f} s" for kind, seconds in fills.items())
            or " kept from an earlier run"
        )
        + ". Each figure is one `SqlGenerationRepository.list` call as the server makes it (worker thread,"
        " session, page query, `total`, mapping 50 items to domain objects), warm cache, median and 99th"
        " percentile of repeated runs. Run with `python bench/history.py` (or `nox -s bench`).",
        "",
        "| scenario | target (p50) | SQLite | PostgreSQL |",
        "| --- | --- | --- | --- |",
    ]
    for key in keys:
        first = next(r[key] for r in results.values())
        target = f"< {first['target']:.0f} ms" if first["target"] is not None else "(none)"
        lines.append(
            f"| {first['what']} | {target} | {_cell(results.get('sqlite', {}).get(key))}"
            f" | {_cell(results.get('postgresql', {}).get(key))} |"
        )
    lines += ["", "Machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()) + ".", "", END]
    return "\n".join(lines)


def write(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def _timed_upgrade(url: str) -> None:
    db = SqlDatabase(url)
    started = time.perf_counter()
    revision = db.upgrade_schema()
    db.dispose()
    print(f"  at revision {revision} after {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200, help="runs per page scenario")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 20 runs; prints, writes nothing")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument(
        "--keep",
        metavar="DIR",
        default=None,
        help="keep the filled databases (SQLite in DIR, PostgreSQL database imagestudio_bench_keep_ROWS)"
        " and reuse them when they exist: the code's migrations are applied, the rows are not made again",
    )
    args = parser.parse_args(argv)
    count, repeat = (20_000, 20) if args.quick else (args.rows, args.repeat)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    fills: dict[str, float] = {}
    pg_url: str | None = None
    made: list[tuple[Any, ...]] = []

    def data() -> list[tuple[Any, ...]]:
        if not made:
            print(f"making {count:,} generations ...", flush=True)
            made.extend(rows(count))
        return made

    with tempfile.TemporaryDirectory(prefix="imagestudio-bench-") as folder:
        if args.only in (None, "sqlite"):
            path = Path(args.keep or folder) / f"history-{count}.db"
            if args.keep and path.exists():
                print(f"SQLite: reusing {path} (migrating if needed) ...", flush=True)
                _timed_upgrade(f"sqlite:///{path}")
            else:
                print(f"SQLite: filling {count:,} rows ...", flush=True)
                fills["SQLite"] = fill_sqlite(path, data())
                print(f"  filled in {fills['SQLite']:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)")
            db = SqlDatabase(f"sqlite:///{path}")
            results["sqlite"] = measure(db, count, repeat)
            db.dispose()
    if args.only in (None, "postgresql"):
        kept = f"imagestudio_bench_keep_{count}" if args.keep else None
        with postgres_database(kept) as (url, filled):
            pg_url = url
            if filled:
                print(f"PostgreSQL: reusing {kept} (migrating if needed) ...", flush=True)
                _timed_upgrade(url)
            else:
                print(f"PostgreSQL: filling {count:,} rows ...", flush=True)
                fills["PostgreSQL"] = fill_postgresql(url, data())
                print(f"  filled in {fills['PostgreSQL']:.1f} s")
            db = SqlDatabase(url)
            results["postgresql"] = measure(db, count, repeat)
            facts = machine(url)
            db.dispose()
    else:
        facts = machine(None)
    section = render(results, facts, count, fills)
    print(section)
    if args.quick:
        print("(--quick: a smoke run; BENCHMARKS.md left as it is)")
    else:
        write(Path(args.out), section)
        print(f"wrote the P3 section of {args.out}")
    del pg_url
    return 0


if __name__ == "__main__":
    sys.exit(main())
