"""SqlApprovalStore: escalations waiting for a person, one row per exact drift."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.approval import Approval, ApprovalState, drift_key
from reconciler.domain.drift import Classified
from reconciler.domain.ids import new_id
from reconciler.domain.values import from_json, to_json
from reconciler.errors import ConfigurationError
from reconciler.store import tables as t
from reconciler.store.base import SqlStore
from reconciler.store.bulk import insert_rows
from reconciler.store.rows import chunks

UNDECIDED = {"actor": None, "comment": None, "decided_at": None, "expires_at": None, "action_id": None}
OPEN = (ApprovalState.PENDING.value, ApprovalState.APPROVED.value, ApprovalState.REJECTED.value)


class SqlApprovalStore(SqlStore):
    """Approvals on any SQLAlchemy engine; values are stored as the drift items carry them (secrets hashed)."""

    def sync(
        self, target: str, environment: str, escalations: Sequence[Classified], run_id: str | None, now: datetime
    ) -> tuple[dict[str, Approval], list[Approval]]:
        """Bring a target's approvals in line with its escalations now: one pending approval per new drift,
        superseded ones for drift that is gone or changed, expired ones past their time.
        Returns (approval by pointer for the current escalations, approvals created now)."""
        keys = {drift_key(target, c.item): c for c in escalations}
        try:
            with self.engine.begin() as conn:
                rows = _open_rows(conn, target)
                known = {r["drift_key"] for r in rows}
                gone = _supersede_gone(conn, rows, keys, now)
                late_keys = _expire_late(conn, rows, gone, now)
                pending = ApprovalState.PENDING.value
                # new_id and `_value_` rather than uuid4 and `value`: cheaper, the same text (one row per new
                # escalation: 100,000 in the largest benchmarked pass).
                new = [
                    {
                        "id": new_id(),
                        "drift_key": key,
                        "target": target,
                        "environment": environment,
                        "path": c.item.pointer,
                        "op": c.item.op._value_,
                        "desired": to_json(c.item.desired),
                        "observed": to_json(c.item.observed),
                        "reason": f"{c.reason} [{c.decided_by}]",
                        "state": pending,
                        "created_at": now,
                        "run_id": run_id,
                    }
                    for key, c in keys.items()
                    if key not in known or key in late_keys
                ]
                insert_rows(conn, t.approvals, new)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        # What is open now, without reading it back: the rows read above that stay open, and the new ones.
        kept = [_approval(r) for r in rows if r["drift_key"] in keys and r["drift_key"] not in late_keys]
        created = [_approval({**row, **UNDECIDED}) for row in new]
        return {a.pointer: a for a in kept + created}, created

    def decide(
        self, approval_id: str, *, approve: bool, actor: str, comment: str | None, now: datetime, ttl: timedelta
    ) -> Approval:
        """Approve or reject a pending approval; anything else is refused with the reason."""
        try:
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(t.approvals).where(t.approvals.c.id == approval_id)).mappings().first()
                if row is None:
                    raise ConfigurationError(f"no approval with id {approval_id}")
                if row["state"] != ApprovalState.PENDING:
                    raise ConfigurationError(
                        f"approval {approval_id} is {row['state']}; only pending approvals can be decided"
                        + (
                            " (the drift changed: see `reconciler approvals list`)"
                            if row["state"] == "superseded"
                            else ""
                        )
                    )
                values: dict[str, Any] = {
                    "state": (ApprovalState.APPROVED if approve else ApprovalState.REJECTED).value,
                    "actor": actor,
                    "comment": comment,
                    "decided_at": now,
                    "expires_at": now + ttl if approve else None,
                }
                conn.execute(t.approvals.update().where(t.approvals.c.id == approval_id).values(**values))
                updated = conn.execute(sa.select(t.approvals).where(t.approvals.c.id == approval_id)).mappings().one()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return _approval(updated)

    def mark_used(self, used: Sequence[tuple[str, str]]) -> None:
        """(approval id, action id) pairs whose change was applied and verified."""
        try:
            with self.engine.begin() as conn:
                for approval_id, action_id in used:
                    conn.execute(
                        t.approvals.update()
                        .where(t.approvals.c.id == approval_id)
                        .values(state=ApprovalState.USED.value, action_id=action_id)
                    )
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def open_targets(self, targets: Collection[str]) -> set[str]:
        """Which of `targets` have an open approval (pending, approved or rejected): one query for a batch of
        passes, whose others then need not ask for theirs when they find nothing escalated."""
        found: set[str] = set()
        try:
            with self.engine.connect() as conn:
                for some in chunks(sorted(targets)):
                    query = sa.select(t.approvals.c.target).where(
                        t.approvals.c.target.in_(some), t.approvals.c.state.in_(OPEN)
                    )
                    found.update(conn.execute(query.distinct()).scalars())
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return found

    def list(self, states: Sequence[ApprovalState] = (), limit: int = 200) -> list[Approval]:
        query = sa.select(t.approvals).order_by(t.approvals.c.created_at.desc()).limit(limit)
        if states:
            query = query.where(t.approvals.c.state.in_([s.value for s in states]))
        try:
            with self.engine.connect() as conn:
                return [_approval(r) for r in conn.execute(query).mappings().all()]
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None


def _open_rows(conn: sa.Connection, target: str) -> Sequence[sa.RowMapping]:
    """The target's open approvals (pending, approved or rejected). Filtered by drift key in Python, not with
    `drift_key IN (...)`, which binds a variable per key (SQLite allows 32,766)."""
    query = sa.select(t.approvals).where(t.approvals.c.target == target, t.approvals.c.state.in_(OPEN))
    return conn.execute(query).mappings().all()


def _supersede_gone(
    conn: sa.Connection, rows: Sequence[sa.RowMapping], keys: Collection[str], now: datetime
) -> set[str]:
    """Supersede the open approvals whose drift is no longer escalated (a rejection stays); their ids."""
    gone = [r["id"] for r in rows if r["drift_key"] not in keys and r["state"] != ApprovalState.REJECTED]
    for some in chunks(gone):
        conn.execute(
            t.approvals.update()
            .where(t.approvals.c.id.in_(some))
            .values(state=ApprovalState.SUPERSEDED.value, decided_at=now)
        )
    return set(gone)


def _expire_late(conn: sa.Connection, rows: Sequence[sa.RowMapping], gone: set[str], now: datetime) -> set[str]:
    """Expire the approvals given for drift that is still there but not used before their time; the drift keys
    they were given for (asked about again)."""
    late = [
        r
        for r in rows
        if r["state"] == ApprovalState.APPROVED and r["expires_at"] and r["expires_at"] <= now and r["id"] not in gone
    ]
    for some in chunks([r["id"] for r in late]):
        conn.execute(t.approvals.update().where(t.approvals.c.id.in_(some)).values(state=ApprovalState.EXPIRED.value))
    return {r["drift_key"] for r in late}


def _approval(r: Any) -> Approval:
    return Approval(
        id=r["id"],
        drift_key=r["drift_key"],
        target=r["target"],
        environment=r["environment"],
        pointer=r["path"],
        op=r["op"],
        desired=from_json(r["desired"]),
        observed=from_json(r["observed"]),
        reason=r["reason"],
        state=ApprovalState(r["state"]),
        created_at=r["created_at"],
        actor=r["actor"],
        comment=r["comment"],
        decided_at=r["decided_at"],
        expires_at=r["expires_at"],
        action_id=r["action_id"],
    )
