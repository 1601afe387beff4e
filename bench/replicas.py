"""Three daemons on one PostgreSQL database, 1,000 drifting file targets in apply mode, one replica killed
with SIGKILL while it fixes its share.

    .venv/bin/python -m bench.replicas [--targets 1000] [--interval 30] [--lease 10]
    RECONCILER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (the default)

Round 1: every target drifts; the three replicas fix them. Round 2: every target drifts again and, a moment
later, one replica is killed. Reported from history: targets fixed per round and by how many replicas, runs
of a target by two replicas that overlap in time (must be 0), verified actions beyond one per target and
round (duplicates, must be 0), actions left in flight (must be 0), and how long after the kill every target
was fixed again (must be within one interval). The baseline, in the same run, is round 1's time to fix
everything with all three replicas alive.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

ADMIN = os.environ.get("RECONCILER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A new PostgreSQL database on the bench's server (RECONCILER_BENCH_POSTGRES_URL), its URL; dropped after."""
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"reconciler_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(check: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--lease", type=float, default=10.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="reconciler-replicas-"))
    live, desired = folder / "live", folder / "desired"
    live.mkdir()
    desired.mkdir()
    docs = []
    for i in range(args.targets):
        (live / f"t{i:04}.yaml").write_text("log_level: DEBUG\n")
        docs.append(
            f"kind: Target\nmetadata: {{name: t{i:04}, environment: dev}}\n"
            f"spec:\n  source: {{adapter: file, path: ../live/t{i:04}.yaml}}\n"
            f"  desired: {{log_level: INFO}}\n  interval: {args.interval:g}s\n"
        )
    (desired / "targets.yaml").write_text("---\n".join(docs))
    (desired / "policy.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"reconciler_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    env = {
        **os.environ,
        "RECONCILER_DESIRED_DIR": str(desired),
        "RECONCILER_DATABASE_URL": url,
        "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
        "RECONCILER_MODE": "apply",
        "RECONCILER_SCHEDULER__LEASE_TTL_S": str(args.lease),
        "RECONCILER_SAFETY__MAX_ACTIONS_PER_RUN": "100000",
        "RECONCILER_SAFETY__MAX_TARGETS_PER_RUN": "100000",
        "RECONCILER_SAFETY__MAX_ACTIONS_PER_WAVE": "100000",
        "RECONCILER_SAFETY__MAX_TARGETS_PER_WAVE": "100000",
        "RECONCILER_LOG__LEVEL": "warning",
    }
    subprocess.run([sys.executable, "-m", "reconciler", "db", "upgrade"], env=env, check=True, capture_output=True)
    engine = sa.create_engine(url)
    replicas = []
    logs = []
    try:
        for i in range(3):
            log = (folder / f"replica-{i}.log").open("w")
            logs.append(log)
            replicas.append(
                subprocess.Popen(
                    [sys.executable, "-m", "reconciler", "run"],
                    env={**env, "RECONCILER_HTTP__PORT": str(free_port())},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

        def fixed() -> bool:
            return all(p.read_text() == "log_level: INFO\n" for p in live.glob("*.yaml"))

        def fixed_count() -> int:
            return sum(1 for p in live.glob("*.yaml") if p.read_text() == "log_level: INFO\n")

        def settled() -> bool:
            with engine.connect() as conn:
                query = "SELECT count(*) FROM actions WHERE state IN ('planned', 'staged', 'applied')"
                return not conn.execute(sa.text(query)).scalar_one()

        first = wait(fixed, 600, "round 1")
        wait(settled, 60, "round 1 settled")
        with engine.connect() as conn:
            owners = conn.execute(sa.text("SELECT count(DISTINCT owner) FROM runs")).scalar_one()
        for path in live.glob("*.yaml"):
            path.write_text("log_level: DEBUG\n")
        # Kill one replica in the middle of the round: once a tenth of the targets are fixed again.
        wait(lambda: fixed_count() >= args.targets // 10, 600, "round 2 to begin")
        replicas[0].send_signal(signal.SIGKILL)
        again = wait(fixed, 600, "round 2")
        wait(settled, 120, "round 2 settled (the dead replica's in-flight actions)")
        report(engine, args, first, again, owners)
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.wait(60)
            except subprocess.TimeoutExpired:
                replica.kill()
        for log in logs:
            log.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def overlapping_runs(conn: sa.Connection) -> int:
    """Recorded runs of one target by two replicas whose times overlap (interrupted runs, settled by the
    housekeeper for a dead replica, left out)."""
    runs = conn.execute(
        sa.text(
            "SELECT p.target, r.owner, r.started_at, r.finished_at FROM passes p JOIN runs r ON r.id = p.run_id "
            "WHERE r.finished_at IS NOT NULL AND (r.error IS NULL OR r.error NOT LIKE 'interrupted%') "
            "ORDER BY p.target, r.started_at"
        )
    ).all()
    overlaps = 0
    for _, group in itertools.groupby(runs, key=lambda r: r.target):
        busy_until, busy_owner = None, None
        for run in group:
            if busy_until is not None and run.started_at < busy_until and run.owner != busy_owner:
                overlaps += 1
            if busy_until is None or run.finished_at > busy_until:
                busy_until, busy_owner = run.finished_at, run.owner
    return overlaps


def report(engine: sa.Engine, args: argparse.Namespace, first: float, again: float, owners: int) -> None:
    with engine.connect() as conn:
        verified = conn.execute(
            sa.text("SELECT target, count(*) FROM actions WHERE state = 'verified' GROUP BY target")
        ).all()
        overlaps = overlapping_runs(conn)
        interrupted = conn.execute(sa.text("SELECT count(*) FROM runs WHERE error LIKE 'interrupted%'")).scalar_one()
    counts = dict(verified)
    duplicates = sum(max(0, n - 2) for n in counts.values())
    missing = args.targets - sum(1 for n in counts.values() if n >= 2)
    print(f"{args.targets:,} targets, 3 replicas on PostgreSQL, interval {args.interval:g} s, lease {args.lease:g} s")
    print(f"  round 1 (baseline, all alive): every target fixed in {first:.1f} s by {owners} replicas")
    print(
        f"  round 2 (one replica SIGKILLed): every target fixed again {again:.1f} s after the kill "
        f"({again / first:.2f}x round 1; must be within one interval, {args.interval:g} s)"
    )
    print(f"  runs of one target by two replicas at once: {overlaps}")
    print(f"  duplicated fixes (more than one verified action per target and round): {duplicates}")
    print(f"  targets not fixed in both rounds: {missing}")
    print(f"  runs of the killed replica settled by the housekeeper: {interrupted}")


if __name__ == "__main__":
    main()
