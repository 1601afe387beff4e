"""Many passes' history in one transaction: what the daemon's batch of passes that fell due together found.

A dry-run pass that finds something new writes its run, its pass and drift rows, the actions it would take and
the end of its run: four transactions of single-row statements, most of a first cycle's CPU besides reading
live state (bench/daemon_scale.py). A HistoryBatch takes the same calls as the history store, keeps rows, and
writes them all at `commit`: each table once, by bulk insert, a run's end folded into its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import tables as t
from reconciler.store.base import SqlStore
from reconciler.store.bulk import insert_rows
from reconciler.store.history import SqlHistoryStore
from reconciler.store.rows import action_rows, chunks, drift_rows, pass_row


class HistoryBatch(SqlStore):
    """Collects the history store's writes and makes them in one transaction at `commit` (all or nothing)."""

    def __init__(self, store: SqlHistoryStore, hmac_key: bytes) -> None:
        super().__init__(store.engine)
        self.store = store
        self._key = hmac_key
        self._versions: dict[str, tuple[DesiredVersion, str]] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._finished: list[tuple[str, RunStatus, str | None, datetime]] = []  # runs begun before this batch
        self._passes: list[dict[str, Any]] = []
        self._drifts: list[dict[str, Any]] = []
        self._actions: list[dict[str, Any]] = []
        self._updates: list[tuple[Sequence[str], ActionState, str | None]] = []

    def ensure_version(self, version: DesiredVersion, root: str) -> None:
        self._versions[version.digest] = (version, root)

    def start_run(
        self,
        kind: RunKind,
        trigger: str,
        desired_version: str | None,
        *,
        run_id: str,
        owner: str | None,
        at: datetime | None = None,
    ) -> str:
        self._runs[run_id] = {
            "id": run_id,
            "kind": kind.value,
            "trigger": trigger,
            "status": RunStatus.RUNNING.value,
            "started_at": at or datetime.now(UTC),
            "finished_at": None,
            "desired_version": desired_version,
            "rollback_of": None,
            "error": None,
            "owner": owner,
        }
        return run_id

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None:
        self._passes.append(pass_row(run_id, record))
        self._drifts.extend(drift_rows(run_id, record.target, drifts))

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None:
        self._actions.extend(action_rows(actions, self._key, at or datetime.now(UTC)))

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        self._updates.append((tuple(ids), state, error))

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None, at: datetime | None = None) -> None:
        row = self._runs.get(run_id)
        if row is None:
            self._finished.append((run_id, status, error, at or datetime.now(UTC)))
        else:
            row.update(status=status.value, finished_at=at or datetime.now(UTC), error=error)

    def commit(self) -> None:
        """Write everything collected, in the order a reader needs (runs before the rows that point at them);
        StoreUnavailable when the store cannot take it, and then nothing of it is written."""
        for version, root in self._versions.values():
            self.store.ensure_version(version, root)  # idempotent, and rare: once per desired version
        try:
            with self.engine.begin() as conn:
                insert_rows(conn, t.runs, list(self._runs.values()))
                insert_rows(conn, t.passes, self._passes)
                insert_rows(conn, t.drifts, self._drifts)
                insert_rows(conn, t.actions, self._actions)
                for ids, state, error in self._updates:
                    values = {"state": state.value, "error": error, "updated_at": datetime.now(UTC)}
                    for some in chunks(ids):
                        conn.execute(t.actions.update().where(t.actions.c.id.in_(some)).values(**values))
                for run_id, status, error, at in self._finished:
                    values = {"status": status.value, "finished_at": at, "error": error}
                    conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(**values))
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
