"""Write history as it would have been written at given times: what retention, timeline and export tests need."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from reconciler.domain.drift import Classified, DriftItem
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DesiredVersion, DriftClass, DriftOp
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import tables as t
from reconciler.store.history import SqlHistoryStore

OWNER = "build-host:4242:1"


def drift(path: str, observed: object = 2, desired: object = 1, class_: str = "reversible", by: str = "default"):
    segments = tuple(path.strip("/").split("/"))
    return Classified(DriftItem(segments, DriftOp.CHANGE, desired, observed), DriftClass(class_), "why", by)


def version(store: SqlHistoryStore, digest: str, at: datetime, commit: str | None = None) -> str:
    store.ensure_version(DesiredVersion(digest, commit, False), "/desired")
    with store.engine.begin() as conn:
        conn.execute(t.desired_versions.update().where(t.desired_versions.c.digest == digest).values(first_seen_at=at))
    return digest


def run_at(
    store: SqlHistoryStore,
    at: datetime,
    target: str,
    drifts: Sequence[Classified] = (),
    *,
    kind: RunKind = RunKind.DRY_RUN,
    desired_version: str | None = None,
    status: RunStatus | None = None,
    trigger: str = "schedule",
    rollback_of: str | None = None,
    note: str | None = None,
) -> str:
    """One finished run of one pass of `target` at `at`, with its drift."""
    status = status or (RunStatus.DRIFT if drifts else RunStatus.CLEAN)
    run_id = store.start_run(kind, trigger, desired_version, rollback_of=rollback_of, owner=OWNER)
    store.record_pass(run_id, PassRecord(target, "prod", status, len(drifts), note=note), drifts)
    store.finish_run(run_id, status)
    with store.engine.begin() as conn:
        conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(started_at=at, finished_at=at))
    return run_id


def action_at(
    store: SqlHistoryStore,
    at: datetime,
    run_id: str,
    target: str,
    path: str,
    state: ActionState,
    *,
    before: object = 2,
    after: object = 1,
    desired_version: str = "v",
    action_id: str | None = None,
    rollback_of: str | None = None,
    error: str | None = None,
    reason: str = "fix drift",
) -> str:
    segments = tuple(path.strip("/").split("/"))
    action_id = action_id or f"act-{run_id[:8]}-{path.strip('/')}"
    store.record_actions(
        [
            Action(
                action_id,
                run_id,
                target,
                segments,
                DriftOp.CHANGE,
                before,
                after,
                desired_version,
                reason,
                rollback_of=rollback_of,
            )
        ]
    )
    store.update_actions([action_id], state, error)
    with store.engine.begin() as conn:
        conn.execute(t.actions.update().where(t.actions.c.id == action_id).values(created_at=at, updated_at=at))
    return action_id


def approval_at(
    store: SqlHistoryStore, at: datetime, approval_id: str, run_id: str, state: str, **values: object
) -> None:
    """An approval row as the approval store would have left it (`values` override the defaults)."""
    row = {
        "id": approval_id, "drift_key": approval_id, "target": "a", "environment": "prod", "path": "/x",
        "op": "change", "desired": "1", "observed": "2", "reason": "r", "state": state, "created_at": at,
        "run_id": run_id, "decided_at": at,
    }  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(t.approvals.insert().values(**{**row, **values}))
