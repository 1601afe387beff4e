"""A daemon's batch of passes that write nothing live gathers their history and writes it in one transaction
when the batch ends: the same rows as one pass at a time, none of them before the end, and runs that may
write keep their journal going to the store at once."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.domain.approval import ApprovalState
from reconciler.domain.manifest import DriftClass, DriftOp
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.engine.backlog import Backlog
from reconciler.engine.outcome import PassOutcome
from reconciler.engine.run import Reconciler
from reconciler.observe.metrics import Metrics
from reconciler.remediate.safety import Limits
from reconciler.settings import Settings
from reconciler.store import tables as t
from reconciler.store.approvals import SqlApprovalStore
from reconciler.store.batch import HistoryBatch
from reconciler.store.history import SqlHistoryStore
from tests.conftest import HMAC_KEY
from tests.engine.helpers import NOW, make

TARGETS = ("checkout-staging", "payments-api-prod", "payments-api-staging")


def _build(settings: Settings, store: SqlHistoryStore, mode: Mode) -> tuple[Reconciler, Backlog]:
    metrics = Metrics()
    batch = functools.partial(HistoryBatch, store, HMAC_KEY)
    kept = Backlog(store, metrics, max_passes=100, max_rows=10_000, batch=batch)
    approvals = SqlApprovalStore(store.engine)
    reconciler, _ = make(settings, store, metrics=metrics, approvals=approvals, backlog=kept, global_mode=mode)
    return reconciler, kept


def _history(store: SqlHistoryStore) -> tuple[list[tuple[str, str, bool]], list[str], int, list[str]]:
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(t.runs.c.kind, t.runs.c.status, t.runs.c.finished_at)).all()
        passes = conn.execute(sa.select(t.passes.c.target)).scalars().all()
        drifts = conn.execute(sa.select(sa.func.count()).select_from(t.drifts)).scalar_one()
        actions = conn.execute(sa.select(t.actions.c.state)).scalars().all()
    return sorted((r[0], r[1], r[2] is not None) for r in runs), sorted(passes), drifts, sorted(actions)


def test_a_gathered_batch_writes_what_its_passes_found_at_its_end(settings: Settings, store: SqlHistoryStore) -> None:
    """Nothing of a gathered batch is in the store before it ends; then its runs (finished), passes, drift
    and dry-run actions all are."""
    reconciler, _ = _build(settings, store, Mode.DRY_RUN)
    with reconciler.gathering():
        outcomes = [reconciler.reconcile([name]).targets[0] for name in TARGETS]
        assert _history(store) == ([], [], 0, [])  # nothing yet
    runs, passes, drifts, actions = _history(store)
    assert runs == sorted(("dry-run", o.status.value, True) for o in outcomes)
    assert passes == sorted(TARGETS)
    assert drifts == sum(len(o.classified) for o in outcomes) > 0
    assert actions and set(actions) == {ActionState.DRY_RUN.value}
    assert {o.status for o in outcomes} == {RunStatus.DRIFT, RunStatus.CLEAN}


def test_gathered_history_is_what_passes_one_at_a_time_write(settings: Settings, store: SqlHistoryStore) -> None:
    """The rows a gathered batch writes are the rows the same passes write one at a time."""
    reconciler, _ = _build(settings, store, Mode.DRY_RUN)
    for name in TARGETS:
        reconciler.reconcile([name])
    alone = _history(store)
    with store.engine.begin() as conn:
        for table in (t.drifts, t.actions, t.passes, t.runs):
            conn.execute(table.delete())
    again, _ = _build(settings, store, Mode.DRY_RUN)
    with again.gathering():
        for name in TARGETS:
            again.reconcile([name])
    assert _history(store) == alone


def test_a_run_that_writes_keeps_its_journal_going_to_the_store_at_once(
    settings: Settings, store: SqlHistoryStore
) -> None:
    """In a gathered batch, a pass that writes live has its run and actions in the store before the write."""
    reconciler, _ = _build(settings, store, Mode.APPLY)
    with reconciler.gathering():
        fixed = reconciler.reconcile(["checkout-staging"]).targets[0]
        assert fixed.status is RunStatus.FIXED
        runs, _, _, actions = _history(store)
        assert runs and actions  # the run and its actions were in the store before the write


class CountingApprovals(SqlApprovalStore):
    """The real approval store, counting which targets asked for their approvals."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.asked: list[str] = []

    def sync(self, target: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(target)
        return super().sync(target, *args, **kwargs)


def test_a_batch_asks_for_approvals_only_where_there_are_some(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """One query finds the batch's targets with open approvals: the others, finding nothing escalated, do not
    ask for theirs; a target whose escalation went away still has its approval superseded."""
    approvals = CountingApprovals(store.engine)
    kept = Backlog(
        store, Metrics(), max_passes=100, max_rows=10_000, batch=functools.partial(HistoryBatch, store, HMAC_KEY)
    )
    reconciler, _ = make(settings, store, approvals=approvals, backlog=kept, global_mode=Mode.DRY_RUN)
    with reconciler.gathering(TARGETS):
        for name in TARGETS:
            reconciler.reconcile([name])
    assert approvals.asked == ["payments-api-prod"]  # the one with an escalation
    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("pool_size: 10", "pool_size: 20"))
    approvals.asked.clear()
    with reconciler.gathering(TARGETS):
        outcome = reconciler.reconcile(["payments-api-prod"]).targets[0]
    assert approvals.asked == ["payments-api-prod"] and outcome.approvals == {}
    assert [a.state for a in approvals.list()] == [ApprovalState.SUPERSEDED]


class CountingWrites(SqlHistoryStore):
    """The real history store, counting who asked for recent writes: each target, or a batch at once."""

    def __init__(self, store: SqlHistoryStore) -> None:
        super().__init__(store.engine, HMAC_KEY)
        self.asked: list[str] = []
        self.batches: list[list[str]] = []

    def recent_writes(self, target: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(target)
        return super().recent_writes(target, *args, **kwargs)

    def written_targets(self, targets: Any, since: Any) -> set[str]:
        self.batches.append(sorted(targets))
        return super().written_targets(targets, since)


def test_a_batch_asks_for_recent_writes_only_where_there_are_some(settings: Settings, store: SqlHistoryStore) -> None:
    """One query finds the batch's targets written within the flapping window: a dry-run pass of any other
    target with reversible drift does not ask for its own writes; one written often enough still finds its
    drift flapping; and a pass that may write always asks."""
    counting = CountingWrites(store)

    def build(mode: Mode) -> Reconciler:
        kept = Backlog(
            counting,
            Metrics(),
            max_passes=100,
            max_rows=10_000,
            batch=functools.partial(HistoryBatch, counting, HMAC_KEY),
        )
        reconciler, _ = make(settings, counting, backlog=kept, global_mode=mode, limits=Limits(flap_threshold=2))
        return reconciler

    def passes(reconciler: Reconciler) -> dict[str, PassOutcome]:
        for name in TARGETS:
            reconciler.assessor.forget(name)  # a full pass each
        with reconciler.gathering(TARGETS):
            return {name: reconciler.reconcile([name]).targets[0] for name in TARGETS}

    dry = build(Mode.DRY_RUN)
    first = passes(dry)
    fixable = sorted(n for n, o in first.items() if any(c.class_ is DriftClass.REVERSIBLE for c in o.classified))
    assert "checkout-staging" in fixable and counting.asked == [] and counting.batches == [sorted(TARGETS)]

    run_id = counting.start_run(RunKind.APPLY, "cli", None)  # two writes of its flag, as an apply run journals them
    for i in range(2):
        action = Action(f"w{i}", run_id, "checkout-staging", ("FEATURE_FAST_PAY",), DriftOp.CHANGE, 0, 1, "v", "r")
        counting.record_actions([action])
        counting.update_actions([action.id], ActionState.VERIFIED)
    counting.asked.clear()
    again = passes(dry)
    assert counting.asked == ["checkout-staging"]
    (flag,) = [c for c in again["checkout-staging"].classified if c.item.pointer == "/FEATURE_FAST_PAY"]
    assert flag.class_ is DriftClass.ESCALATE and flag.decided_by == "flapping"

    counting.asked.clear()
    passes(build(Mode.APPLY))
    assert sorted(set(counting.asked)) == fixable  # each pass that may write asks, whatever the batch found


def test_the_desired_version_is_stored_at_once_not_gathered(settings: Settings, store: SqlHistoryStore) -> None:
    """Every worker's batch has runs that point at the desired version; the batch that met it first may be
    written last, so the version goes to the store at once."""
    reconciler, _ = _build(settings, store, Mode.DRY_RUN)
    with reconciler.gathering():
        reconciler.reconcile([TARGETS[0]])
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.desired_versions)).scalar_one() == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(t.runs)).scalar_one() == 0


def test_gathered_history_takes_its_times_from_the_engine_clock(settings: Settings, store: SqlHistoryStore) -> None:
    """A gathered run's start and end and its dry-run actions carry the engine clock's time, not the wall
    clock's: the same time its pass decided by (a fixed clock here; a simulated day in bench/history_day.py)."""
    reconciler, _ = _build(settings, store, Mode.DRY_RUN)
    with reconciler.gathering():
        for name in TARGETS:
            reconciler.reconcile([name])
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(t.runs.c.started_at, t.runs.c.finished_at)).all()
        actions = conn.execute(sa.select(t.actions.c.created_at)).scalars().all()
    assert runs and actions
    assert {at for run in runs for at in run} | set(actions) == {NOW}
