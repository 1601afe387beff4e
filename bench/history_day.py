"""A day of history for 300,000 targets (issue 17): three replicas on one database, 1% of targets drifting per
hour, simulated hour by hour through the daemon's own write path; then days more with hourly retention.

    .venv/bin/python -m bench.history_day [--database postgresql|sqlite] [--targets 300000] [--days 3]
        [--drift-per-hour 0.01] [--drifted-keys 3] [--retain-days 1]
    RECONCILER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (the default)

What a dry-run daemon records, pass by pass: every target's first pass (all clean), then each hour 1% of the
targets drift (`--drifted-keys` keys change value, reversible by the default policy) and the ones that drifted
an hour earlier are back to clean. Each such pass is built by the engine's code (diff.compare, classify,
planner.plan, the executor's dry run) and recorded by the History observer through the daemon's recorder (a
Gathered batch of 64 passes, Backlog.write_all, HistoryBatch, bulk inserts / COPY); the observer itself decides
what is recorded. The other passes of each interval are unchanged (the memo) and record nothing, so they are not
run. Times come from a simulated clock given to the recorder, ending now: the first day is `--days` days ago.

Retention is the daemon's: Pruner.prune_once at the end of every simulated hour with its default batch and
pause, keeping `--retain-days`. On PostgreSQL a plain VACUUM every 6 simulated hours stands for autovacuum
(which, at its default thresholds, visits these tables every 5-15 hours of this load). Printed per day: the
database size, rows per table, and the ratios: bytes per recorded pass, and each day's size to the day before.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import os
import random
import threading
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import history_writes
from reconciler.classify.classifier import classify
from reconciler.diff.compare import compare
from reconciler.domain import fingerprint
from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.observed import Observed
from reconciler.domain.plan import ActionState
from reconciler.domain.policy import Policy
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.state import DesiredState
from reconciler.domain.values import canonical_json, sha256_hex
from reconciler.engine import gate
from reconciler.engine.backlog import Backlog, Gathered
from reconciler.engine.effects import History, RunRecord
from reconciler.engine.outcome import PassOutcome
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.ports import Capabilities, ChangeResult, Staged
from reconciler.remediate import planner
from reconciler.remediate.executor import execute
from reconciler.runtime.retention import Pruner
from reconciler.runtime.workers import BATCH
from reconciler.settings import HistorySettings
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.batch import HistoryBatch
from reconciler.store.history import SqlHistoryStore
from reconciler.store.retention import SqlRetention

ADMIN = os.environ.get("RECONCILER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
KEY = b"bench-history-day-key"
REPLICAS = 3
KEYS = 100  # keys of a target's desired document, as in bench/daemon_scale.py
TABLES = ("runs", "passes", "drifts", "actions", "desired_versions")
VACUUM_EVERY_H = 6
DRY_RUN = gate.dry_run(gate.Hold.CONFIGURED)  # a dry-run daemon's decision
SHARED = {f"key_{k}": (k * 7 if k % 3 else f"v{k}") for k in range(KEYS)}  # desired values all targets share


class SimClock:
    """The simulated time, moved by the bench before each pass."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class StagingAdapter:
    """What the executor's dry run asks of an adapter: staging finds every change writable."""

    capabilities = Capabilities(read=True, write=True)

    def stage(self, target: Target, changes: list[Any], *, dry_run: bool) -> Staged:
        return Staged(target.name, [ChangeResult.WRITE] * len(changes), [""] * len(changes), dry_run)

    def discard(self, staged: Staged) -> None:
        return None


@dataclass
class Fleet:
    """The targets and their live state: drifted targets' live documents, all others equal desired."""

    size: int
    drifted_keys: int
    state: DesiredState
    drifted: dict[int, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def desired(i: int) -> dict[str, Any]:
        return {"service": f"svc-{i:06d}", **SHARED}

    def target(self, i: int) -> Target:
        env = ("dev", "staging", "prod")[i % 3]
        manifest = {"name": f"svc-{i:06d}", "environment": env, "labels": {"team": f"team-{i % 40}"}}
        spec = {"source": {"adapter": "memory"}, "desired": self.desired(i)}
        return Target.model_validate({"kind": "Target", "metadata": manifest, "spec": spec})

    def live(self, i: int) -> dict[str, Any]:
        return self.drifted.get(i) or self.desired(i)

    def drift(self, i: int, rng: random.Random) -> None:
        live = self.desired(i)
        for k in rng.sample(range(1, KEYS), self.drifted_keys):
            live[f"key_{k}"] = f"hand-edited-{rng.randrange(10**6)}"
        self.drifted[i] = live


def make_state() -> DesiredState:
    policy = Policy.model_validate(
        {"kind": "Policy", "metadata": {"name": "default"}, "spec": {"default": "reversible"}}
    )
    digest = sha256_hex(canonical_json({"bench": "history_day", "keys": KEYS}))
    return DesiredState(Path("desired"), DesiredVersion(digest, "c" * 40), {}, (policy,))


class Replica:
    """One replica's recorder: its History observer (what it last recorded per target) and its Backlog."""

    def __init__(self, store: SqlHistoryStore, clock: SimClock) -> None:
        self.history = History()
        batch = functools.partial(HistoryBatch, store, KEY)
        self.backlog = Backlog(store, Metrics(), max_passes=10_000, max_rows=1_000_000, batch=batch, clock=clock)
        self.pending: list[tuple[datetime, int]] = []


def run_pass(fleet: Fleet, recorder: Gathered, history: History, i: int) -> None:
    """One full dry-run pass of target `i` as the engine makes it, recorded as the daemon records it."""
    started = time.perf_counter()
    state, target, desired, live = fleet.state, fleet.target(i), fleet.desired(i), fleet.live(i)
    raw = json.dumps(live).encode()  # the bytes an adapter would read
    observed = Observed(fingerprint.of_bytes(raw), target.name, document=live)
    run = RunRecord(recorder, RunKind.DRY_RUN, "schedule", state.version.digest)
    comparison = compare(desired, observed.document)
    classified = classify(target, comparison.items, state, recorder.clock.now())
    plan = planner.plan(target, classified, desired, live, run_id=run.id, desired_version=state.version.digest)
    if plan.actions:
        run.ensure()  # the journal's rows point at the run
    execution = execute(target, plan.actions, StagingAdapter(), recorder, dry_run=True)
    unresolved = plan.escalations or plan.unpruned or any(a.state is ActionState.DRY_RUN for a in execution.actions)
    status = RunStatus.DRIFT if unresolved else RunStatus.CLEAN
    outcome = PassOutcome(
        target, DRY_RUN, status, comparison, tuple(classified), plan, execution,
        fingerprint=observed.fingerprint, duration_s=time.perf_counter() - started,
    )  # fmt: skip
    history.pass_done(outcome, run, state)
    run.finish(status)


def write_batch(fleet: Fleet, replica: Replica, clock: SimClock) -> None:
    """The replica's pending passes as one of the daemon's batches: gathered, then written in one transaction."""
    gathered = Gathered(clock)
    for at, i in replica.pending:
        clock.at = at
        run_pass(fleet, gathered, replica.history, i)
    replica.backlog.write_all(gathered.entries)
    replica.pending.clear()


def passes(fleet: Fleet, replicas: list[Replica], clock: SimClock, due: list[tuple[datetime, int]]) -> None:
    """Passes due at the given times, in time order, each replica taking its own targets in batches."""
    for at, i in sorted(due):
        replica = replicas[i % REPLICAS]  # leases spread targets evenly over the replicas
        replica.pending.append((at, i))
        if len(replica.pending) >= BATCH:
            write_batch(fleet, replica, clock)
    for replica in replicas:
        if replica.pending:
            write_batch(fleet, replica, clock)


@dataclass
class Drift:
    """Which targets drift when, and when they are back: `per_hour` new ones each hour, back an hour later."""

    fleet: Fleet
    per_hour: int
    rng: random.Random
    back: list[tuple[datetime, int]] = field(default_factory=list)  # heap of (time back to clean, target)

    def hour(self, start: datetime) -> list[tuple[datetime, int]]:
        due = []
        while self.back and self.back[0][0] < start + timedelta(hours=1):
            at, i = heapq.heappop(self.back)
            self.fleet.drifted.pop(i, None)
            due.append((at, i))
        busy = {i for _, i in due}  # one change per target and hour: each pass sees the live state of its time
        chosen: set[int] = set()
        while len(chosen) < self.per_hour:
            i = self.rng.randrange(self.fleet.size)
            if i not in self.fleet.drifted and i not in busy:
                chosen.add(i)
        for i in chosen:
            at = start + timedelta(seconds=self.rng.uniform(0, 3600))
            self.fleet.drift(i, self.rng)
            heapq.heappush(self.back, (at + timedelta(hours=1), i))
            due.append((at, i))
        return due


def sizes(engine: sa.Engine) -> tuple[int, dict[str, int], dict[str, int]]:
    """(database bytes, bytes per table with its indexes, rows per table)."""
    with engine.connect() as conn:
        rows = {name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in TABLES}
        if engine.dialect.name == "postgresql":
            total = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            per = {n: conn.execute(sa.text(f"SELECT pg_total_relation_size('{n}')")).scalar_one() for n in TABLES}
            return total, per, rows
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        owner = {name: table for table, name in conn.exec_driver_sql("SELECT tbl_name, name FROM sqlite_master")}
        per = dict.fromkeys(TABLES, 0)
        for name, size in conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            if owner.get(name) in per:
                per[owner[name]] += size
    database = engine.url.database
    assert database is not None
    return Path(database).stat().st_size, per, rows


def vacuum(engine: sa.Engine) -> None:
    """Autovacuum's work over some hours: dead rows' space made reusable (PostgreSQL; SQLite reuses freed pages)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM"))


def report(title: str, engine: sa.Engine, recorded: int, before: int | None) -> int:
    total, per, rows = sizes(engine)
    print(f"{title}: database {total / 2**20:,.1f} MiB, {recorded:,} passes recorded in all")
    for name in TABLES:
        print(f"  {name:17} {rows[name]:>10,} rows {per[name] / 2**20:>9,.1f} MiB")
    print(f"  bytes per recorded pass: {total / recorded:,.0f}; per pass kept: {total / max(rows['passes'], 1):,.0f}")
    if before is not None:
        print(f"  size vs the day before: {total / before:.3f}x")
    return int(total)


def database(kind: str) -> AbstractContextManager[str]:
    """A scratch database of `kind`, dropped (or removed) afterwards: bench.history_writes' own."""
    return history_writes.sqlite() if kind == "sqlite" else history_writes.postgres()


def simulate(engine: sa.Engine, args: argparse.Namespace) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=args.days)
    clock, store = SimClock(start), SqlHistoryStore(engine, KEY)
    fleet = Fleet(args.targets, args.drifted_keys, make_state())
    replicas = [Replica(store, clock) for _ in range(REPLICAS)]
    replicas[0].backlog.ensure_version(fleet.state.version, "desired")
    pruner = Pruner(SqlRetention(engine), HistorySettings(retain_days=args.retain_days), lambda: fleet.state,
                    threading.Event())  # fmt: skip
    drift = Drift(fleet, round(args.targets * args.drift_per_hour), random.Random(17))
    wall, cpu = time.perf_counter(), time.process_time()
    first = [(start + timedelta(seconds=60 * i / args.targets), i) for i in range(args.targets)]
    passes(fleet, replicas, clock, first)  # the first cycle: every target within its first interval
    print(f"first cycle: {args.targets:,} passes in {time.perf_counter() - wall:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} s CPU")  # fmt: skip
    before = report("after the first cycle", engine, args.targets, None)
    recorded, pruned = args.targets, 0
    for day in range(1, args.days + 1):
        wall, cpu, prune_s = time.perf_counter(), time.process_time(), 0.0
        for hour in range(24):
            at = start + timedelta(days=day - 1, hours=hour)
            due = drift.hour(at)
            passes(fleet, replicas, clock, due)
            recorded += len(due)
            started = time.perf_counter()
            stats = pruner.prune_once(at + timedelta(hours=1))
            prune_s += time.perf_counter() - started
            pruned += stats.rows if stats else 0
            if (hour + 1) % VACUUM_EVERY_H == 0:
                vacuum(engine)
        print(f"\nday {day}: {time.perf_counter() - wall:.0f} s wall ({prune_s:.0f} s of it pruning), "
              f"{time.process_time() - cpu:.0f} s CPU; rows pruned so far: {pruned:,}")  # fmt: skip
        before = report(f"after day {day}", engine, recorded, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--targets", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--drift-per-hour", type=float, default=0.01)
    parser.add_argument("--drifted-keys", type=int, default=3)
    parser.add_argument("--retain-days", type=float, default=1.0)
    args = parser.parse_args()
    logs.configure("warning", "json")  # the prunes' info lines are summed up here instead
    print(f"{args.targets:,} targets on {REPLICAS} replicas, {args.drift_per_hour:.1%} drifting per hour "
          f"({args.drifted_keys} keys each, back an hour later), {args.days} simulated days, {args.database}, "
          f"retention {args.retain_days:g} d (run {uuid.uuid4().hex[:6]})")  # fmt: skip
    with database(args.database) as url:
        engine = engines.create_engine(url, statement_timeout_s=0)
        migrate.upgrade(engine)
        try:
            simulate(engine, args)
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
