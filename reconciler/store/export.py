"""Every event since a time, for audit tools: runs, passes, drift, actions, approvals, adoptions and breaker
changes, merged in time order. Each kind is one ordered query read in pages from its own cursor (a server-side
one on PostgreSQL), so memory stays flat however long the range."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.audit import AuditEvent, EventKind
from reconciler.store import tables as t
from reconciler.store.audit import DAEMON, RUN_COLUMNS, decision, run_actor, value, with_runs
from reconciler.store.base import SqlStore

PAGE = 2000  # rows fetched at a time from each cursor

Row = Any  # a RowMapping
Build = Callable[[Row], AuditEvent]


class SqlExport(SqlStore):
    def events(self, since: datetime) -> Iterator[AuditEvent]:
        """Every event at or after `since`, oldest first. A generator: the cursors stay open while it is read."""
        r, p, d, a, ap = t.runs.c, t.passes.c, t.drifts.c, t.actions.c, t.approvals.c
        streams = [
            self._stream(
                sa.select(t.runs, t.desired_versions.c.git_commit)
                .select_from(t.runs.outerjoin(t.desired_versions, t.desired_versions.c.digest == r.desired_version))
                .where(r.started_at >= since)
                .order_by(r.started_at, r.id),
                _run,
            ),
            self._stream(
                sa.select(t.passes, *RUN_COLUMNS)
                .select_from(with_runs(t.passes, p.run_id))
                .where(r.started_at >= since)
                .order_by(r.started_at, p.id),
                _pass,
            ),
            self._stream(
                sa.select(t.drifts, *RUN_COLUMNS)
                .select_from(with_runs(t.drifts, d.run_id))
                .where(r.started_at >= since)
                .order_by(r.started_at, d.id),
                _drift,
            ),
            self._stream(
                sa.select(t.actions, *RUN_COLUMNS)
                .select_from(with_runs(t.actions, a.run_id))
                .where(a.updated_at >= since)
                .order_by(a.updated_at, a.id),
                _action,
            ),
            self._stream(
                sa.select(t.approvals, r.trigger, r.owner)
                .outerjoin(t.runs, r.id == ap.run_id)
                .where(ap.created_at >= since)
                .order_by(ap.created_at),
                _escalated,
            ),
            self._stream(sa.select(t.approvals).where(ap.decided_at >= since).order_by(ap.decided_at), _decided),
            self._stream(sa.select(t.adoptions).where(t.adoptions.c.at >= since).order_by(t.adoptions.c.at), _adopted),
            self._stream(
                sa.select(t.breaker_events)
                .where(t.breaker_events.c.at >= since)
                .order_by(t.breaker_events.c.at, t.breaker_events.c.id),
                _breaker,
            ),
        ]
        return heapq.merge(*streams, key=lambda e: e.at)

    def _stream(self, query: sa.Select[Any], build: Build) -> Iterator[AuditEvent]:
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(query)
                for row in result.mappings():
                    yield build(row)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None


def _run(row: Row) -> AuditEvent:
    return AuditEvent(
        at=row["started_at"], event=EventKind.RUN, actor=run_actor(row["trigger"], row["owner"]), run_id=row["id"],
        id=row["id"], run_kind=row["kind"], state=row["status"], reason=row["trigger"], error=row["error"],
        desired_version=row["desired_version"], git_commit=row["git_commit"], rollback_of=row["rollback_of"],
    )  # fmt: skip


def _in_run(row: Row) -> dict[str, Any]:
    return {
        "at": row["run_at"], "actor": run_actor(row["run_trigger"], row["run_owner"]), "run_id": row["run_id"],
        "run_kind": row["run_kind"], "git_commit": row["git_commit"], "target": row["target"],
    }  # fmt: skip


def _pass(row: Row) -> AuditEvent:
    return AuditEvent(
        event=EventKind.PASS, id=str(row["id"]), environment=row["environment"], state=row["status"],
        error=row["error"], reason=row["note"], desired_version=row["run_version"], drift_count=row["drift_count"],
        **_in_run(row),
    )  # fmt: skip


def _drift(row: Row) -> AuditEvent:
    return AuditEvent(
        event=EventKind.DRIFT, id=str(row["id"]), path=row["path"], op=row["op"], class_=row["class"],
        decided_by=row["decided_by"], reason=row["reason"], desired=value(row["desired"]),
        observed=value(row["observed"]), secret=row["secret"], desired_version=row["run_version"], **_in_run(row),
    )  # fmt: skip


def _action(row: Row) -> AuditEvent:
    return AuditEvent(
        event=EventKind.ACTION, id=row["id"], path=row["path"], op=row["op"], state=row["state"],
        before=value(row["before"]), after=value(row["after"]), secret=row["secret"], reason=row["reason"],
        error=row["error"], desired_version=row["desired_version"], rollback_of=row["rollback_of"],
        **{**_in_run(row), "at": row["updated_at"]},
    )  # fmt: skip


def _approval(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "run_id": row["run_id"], "target": row["target"], "environment": row["environment"],
        "path": row["path"], "op": row["op"],
    }  # fmt: skip


def _escalated(row: Row) -> AuditEvent:
    return AuditEvent(
        at=row["created_at"], event=EventKind.ESCALATED, actor=run_actor(row["trigger"], row["owner"]),
        reason=row["reason"], state="pending",
        desired=value(row["desired"]), observed=value(row["observed"]), **_approval(row),
    )  # fmt: skip


def _decided(row: Row) -> AuditEvent:
    return AuditEvent(
        at=row["decided_at"], event=decision(row["state"]), actor=row["actor"] or DAEMON, comment=row["comment"],
        state=row["state"], **_approval(row),
    )  # fmt: skip


def _adopted(row: Row) -> AuditEvent:
    return AuditEvent(
        at=row["at"], event=EventKind.ADOPTED, actor=row["actor"], id=str(row["id"]), target=row["target"],
        path=row["path"], after=value(row["value"]), reason=row["reason"], comment=f"written to {row['file']}",
    )  # fmt: skip


def _breaker(row: Row) -> AuditEvent:
    return AuditEvent(
        at=row["at"], event=EventKind.BREAKER, actor=row["changed_by"] or DAEMON, id=str(row["id"]),
        state=row["state"], reason=row["reason"],
    )  # fmt: skip
