"""One key's story, in order: seen drifting, classified, escalated, decided, written, verified or rolled back,
gone, adopted. Built from the rows history already keeps; what the CLI prints and the web UI shows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.audit import AuditEvent, EventKind
from reconciler.domain.run import RunKind, RunStatus
from reconciler.store import tables as t
from reconciler.store.audit import DAEMON, RUN_COLUMNS, action_end, decision, run_actor, value, with_runs
from reconciler.store.base import SqlStore

# Events at the same instant read in the order things happen.
_ORDER = {kind: i for i, kind in enumerate(EventKind)}


class SqlTimeline(SqlStore):
    def timeline(self, target: str, pointer: str, since: datetime) -> list[AuditEvent]:
        """Every event of `target`'s key at `pointer` since `since`, oldest first."""
        try:
            with self.engine.connect() as conn:
                events = [
                    *_drift_events(conn, target, pointer, since),
                    *_approval_events(conn, target, pointer, since),
                    *_action_events(conn, target, pointer, since),
                    *_adoption_events(conn, target, pointer, since),
                ]
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return sorted(events, key=lambda e: (e.at, _ORDER[e.event]))


def _drift_events(conn: sa.Connection, target: str, pointer: str, since: datetime) -> Iterator[AuditEvent]:
    """Walk the target's recorded passes (passes of unchanged targets are not recorded: nothing changed) and
    say when the key started drifting, changed, changed class, and stopped drifting."""
    p, d, r = t.passes.c, t.drifts.c, t.runs.c
    looked = r.kind != RunKind.ROLLBACK.value, p.status != RunStatus.FAILED.value  # a failed pass saw nothing
    passes = (
        conn.execute(
            sa.select(p.run_id, p.environment, *RUN_COLUMNS)
            .select_from(with_runs(t.passes, p.run_id))
            .where(p.target == target, r.started_at >= since, *looked)
            .order_by(r.started_at, p.id)
        )
        .mappings()
        .all()
    )
    rows = {
        row["run_id"]: row
        for row in conn.execute(
            sa.select(t.drifts)
            .join(t.runs, r.id == d.run_id)
            .where(d.target == target, d.path == pointer, r.started_at >= since)
        ).mappings()
    }
    prev: Any = None  # the key's drift row at the previous pass, None while it was not drifting
    for run in passes:
        row = rows.get(run["run_id"])
        actor = run_actor(run["run_trigger"], run["run_owner"])
        common = _common(run, target, pointer, actor)
        if row is not None and (prev is None or row["observed"] != prev["observed"]):
            kind = EventKind.SEEN if prev is None else EventKind.CHANGED
            yield AuditEvent(
                event=kind,
                id=str(row["id"]),
                op=row["op"],
                desired=value(row["desired"]),
                observed=value(row["observed"]),
                secret=row["secret"],
                **common,
            )
        if row is not None and (
            prev is None or (row["class"], row["decided_by"]) != (prev["class"], prev["decided_by"])
        ):
            yield AuditEvent(
                event=EventKind.CLASSIFIED,
                id=str(row["id"]),
                class_=row["class"],
                decided_by=row["decided_by"],
                reason=row["reason"],
                **common,
            )
        if row is None and prev is not None:
            yield AuditEvent(event=EventKind.GONE, reason="a pass found live equal to desired here", **common)
        prev = row


def _common(run: Any, target: str, pointer: str, actor: str) -> dict[str, Any]:
    return {
        "at": run["run_at"],
        "actor": actor,
        "target": target,
        "path": pointer,
        "run_id": run["run_id"],
        "environment": run.get("environment"),
        "run_kind": run["run_kind"],
        "desired_version": run["run_version"],
        "git_commit": run["git_commit"],
    }


def _approval_events(conn: sa.Connection, target: str, pointer: str, since: datetime) -> Iterator[AuditEvent]:
    a = t.approvals.c
    rows = conn.execute(
        sa.select(t.approvals, t.runs.c.trigger, t.runs.c.owner)
        .outerjoin(t.runs, t.runs.c.id == a.run_id)
        .where(a.target == target, a.path == pointer, sa.or_(a.created_at >= since, a.decided_at >= since))
    ).mappings()
    for row in rows:
        common = {"target": target, "path": pointer, "id": row["id"], "environment": row["environment"]}
        values = {"desired": value(row["desired"]), "observed": value(row["observed"]), "op": row["op"]}
        if row["created_at"] >= since:
            yield AuditEvent(
                at=row["created_at"], event=EventKind.ESCALATED, actor=run_actor(row["trigger"], row["owner"]),
                run_id=row["run_id"],
                reason=row["reason"], state="pending", **common, **values,
            )  # fmt: skip
        if row["decided_at"] is not None and row["decided_at"] >= since:
            yield AuditEvent(
                at=row["decided_at"], event=decision(row["state"]), actor=row["actor"] or DAEMON,
                comment=row["comment"], state=row["state"], **common,
            )  # fmt: skip
        expires = row["expires_at"]
        if row["state"] == "expired" and expires is not None and expires >= since:
            yield AuditEvent(at=expires, event=EventKind.EXPIRED, actor=DAEMON, state="expired", **common)


def _action_events(conn: sa.Connection, target: str, pointer: str, since: datetime) -> Iterator[AuditEvent]:
    a, p = t.actions.c, t.passes.c
    approved_by = {
        row[0]: row[1]
        for row in conn.execute(
            sa.select(t.approvals.c.action_id, t.approvals.c.actor).where(
                t.approvals.c.target == target, t.approvals.c.path == pointer, t.approvals.c.action_id.is_not(None)
            )
        )
    }
    rows = conn.execute(
        sa.select(t.actions, p.note, *RUN_COLUMNS)
        .select_from(with_runs(t.actions, a.run_id))
        .outerjoin(t.passes, (p.run_id == a.run_id) & (p.target == a.target))
        .where(a.target == target, a.path == pointer, a.updated_at >= since, a.state != "dry_run")
        .order_by(a.created_at, a.seq)
    ).mappings()
    for row in rows:
        actor = run_actor(row["run_trigger"], row["run_owner"])
        if row["id"] in approved_by:
            actor = f"{actor}, approved by {approved_by[row['id']]}"
        common = {
            "actor": actor, "target": target, "path": pointer, "run_id": row["run_id"], "id": row["id"],
            "run_kind": row["run_kind"], "desired_version": row["desired_version"], "git_commit": row["git_commit"],
            "op": row["op"], "before": value(row["before"]), "after": value(row["after"]), "secret": row["secret"],
            "rollback_of": row["rollback_of"],
        }  # fmt: skip
        if row["rollback_of"] is None and row["created_at"] >= since:
            yield AuditEvent(
                at=row["created_at"], event=EventKind.WRITTEN, state=row["state"], reason=row["reason"], **common
            )
        end = action_end(row["state"], row["rollback_of"])
        if end is not None:
            why = row["error"] or (row["note"] if row["rollback_of"] else None) or row["reason"]
            yield AuditEvent(
                at=row["updated_at"], event=end, state=row["state"], reason=why, error=row["error"], **common
            )


def _adoption_events(conn: sa.Connection, target: str, pointer: str, since: datetime) -> Iterator[AuditEvent]:
    d = t.adoptions.c
    rows = conn.execute(
        sa.select(t.adoptions).where(d.target == target, d.path == pointer, d.at >= since).order_by(d.at)
    ).mappings()
    for row in rows:
        yield AuditEvent(
            at=row["at"], event=EventKind.ADOPTED, actor=row["actor"], target=target, path=pointer,
            id=str(row["id"]), after=value(row["value"]), reason=row["reason"], comment=f"written to {row['file']}",
        )  # fmt: skip
