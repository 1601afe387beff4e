from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.domain.drift import Classified, DriftItem
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DesiredVersion, DriftClass, DriftOp
from reconciler.domain.paths import MISSING
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.values import Redacted
from reconciler.errors import NotMigrated, StoreUnavailable
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.history import SqlHistoryStore
from reconciler.testing import MemoryHistory
from tests.conftest import HMAC_KEY


def exercise(store: SqlHistoryStore) -> None:
    """Write one of everything and read it back; shared by the SQLite and PostgreSQL tests."""
    version = DesiredVersion("d" * 64, "c" * 40, True)
    store.ensure_version(version, "/desired")
    store.ensure_version(version, "/desired")  # stored once
    run_id = store.start_run(RunKind.APPLY, "cli", version.digest)
    drift = [
        Classified(DriftItem(("a",), DriftOp.CHANGE, 1, 2), DriftClass.REVERSIBLE, "r", "default"),
        Classified(DriftItem(("n",), DriftOp.REMOVE, None, MISSING), DriftClass.ESCALATE, "r", "rule p/0"),
        Classified(
            DriftItem(("pw",), DriftOp.CHANGE, Redacted("hmac-sha256:aa"), Redacted("hmac-sha256:bb"), True),
            DriftClass.REVERSIBLE,
            "r",
            "default",
        ),
    ]
    store.record_pass(run_id, PassRecord("t", "prod", RunStatus.FIXED, 3, 50.0, "f" * 64), drift)
    actions = [
        Action("a1", run_id, "t", ("a",), DriftOp.CHANGE, 2, 1, version.digest, "r"),
        Action("a2", run_id, "t", ("pw",), DriftOp.CHANGE, "old-secret", "new-secret", version.digest, "r", True),
        Action("a3", run_id, "t", ("n",), DriftOp.REMOVE, MISSING, None, version.digest, "r"),
    ]
    store.record_actions(actions)
    store.update_actions(["a1", "a2"], ActionState.VERIFIED)
    store.finish_run(run_id, RunStatus.FIXED)

    (run,) = store.runs()
    assert (run.id, run.kind, run.status, run.targets, run.drift_count) == (
        run_id,
        RunKind.APPLY,
        RunStatus.FIXED,
        1,
        3,
    )
    assert run.action_counts == {"verified": 2, "planned": 1}
    assert run.started_at.tzinfo is not None and run.finished_at is not None
    got = {a.id: a for a in store.actions(run_id)}
    assert got["a1"].before == 2 and got["a1"].after == 1 and got["a1"].state is ActionState.VERIFIED
    assert got["a3"].before is MISSING and got["a3"].after is None
    assert isinstance(got["a2"].before, Redacted) and isinstance(got["a2"].after, Redacted)
    assert [a.id for a in store.actions(states=[ActionState.PLANNED])] == ["a3"]
    drifts = {d["path"]: d for d in store.drifts(run_id)}
    assert drifts["/n"]["desired"] is None and drifts["/n"]["observed"] is MISSING
    with store.engine.connect() as conn:
        dump = " ".join(
            str(row) for table in ("actions", "drifts") for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
        )
        versions = conn.execute(sa.text("SELECT count(*) FROM desired_versions")).scalar_one()
    assert "old-secret" not in dump and "new-secret" not in dump
    assert versions == 1


def test_history_round_trip(store: SqlHistoryStore) -> None:
    """Versions, runs, passes, drifts and actions are stored and read back; secrets only as hashes."""
    exercise(store)


def test_a_targets_last_passes_come_newest_first_with_their_run_and_a_limit(store: SqlHistoryStore) -> None:
    """target_passes joins each pass with its run: only that target's, newest run first, at most `limit`."""
    version = DesiredVersion("e" * 64, None, False)
    store.ensure_version(version, "/desired")
    ids = []
    for i, (kind, status) in enumerate(
        [(RunKind.DRY_RUN, RunStatus.DRIFT), (RunKind.APPLY, RunStatus.FIXED), (RunKind.DRY_RUN, RunStatus.CLEAN)]
    ):
        run_id = store.start_run(kind, f"trigger-{i}", version.digest)
        store.record_pass(run_id, PassRecord("t", "prod", status, 2 - i, 10.0 * (2 - i)), [])
        store.record_pass(run_id, PassRecord("other", "prod", RunStatus.CLEAN), [])
        store.finish_run(run_id, status)
        ids.append(run_id)
    with store.engine.begin() as conn:  # three runs a minute apart, oldest first
        for i, run_id in enumerate(ids):
            at = datetime(2026, 1, 1, 12, i, tzinfo=UTC)
            conn.execute(sa.text("UPDATE runs SET started_at = :at WHERE id = :id"), {"at": at, "id": run_id})
    found = store.target_passes("t", limit=2)
    assert [(p.run_id, p.kind, p.trigger, p.record.status, p.record.drift_count) for p in found] == [
        (ids[2], RunKind.DRY_RUN, "trigger-2", RunStatus.CLEAN, 0),
        (ids[1], RunKind.APPLY, "trigger-1", RunStatus.FIXED, 1),
    ]
    assert found[0].started_at == datetime(2026, 1, 1, 12, 2, tzinfo=UTC)
    assert {p.record.target for p in store.target_passes("t")} == {"t"} and len(store.target_passes("t")) == 3
    assert store.target_passes("nobody") == []


def test_unmigrated_database_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    """Start-up on an empty database says which command to run."""
    engine = engines.create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    with pytest.raises(NotMigrated, match=r"has no reconciler tables; .*Run `reconciler db upgrade`"):
        migrate.check(engine)
    migrate.upgrade(engine)
    migrate.check(engine)
    assert migrate.current(engine) == migrate.head()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    """SQLite history uses WAL so the CLI can read while the daemon writes."""
    engine = engines.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
    engine.dispose()


def test_sqlite_keeps_a_large_journal_in_its_page_cache_without_weakening_durability(sqlite_url: str) -> None:
    """Every SQLite connection gets a page cache of SQLITE_CACHE_KIB (a 100,000-action journal's random-key index
    pages stay in memory), and still commits with synchronous=NORMAL in WAL (1), as before."""
    engine = engines.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA cache_size")).scalar_one() == -engines.SQLITE_CACHE_KIB
        assert conn.execute(sa.text("PRAGMA synchronous")).scalar_one() == 1
    engine.dispose()


def test_unreachable_store_is_temporary_and_hides_the_password() -> None:
    """A store that cannot be reached raises StoreUnavailable, and the message never shows the password."""
    store = SqlHistoryStore(
        engines.create_engine("postgresql+psycopg://user:s3cr3t-pw@127.0.0.1:1/none?connect_timeout=2"), HMAC_KEY
    )
    with pytest.raises(StoreUnavailable) as info:
        store.ping()
    assert "s3cr3t-pw" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_a_large_pass_is_written_in_bulk_and_reads_back_the_same(store: SqlHistoryStore) -> None:
    """A pass with many drift rows (COPY on PostgreSQL, executemany on SQLite) keeps every value exactly,
    missing and JSON null included, and a failure leaves no half-written pass."""
    run_id = store.start_run(RunKind.DRY_RUN, "test", None)
    drift = [
        Classified(
            DriftItem(
                ("k", str(i)),
                DriftOp.CHANGE if i % 3 else DriftOp.REMOVE,
                {"n": i, "s": 'q"\\\t\n'},
                None if i % 3 else MISSING,
                i % 7 == 0,
            ),
            DriftClass.REVERSIBLE,
            "reason with, comma",
            "default",
        )
        for i in range(500)
    ]
    store.record_pass(run_id, PassRecord("big", "prod", RunStatus.DRIFT, 500), drift)
    got = sorted(store.drifts(run_id), key=lambda d: int(d["path"].rsplit("/", 1)[1]))
    assert len(got) == 500
    for i, row in enumerate(got):
        assert row["desired"] == {"n": i, "s": 'q"\\\t\n'}
        assert row["observed"] is (None if i % 3 else MISSING)
        assert row["secret"] is (i % 7 == 0) and row["reason"] == "reason with, comma"
    broken = Classified(DriftItem(("x",), DriftOp.ADD, MISSING, 1), DriftClass.REVERSIBLE, None, "d")  # type: ignore[arg-type]
    bad = [*drift[:300], broken]  # the last row breaks NOT NULL
    with pytest.raises(StoreUnavailable):
        store.record_pass(run_id, PassRecord("broken", "prod", RunStatus.DRIFT, 301), bad)
    assert [p.target for p in store.passes(run_id)] == ["big"]


def test_statements_over_many_keys_stay_within_the_bound_variable_limit(sqlite_url: str) -> None:
    """Reads and updates that bind one value per key (recent fixes, action states) are chunked, so that
    300,000 drifted keys do not fail with `too many SQL variables`: here SQLite allows only 999."""
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)

    @sa.event.listens_for(engine, "connect")
    def _few_variables(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    engine.dispose()  # reconnect with the limit
    store = SqlHistoryStore(engine, HMAC_KEY)
    run_id = store.start_run(RunKind.APPLY, "cli", None)
    actions = [Action(f"a{i}", run_id, "t", ("k", str(i)), DriftOp.CHANGE, i, i + 1, "v", "r") for i in range(25_000)]
    store.record_actions(actions)
    store.update_actions([a.id for a in actions], ActionState.VERIFIED)
    since = datetime.now(UTC) - timedelta(hours=1)
    fixes = store.recent_writes("t", [a.pointer for a in actions], since)
    assert len(fixes) == 25_000 and fixes["/k/24999"]
    engine.dispose()


@pytest.mark.parametrize("build", ["sql", "memory"])
def test_written_targets_are_those_recent_writes_would_count(build: str, sqlite_url: str) -> None:
    """The batch's question (which targets were written since): a committed forward write counts, as does one
    that failed after the write; a dry-run action, a rollback and an older write do not. The SQL store asks in
    chunks, within SQLite's variable limit (999 here) for 2,500 targets."""
    if build == "sql":
        engine = engines.create_engine(sqlite_url)
        migrate.upgrade(engine)

        @sa.event.listens_for(engine, "connect")
        def _few_variables(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

        engine.dispose()
        store: Any = SqlHistoryStore(engine, HMAC_KEY)
    else:
        store = MemoryHistory()
    run_id = store.start_run(RunKind.APPLY, "cli", None)

    def write(target: str, state: ActionState, error: str | None = None, rollback_of: str | None = None) -> None:
        action = Action(f"{target}-{state.value}", run_id, target, ("k",), DriftOp.CHANGE, 1, 2, "v", "r")
        store.record_actions([action._replace(rollback_of=rollback_of)])
        store.update_actions([action.id], state, error)

    write("verified", ActionState.VERIFIED)
    write("failed-after", ActionState.FAILED, "verify: the value read back differs")
    write("failed-before", ActionState.FAILED, "stage refused")
    write("dry", ActionState.DRY_RUN)
    write("undone", ActionState.VERIFIED, rollback_of="x")
    many = [f"t{i:04}" for i in range(2_500)]
    for name in many[::500]:
        write(name, ActionState.VERIFIED)
    since = datetime.now(UTC) - timedelta(minutes=5)
    asked = ["verified", "failed-after", "failed-before", "dry", "undone", "never", *many]
    found = store.written_targets(asked, since)
    assert found == {"verified", "failed-after", *many[::500]}
    for name in found:  # what recent_writes counts, target by target
        assert store.recent_writes(name, ["/k"], since)
    for name in ("failed-before", "dry", "undone"):
        assert store.recent_writes(name, ["/k"], since) == {}
    assert store.written_targets(asked, datetime.now(UTC) + timedelta(minutes=5)) == set()
    assert store.written_targets([], since) == set()
    if build == "sql":
        store.engine.dispose()
