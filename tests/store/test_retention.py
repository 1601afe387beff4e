"""Retention: what `db prune` deletes and what it keeps, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.plan import ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import retention
from reconciler.store import tables as t
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.history import SqlHistoryStore
from reconciler.store.retention import SqlRetention
from tests.store.history_builder import action_at, approval_at, drift, run_at, version

NOW = datetime.now(UTC)


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def ids(store: SqlHistoryStore, table: sa.Table) -> set[str]:
    with store.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(sa.select(table.c[next(iter(table.primary_key)).name]))}


def history(store: SqlHistoryStore) -> dict[str, str]:
    """Runs of every kind that retention must tell apart, by name."""
    v_old = version(store, "o" * 64, days(70))
    v_kept = version(store, "k" * 64, days(70), "c" * 40)
    runs = {
        "a-old": run_at(store, days(60), "a", [drift("/x")] * 7, desired_version=v_old),
        "a-old2": run_at(store, days(50), "a", [drift("/x")], desired_version=v_old),
        "a-new": run_at(store, days(1), "a", [drift("/x")]),
        "b-old": run_at(store, days(60), "b", [drift("/y")]),
        "b-newest": run_at(store, days(40), "b", [drift("/y")]),  # b's newest pass, however old
        "w-older": run_at(store, days(58), "c", kind=RunKind.APPLY, status=RunStatus.FIXED),
        "w-newest": run_at(store, days(55), "c", kind=RunKind.APPLY, status=RunStatus.FIXED, desired_version=v_kept),
        "approval": run_at(store, days(57), "d", [drift("/z", class_="escalate")]),
        "approval-used": run_at(store, days(56), "d", [drift("/z", class_="escalate")]),
        "exc-first": run_at(store, days(59), "e", [drift("/e", class_="acceptable", by="exception p/0")]),
        "exc-later": run_at(store, days(45), "e", [drift("/e", class_="acceptable", by="exception p/0")]),
        "expired-exc": run_at(store, days(44), "e", [drift("/f", class_="acceptable", by="exception p/1")]),
        "c-new": run_at(store, days(2), "c"),
        "d-new": run_at(store, days(2), "d"),
        "e-new": run_at(store, days(2), "e"),
    }
    action_at(store, days(58), runs["w-older"], "c", "/w", ActionState.VERIFIED)
    action_at(store, days(55), runs["w-newest"], "c", "/w", ActionState.VERIFIED)
    approval_at(store, days(57), "ap-pending", runs["approval"], "pending")
    approval_at(store, days(56), "ap-used", runs["approval-used"], "used")
    running = store.start_run(RunKind.APPLY, "cli", None)
    with store.engine.begin() as conn:
        conn.execute(t.runs.update().where(t.runs.c.id == running).values(started_at=days(80)))
    runs["running"] = running
    breakers = SqlBreakerStore(store.engine)
    breakers.set(Breaker(BreakerState.OPEN, "old trouble", days(65), None, "ops"), days(65))
    breakers.set(Breaker(BreakerState.CLOSED, None, None, None, "ops"), days(64))
    breakers.set(Breaker(BreakerState.OPEN, "new trouble", days(1), None, "ops"), days(1))
    return runs


def test_prune_keeps_what_is_still_needed_and_deletes_the_rest(store: SqlHistoryStore) -> None:
    """Older than the cutoff, only what something still needs stays: each target's newest pass, the newest
    write of a key, the runs of open approvals, the first drift under an active exception, runs still running
    and the desired versions those refer to; a dry run counts exactly what the prune then deletes."""
    runs = history(store)
    retention = SqlRetention(store.engine)
    cutoff = days(30)
    dry = retention.prune(cutoff, active_exceptions=["exception p/0"], batch_rows=3, dry_run=True)
    assert len(ids(store, t.runs)) == len(runs)  # nothing deleted
    done = retention.prune(cutoff, active_exceptions=["exception p/0"], batch_rows=3)
    gone = {"a-old", "a-old2", "b-old", "w-older", "approval-used", "exc-later", "expired-exc"}
    assert ids(store, t.runs) == {runs[n] for n in set(runs) - gone}
    assert done.deleted["runs"] == len(gone) == dry.deleted["runs"]
    assert done.deleted["drifts"] == 7 + 1 + 1 + 1 + 1 + 1 == dry.deleted["drifts"]
    assert done.deleted["actions"] == 1 and done.deleted["approvals"] == 1 and done.deleted["breaker_events"] == 2
    assert ids(store, t.desired_versions) == {"k" * 64}
    assert ids(store, t.approvals) == {"ap-pending"}
    assert (
        done.batches >= 3 and done.longest_lock_s > 0 and done.kept_runs == 4
    )  # b-newest, w-newest, approval, exc-first
    with store.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(t.drifts)).scalar_one()
    assert left == 1 + 1 + 1 + 1  # a-new, b-newest, approval, exc-first
    again = retention.prune(cutoff, active_exceptions=["exception p/0"])
    assert again.rows == 0


def test_a_stopped_prune_ends_between_batches(store: SqlHistoryStore) -> None:
    """Stopping (the daemon shutting down) ends a prune at once, with nothing half-deleted."""
    runs = history(store)
    stop = threading.Event()
    stop.set()
    stats = SqlRetention(store.engine).prune(days(30), stop=stop)
    assert stats.rows == 0 and ids(store, t.runs) == set(runs.values())


def test_the_migrations_create_exactly_the_tables_the_code_declares(store: SqlHistoryStore) -> None:
    """After `db upgrade`, Alembic finds no difference between the database and store/tables.py (tables,
    columns, indexes), so a migration that forgets an index fails here."""
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []


def test_pages_of_runs_still_needed_cost_no_pause(store: SqlHistoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An hourly prune pages over every old run still needed (each target's newest pass); a page with nothing to
    delete makes no transaction and so waits for nothing, while pages that delete still pause between them."""
    monkeypatch.setattr(retention, "RUNS_PER_BATCH", 2)
    first = [run_at(store, days(40 + i), f"t{i}") for i in range(5)]  # one pass each: all needed
    slept: list[float] = []
    monkeypatch.setattr(retention.time, "sleep", slept.append)
    stats = SqlRetention(store.engine).prune(days(30), pause_s=5.0)
    assert stats.rows == 0 and stats.kept_runs == 5 and slept == []
    later = {run_at(store, days(1), f"t{i}") for i in range(4)}  # newer passes: the first four can go
    stats = SqlRetention(store.engine).prune(days(30), pause_s=5.0)
    assert ids(store, t.runs) == {*later, first[4]} and stats.deleted["runs"] == 4 and set(slept) == {5.0}
