"""Three daemons on one PostgreSQL database share the targets; one is killed mid-run with SIGKILL.

Checked from history: every drifted target is fixed exactly once per round (no duplicated action), no
target is worked by two replicas at once, the killed replica's targets are reconciled again within about
one interval, and nothing it left in flight stays unsettled.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import free_port, reconciler, wait_for, write_fleet

pytestmark = pytest.mark.e2e
TARGETS = 40
INTERVAL_S = 3
LEASE_TTL_S = 2


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    live, desired = write_fleet(tmp_path, ["dev"] * TARGETS, INTERVAL_S)
    for path in live.glob("*.yaml"):  # in sync at first: the drift comes once all three replicas hold leases
        path.write_text("log_level: INFO\n")
    env = {
        **os.environ,
        "RECONCILER_DESIRED_DIR": str(desired),
        "RECONCILER_DATABASE_URL": postgres_url,
        "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
        "RECONCILER_MODE": "apply",
        "RECONCILER_SCHEDULER__LEASE_TTL_S": str(LEASE_TTL_S),
        "RECONCILER_SCHEDULER__JITTER_S": "0.2",
        "RECONCILER_SCHEDULER__WORKERS": "2",
        "RECONCILER_SAFETY__MAX_FLEET_FRACTION": "1.0",
    }
    monkeypatch.setenv("RECONCILER_DATABASE_URL", postgres_url)
    assert reconciler("db", "upgrade").returncode == 0
    processes = []
    logs = []
    for i in range(3):
        log = (tmp_path / f"replica-{i}.log").open("w")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "reconciler", "run"],
                env={**env, "RECONCILER_HTTP__PORT": str(free_port())},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    engine = sa.create_engine(postgres_url)
    try:
        yield {"live": live, "processes": processes, "engine": engine, "logs": tmp_path}
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
        engine.dispose()


def fixed(live: Path) -> bool:
    return all(p.read_text() == "log_level: INFO\n" for p in live.glob("*.yaml"))


def verified_per_target(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT target, count(*) FROM actions WHERE state = 'verified' GROUP BY target"))
        return {target: count for target, count in rows}


def overlapping_runs(engine: sa.Engine) -> list[tuple[str, str, str]]:
    """Pairs of runs of the same target by different replicas whose times overlap (interrupted runs aside:
    their finish time is when they were settled, not when they stopped)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.target, r.owner, r.started_at, r.finished_at FROM passes p JOIN runs r ON r.id = p.run_id "
                "WHERE r.finished_at IS NOT NULL AND (r.error IS NULL OR r.error NOT LIKE 'interrupted%') "
                "ORDER BY p.target, r.started_at"
            )
        ).all()
    found = []
    for target, runs in itertools.groupby(rows, key=lambda r: r.target):
        busy_until, busy_owner = None, None  # the latest finish so far, and whose run it was
        for run in runs:
            if busy_until is not None and run.started_at < busy_until and run.owner != busy_owner:
                found.append((target, str(busy_owner), run.owner))
            if busy_until is None or run.finished_at > busy_until:
                busy_until, busy_owner = run.finished_at, run.owner
    return found


def leases_per_owner(engine: sa.Engine) -> dict[str, int]:
    """The targets' leases each live replica holds. A target's lease lives as long as its holder heartbeats
    (store/leases.py): its own `expires_at` is a lease time after it was taken and is not renewed, so counting
    by it saw a replica's leases only in their first TTL, and three replicas' shares together only by chance
    (a slow CI machine: never within 60 s)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT l.owner, count(*) FROM leases l JOIN replicas r ON r.id = l.owner "
                "WHERE l.name <> 'housekeeping' AND r.heartbeat_at > :since GROUP BY l.owner"
            ),
            {"since": datetime.now(UTC) - timedelta(seconds=LEASE_TTL_S)},
        )
        return {owner: count for owner, count in rows}


def fixers(engine: sa.Engine) -> set[str]:
    """The replicas that recorded a verified action."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT DISTINCT r.owner FROM actions a JOIN runs r ON r.id = a.run_id WHERE a.state = 'verified'")
        )
        return {owner for (owner,) in rows}


def test_three_replicas_share_the_work_and_survive_a_sigkill(fleet: dict[str, Any]) -> None:
    live, engine, processes = fleet["live"], fleet["engine"], fleet["processes"]
    # A replica that starts late (a busy machine) would find the work done: drift only once all three
    # hold a fair share of the targets.
    wait_for(
        lambda: (held := leases_per_owner(engine)) and len(held) == 3 and min(held.values()) >= TARGETS // 4,
        timeout_s=60,
        what="the three replicas to share the targets' leases",
    )
    for path in live.glob("*.yaml"):
        path.write_text("log_level: DEBUG\n")
    wait_for(lambda: fixed(live), timeout_s=60, what="every target fixed by the replicas")
    time.sleep(1)  # let the last verifications land
    first = verified_per_target(engine)
    assert first == {f"t{i:02}": 1 for i in range(TARGETS)}  # each fixed exactly once
    assert len(fixers(engine)) == 3, fixers(engine)  # all three replicas did some of the work

    for path in live.glob("*.yaml"):  # everything drifts again ...
        path.write_text("log_level: DEBUG\n")
    wait_for(
        lambda: sum(p.read_text() == "log_level: INFO\n" for p in live.glob("*.yaml")) >= 4,
        timeout_s=30,
        what="round 2 to begin",
    )
    processes[0].send_signal(signal.SIGKILL)  # ... and one replica dies in the middle of fixing it
    killed_at = time.monotonic()
    wait_for(lambda: fixed(live), timeout_s=30, what="every target fixed again after the kill")
    took = time.monotonic() - killed_at
    assert took < INTERVAL_S + 2 * 2 + 5, took  # within about one interval plus a lease

    def settled() -> bool:
        with engine.connect() as conn:
            return not conn.execute(
                sa.text("SELECT count(*) FROM actions WHERE state IN ('planned', 'staged', 'applied')")
            ).scalar_one()

    wait_for(settled, timeout_s=30, what="the killed replica's in-flight actions settled by the housekeeper")
    second = verified_per_target(engine)
    assert second == {f"t{i:02}": 2 for i in range(TARGETS)}, {k: v for k, v in second.items() if v != 2}
    assert overlapping_runs(engine) == []
