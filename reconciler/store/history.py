"""SqlHistoryStore: desired versions, runs, passes, drifts and actions in SQL, written in bulk."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord, RunRecord, TargetPass
from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.plan import COMMITTED, FAILED_AFTER_WRITE, IN_FLIGHT, Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.values import from_json
from reconciler.store import tables as t
from reconciler.store.base import SqlStore
from reconciler.store.bulk import insert_rows
from reconciler.store.rows import action_of, action_rows, chunks, drift_rows, pass_of, pass_row


def _now() -> datetime:
    return datetime.now(UTC)


class SqlHistoryStore(SqlStore):
    """History on any SQLAlchemy engine. Secret values arrive redacted or are redacted here with the key."""

    def __init__(self, engine: sa.Engine, hmac_key: bytes) -> None:
        super().__init__(engine)
        self._key = hmac_key

    def _begin(self) -> Any:
        return self.engine.begin()

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def ensure_version(self, version: DesiredVersion, root: str) -> None:
        """Store a desired version once; later calls with the same digest change nothing."""
        try:
            with self._begin() as conn:
                exists = conn.execute(
                    sa.select(t.desired_versions.c.digest).where(t.desired_versions.c.digest == version.digest)
                ).first()
                if exists is None:
                    conn.execute(
                        t.desired_versions.insert().values(
                            digest=version.digest,
                            git_commit=version.git_commit,
                            git_dirty=version.git_dirty,
                            root=root,
                            first_seen_at=_now(),
                        )
                    )
        except IntegrityError:
            return  # another writer stored it first
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def start_run(
        self,
        kind: RunKind,
        trigger: str,
        desired_version: str | None,
        rollback_of: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
        at: datetime | None = None,
    ) -> str:
        """A new run; `at` when it started, if not now (a run kept in memory while the store was away)."""
        run_id = run_id or str(uuid.uuid4())
        try:
            with self._begin() as conn:
                conn.execute(
                    t.runs.insert().values(
                        id=run_id,
                        kind=kind.value,
                        trigger=trigger,
                        status=RunStatus.RUNNING.value,
                        started_at=at or _now(),
                        desired_version=desired_version,
                        rollback_of=rollback_of,
                        owner=owner,
                    )
                )
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return run_id

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None, at: datetime | None = None) -> None:
        try:
            with self._begin() as conn:
                conn.execute(
                    t.runs.update()
                    .where(t.runs.c.id == run_id)
                    .values(status=status.value, finished_at=at or _now(), error=error)
                )
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None:
        """One pass and all its drift, in one transaction and one bulk insert."""
        rows = drift_rows(run_id, record.target, drifts)
        try:
            with self._begin() as conn:
                conn.execute(t.passes.insert().values(**pass_row(run_id, record)))
                insert_rows(conn, t.drifts, rows)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None:
        if not actions:
            return
        rows = action_rows(actions, self._key, at or _now())
        try:
            with self._begin() as conn:
                insert_rows(conn, t.actions, rows)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        self._update_actions(ids, state, error)

    def settle_in_flight(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        self._update_actions(ids, state, error, only=t.actions.c.state.in_([s.value for s in IN_FLIGHT]))

    def _update_actions(
        self, ids: Sequence[str], state: ActionState, error: str | None, only: sa.ColumnElement[bool] | None = None
    ) -> None:
        if not ids:
            return
        now = _now()
        try:
            with self._begin() as conn:
                for some in chunks(ids):
                    which = t.actions.c.id.in_(some)
                    conn.execute(
                        t.actions.update()
                        .where(which if only is None else sa.and_(which, only))
                        .values(state=state.value, error=error, updated_at=now)
                    )
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    # -- reading -----------------------------------------------------------------------------------------

    def recent_writes(self, target: str, pointers: Sequence[str], since: datetime) -> dict[str, list[datetime]]:
        """When reconciler wrote each path of `target` since `since`: every committed forward write, however it
        ended (verified; rolled back or failed after the write, by verification or a health gate; or a noop
        because another writer got there first). A fight with another writer shows in all of them."""
        if not pointers:
            return {}
        # The target's writes in the window, filtered here rather than by `path IN (...)`: one value bound per
        # path failed past SQLite's variable limit (300k drifted keys), and chunks of it rescan the target.
        wanted = set(pointers)
        a = t.actions.c
        rows = self._rows(sa.select(a.path, a.updated_at).where(a.target == target, *_written_since(since)))
        found: dict[str, list[datetime]] = {}
        for r in rows:
            if r["path"] in wanted:
                found.setdefault(r["path"], []).append(r["updated_at"])
        return found

    def written_targets(self, targets: Collection[str], since: datetime) -> set[str]:
        a = t.actions.c
        found: set[str] = set()
        for some in chunks(sorted(targets)):
            rows = self._rows(sa.select(a.target).distinct().where(a.target.in_(some), *_written_since(since)))
            found.update(r["target"] for r in rows)
        return found

    def unfinished_runs(self) -> list[tuple[str, str | None]]:
        """(run id, owner) of every run still marked running: in flight now, or interrupted."""
        rows = self._rows(sa.select(t.runs.c.id, t.runs.c.owner).where(t.runs.c.status == RunStatus.RUNNING.value))
        return [(r["id"], r["owner"]) for r in rows]

    def writes_in_flight(self, target: str, excluding_run: str) -> list[tuple[str, str | None]]:
        query = (
            sa.select(t.runs.c.id, t.runs.c.owner)
            .where(
                t.runs.c.status == RunStatus.RUNNING.value,
                t.runs.c.id != excluding_run,
                sa.exists().where(
                    t.actions.c.run_id == t.runs.c.id,
                    t.actions.c.target == target,
                    t.actions.c.state.in_([s.value for s in IN_FLIGHT]),
                ),
            )
            .order_by(t.runs.c.started_at, t.runs.c.id)
        )
        return [(r["id"], r["owner"]) for r in self._rows(query)]

    def runs(self, limit: int = 20) -> list[RunRecord]:
        query = sa.select(t.runs).order_by(t.runs.c.started_at.desc(), t.runs.c.id).limit(limit)
        return self._runs(query)

    def run(self, run_id: str) -> RunRecord | None:
        found = self._runs(sa.select(t.runs).where(t.runs.c.id == run_id))
        return found[0] if found else None

    def _runs(self, query: sa.Select[Any]) -> list[RunRecord]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
                ids = [r["id"] for r in rows]
                if not ids:
                    return []
                counts: dict[str, Counter[str]] = {i: Counter() for i in ids}
                for run_id, state, n in conn.execute(
                    sa.select(t.actions.c.run_id, t.actions.c.state, sa.func.count())
                    .where(t.actions.c.run_id.in_(ids))
                    .group_by(t.actions.c.run_id, t.actions.c.state)
                ):
                    counts[run_id][state] = n
                pass_stats = {
                    run_id: (n, drift or 0)
                    for run_id, n, drift in conn.execute(
                        sa.select(t.passes.c.run_id, sa.func.count(), sa.func.sum(t.passes.c.drift_count))
                        .where(t.passes.c.run_id.in_(ids))
                        .group_by(t.passes.c.run_id)
                    )
                }
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return [
            RunRecord(
                id=r["id"],
                kind=RunKind(r["kind"]),
                trigger=r["trigger"],
                status=RunStatus(r["status"]),
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                desired_version=r["desired_version"],
                rollback_of=r["rollback_of"],
                error=r["error"],
                drift_count=int(pass_stats.get(r["id"], (0, 0))[1]),
                action_counts=dict(counts[r["id"]]),
                targets=int(pass_stats.get(r["id"], (0, 0))[0]),
            )
            for r in rows
        ]

    def _rows(self, query: sa.Select[Any]) -> Sequence[sa.RowMapping]:
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).mappings().all()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def passes(self, run_id: str) -> list[PassRecord]:
        found = self._rows(sa.select(t.passes).where(t.passes.c.run_id == run_id).order_by(t.passes.c.id))
        return [pass_of(r) for r in found]

    def target_passes(self, target: str, limit: int = 20) -> list[TargetPass]:
        """`target`'s most recent passes, newest first, each with its run's kind, trigger and start."""
        query = (
            sa.select(t.passes, t.runs.c.kind, t.runs.c.trigger, t.runs.c.started_at)
            .join(t.runs, t.runs.c.id == t.passes.c.run_id)
            .where(t.passes.c.target == target)
            .order_by(t.runs.c.started_at.desc(), t.passes.c.id.desc())
            .limit(limit)
        )
        return [
            TargetPass(r["run_id"], RunKind(r["kind"]), r["trigger"], r["started_at"], pass_of(r))
            for r in self._rows(query)
        ]

    def drifts(self, run_id: str) -> list[dict[str, Any]]:
        """A run's drift rows, values decoded (secrets stay redacted)."""
        rows = self._rows(sa.select(t.drifts).where(t.drifts.c.run_id == run_id).order_by(t.drifts.c.id))
        return [{**dict(r), "desired": from_json(r["desired"]), "observed": from_json(r["observed"])} for r in rows]

    def actions(
        self, run_id: str | None = None, states: Sequence[ActionState] = (), action_id: str | None = None
    ) -> list[Action]:
        query = sa.select(t.actions)
        if action_id is not None:
            query = query.where(t.actions.c.id == action_id)
        if run_id is not None:
            query = query.where(t.actions.c.run_id == run_id)
        if states:
            query = query.where(t.actions.c.state.in_([s.value for s in states]))
        found = self._rows(query.order_by(t.actions.c.created_at, t.actions.c.run_id, t.actions.c.seq))
        return [action_of(r) for r in found]


def _written_since(since: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """What `recent_writes` counts: an action committed forward (not a rollback) and settled since `since`."""
    a = t.actions.c
    committed = sa.or_(
        a.state.in_([s.value for s in COMMITTED]),
        (a.state == ActionState.FAILED.value) & sa.or_(*(a.error.startswith(p) for p in FAILED_AFTER_WRITE)),
    )
    return committed, a.rollback_of.is_(None), a.updated_at >= since
