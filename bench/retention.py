"""Retention: pruning a million drift rows, on SQLite and PostgreSQL, while a writer keeps recording passes.

    .venv/bin/python -m bench.retention [--rows 1000000] [--targets 1000] [--passes 10]
    RECONCILER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (the default)

History: `targets` targets, each with `passes` recorded passes spread over 100 days (one every 100/passes
days, the newest yesterday), each pass with rows / (targets x passes) drift rows. The prune keeps 30 days.
`SqlRetention.prune` (the daemon's settings: 2,000 rows per transaction, 50 ms between them) runs while a
writer records a pass of 100 drift rows every 50 ms, as a daemon's workers would; the figures are rows
deleted per second, the longest deleting transaction (the longest a pass can wait for the prune), and the
writer's slowest pass. The baseline, measured in the same run on an identical copy of the database, is the
plain way: one DELETE per table of every old run's rows, in one transaction, with the same writer beside it.
Also printed: the bytes a drift row costs on disk (table and indexes), for retention sizing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.history_writes import drifts
from bench.replicas import ADMIN
from reconciler.domain.history import PassRecord
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store import tables as t
from reconciler.store.bulk import insert_rows
from reconciler.store.history import SqlHistoryStore
from reconciler.store.retention import SqlRetention
from reconciler.store.rows import drift_rows

NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=30)


def fill(engine: sa.Engine, rows: int, targets: int, passes: int) -> int:
    """Write the history in bulk (not through record_pass: filling is not what is measured)."""
    per_pass = max(rows // (targets * passes), 1)
    template = drift_rows("", "", drifts(per_pass))
    written = 0
    for p in range(passes):
        at = NOW - timedelta(days=1 + (passes - 1 - p) * 100 / passes)
        with engine.begin() as conn:
            run_rows, pass_rows, drift_batch = [], [], []
            for i in range(targets):
                run_id = str(uuid.uuid4())
                run_rows.append(
                    {
                        "id": run_id,
                        "kind": "dry-run",
                        "trigger": "schedule",
                        "status": "drift",
                        "started_at": at,
                        "finished_at": at,
                    }
                )
                pass_rows.append(
                    {
                        "run_id": run_id,
                        "target": f"t{i}",
                        "environment": "prod",
                        "status": "drift",
                        "drift_count": per_pass,
                        "drift_percent": 50.0,
                        "duration_s": 0.01,
                    }
                )
                drift_batch += [{**row, "run_id": run_id, "target": f"t{i}"} for row in template]
            conn.execute(t.runs.insert(), run_rows)
            conn.execute(t.passes.insert(), pass_rows)
            insert_rows(conn, t.drifts, drift_batch)
            written += len(drift_batch)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    return written


def bytes_per_row(engine: sa.Engine, rows: int) -> float:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            size = conn.execute(sa.text("SELECT pg_total_relation_size('drifts')")).scalar_one()
        else:
            size = conn.execute(sa.text("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE '%drifts%'")).scalar_one()
    return float(size) / rows


class Writer:
    """Records a pass of 100 drift rows every 50 ms until stopped; keeps the slowest."""

    def __init__(self, engine: sa.Engine) -> None:
        self.store = SqlHistoryStore(engine, b"bench-key")
        self.stop = threading.Event()
        self.slowest_s = 0.0
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        batch = drifts(100)
        run = self.store.start_run(RunKind.DRY_RUN, "schedule", None)
        while not self.stop.wait(0.05):
            started = time.perf_counter()
            self.store.record_pass(run, PassRecord("writer", "prod", RunStatus.DRIFT, 100), batch)
            self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
            self.count += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def plain_delete(engine: sa.Engine) -> tuple[int, float]:
    """The baseline: every old run's rows in one transaction, each table by one DELETE."""
    keep = SqlRetention(engine).needed(CUTOFF)
    r = t.runs.c
    started = time.perf_counter()
    with engine.begin() as conn:
        old = [i for i in conn.execute(sa.select(r.id).where(r.started_at < CUTOFF)).scalars() if i not in keep]
        conn.execute(sa.text("CREATE TEMPORARY TABLE doomed (id VARCHAR(36) PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO doomed (id) VALUES (:id)"), [{"id": i} for i in old])
        n = 0
        for table in ("drifts", "passes", "actions", "runs"):
            column = "id" if table == "runs" else "run_id"
            n += conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} IN (SELECT id FROM doomed)")).rowcount
    return n, time.perf_counter() - started


def measure(engine: sa.Engine, prune: Callable[[sa.Engine], tuple[int, float, float]]) -> tuple[float, float, float]:
    """(rows/s, longest lock s, slowest concurrent pass s)."""
    with Writer(engine) as writer:
        rows, seconds, longest = prune(engine)
    return rows / seconds, longest, writer.slowest_s


def batched(batch_rows: int, pause_s: float) -> Callable[[sa.Engine], tuple[int, float, float]]:
    def prune(engine: sa.Engine) -> tuple[int, float, float]:
        stats = SqlRetention(engine).prune(CUTOFF, batch_rows=batch_rows, pause_s=pause_s)
        return stats.rows, stats.seconds, stats.longest_lock_s

    return prune


def baseline(engine: sa.Engine) -> tuple[int, float, float]:
    rows, seconds = plain_delete(engine)
    return rows, seconds, seconds


# What is measured, each on its own copy of the same history: `db prune` (5,000 rows a transaction, no pause),
# the daemon (its defaults: 2,000 rows, 50 ms between transactions), and the plain single-transaction baseline.
WAYS = (("db prune", batched(5000, 0.0)), ("daemon", batched(2000, 0.05)), ("baseline", baseline))


@contextmanager
def sqlite_pair() -> Iterator[tuple[str, Callable[[int], str]]]:
    with tempfile.TemporaryDirectory() as folder:
        first = Path(folder) / "history.db"

        def copy(i: int) -> str:
            second = Path(folder) / f"copy{i}.db"
            shutil.copy(first, second)
            return f"sqlite:///{second}"

        yield f"sqlite:///{first}", copy


@contextmanager
def postgres_pair() -> Iterator[tuple[str, Callable[[int], str]]]:
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    names = [f"reconciler_bench_{uuid.uuid4().hex[:10]}" for _ in range(len(WAYS) + 1)]
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{names[0]}"'))

    def copy(i: int) -> str:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{names[i + 1]}" TEMPLATE "{names[0]}"'))
        return admin.url.set(database=names[i + 1]).render_as_string(hide_password=False)

    try:
        yield admin.url.set(database=names[0]).render_as_string(hide_password=False), copy
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--targets", type=int, default=1_000)
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args()
    print(f"pruning {args.rows:,} drift rows ({args.targets:,} targets x {args.passes} passes over 100 days; keep 30)")
    header = f"{'backend':11} {'way':9} {'rows/s':>10} {'longest lock':>13} {'slowest pass':>13}"
    for label, pair in (("SQLite", sqlite_pair), ("PostgreSQL", postgres_pair)):
        with pair() as (url, copy):
            engine = engines.create_engine(url, statement_timeout_s=0)
            migrate.upgrade(engine)
            started = time.perf_counter()
            written = fill(engine, args.rows, args.targets, args.passes)
            size = bytes_per_row(engine, written)
            print(f"{label}: {written:,} rows written in {time.perf_counter() - started:.0f}s; {size:.0f} bytes/row")
            engine.dispose()
            urls = [copy(i) for i in range(len(WAYS))]
            print(header)
            figures = []
            for (name, way), copied in zip(WAYS, urls, strict=True):
                engine = engines.create_engine(copied, statement_timeout_s=0)
                figures.append(measure(engine, way))
                engine.dispose()
                rate, lock, slow = figures[-1]
                print(f"{label:11} {name:9} {rate:10,.0f} {lock:12.3f}s {slow:12.3f}s")
            base = figures[-1]
            for (name, _), (rate, lock, slow) in zip(WAYS[:-1], figures, strict=False):
                print(
                    f"{'':11} {name + '/base':13} {rate / base[0]:6.2f} {lock / base[1]:13.4f} {_ratio(slow, base[2])}"
                )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:13.4f}" if b > 0 else f"{'-':>13}"


if __name__ == "__main__":
    main()
