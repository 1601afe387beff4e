"""History writes in bulk: drift rows per second through SqlHistoryStore.record_pass, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.history_writes [--rows 50000] [--per-pass 1000]
    RECONCILER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (the default)

Each backend gets a fresh, migrated database (a temp SQLite file in WAL mode; a new PostgreSQL database that
is dropped afterwards). record_pass writes one pass row and its drift rows in one transaction, as the daemon
does. The baseline, measured in the same run on the same database, is SQLAlchemy Core's executemany of the
same rows straight into the drifts table: the floor any store on top of it pays.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.replicas import scratch_database as postgres
from reconciler.domain.drift import Classified, DriftItem
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DriftClass, DriftOp
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store import tables as t
from reconciler.store.history import SqlHistoryStore
from reconciler.store.rows import drift_rows


@contextmanager
def sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'history.db'}"


def drifts(n: int) -> list[Classified]:
    return [
        Classified(
            DriftItem(("service", f"key{i}"), DriftOp.CHANGE, i, i + 1),
            DriftClass.REVERSIBLE,
            "no rule matched: policy default",
            "default",
        )
        for i in range(n)
    ]


def measure(url: str, rows: int, per_pass: int) -> tuple[float, float]:
    engine = engines.create_engine(url)
    migrate.upgrade(engine)
    store = SqlHistoryStore(engine, b"bench-key")
    batch = drifts(per_pass)
    run = store.start_run(RunKind.DRY_RUN, "bench", None)
    passes = rows // per_pass
    started = time.perf_counter()
    for i in range(passes):
        store.record_pass(run, PassRecord(f"t{i}", "bench", RunStatus.DRIFT, drift_count=per_pass), batch)
    store_rate = passes * per_pass / (time.perf_counter() - started)
    plain = drift_rows(run, "baseline", batch)
    started = time.perf_counter()
    for _ in range(passes):
        with engine.begin() as conn:
            conn.execute(t.drifts.insert(), plain)
    baseline_rate = passes * per_pass / (time.perf_counter() - started)
    engine.dispose()
    return store_rate, baseline_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--per-pass", type=int, default=1_000)
    args = parser.parse_args()
    print(f"drift rows written per second, {args.rows:,} rows in passes of {args.per_pass:,}")
    print(f"{'backend':12} {'record_pass':>14} {'baseline':>14} {'vs baseline':>12}")
    for label, database in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        with database() as url:
            store_rate, baseline_rate = measure(url, args.rows, args.per_pass)
        print(f"{label:12} {store_rate:14,.0f} {baseline_rate:14,.0f} {store_rate / baseline_rate:11.2f}x")


if __name__ == "__main__":
    main()
