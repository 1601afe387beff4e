"""SqlBreakerStore: the circuit breaker's state, and the write outcomes it is decided by."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.plan import ActionState
from reconciler.store import tables as t
from reconciler.store.base import SqlStore

NAME = "remediation"
ENDED = (ActionState.VERIFIED, ActionState.FAILED, ActionState.ROLLED_BACK)


class SqlBreakerStore(SqlStore):
    def get(self) -> Breaker:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.breakers).where(t.breakers.c.name == NAME)).mappings().first()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        if row is None:
            return Breaker(BreakerState.CLOSED)
        return Breaker(BreakerState(row["state"]), row["reason"], row["opened_at"], row["until"], row["changed_by"])

    def set(self, breaker: Breaker, now: datetime) -> None:
        values = {
            "state": breaker.state.value,
            "reason": breaker.reason,
            "opened_at": breaker.opened_at,
            "until": breaker.until,
            "changed_by": breaker.changed_by,
            "changed_at": now,
        }
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(t.breakers.update().where(t.breakers.c.name == NAME).values(**values))
                if updated.rowcount == 0:
                    conn.execute(t.breakers.insert().values(name=NAME, **values))
                # kept for the audit trail (`reconciler history export`); pruned with the rest of history
                conn.execute(
                    t.breaker_events.insert().values(
                        name=NAME,
                        state=breaker.state.value,
                        reason=breaker.reason,
                        until=breaker.until,
                        changed_by=breaker.changed_by,
                        at=now,
                    )
                )
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None

    def write_outcomes(self, since: datetime) -> tuple[int, int]:
        """(failed or rolled back, all) forward writes that ended since `since`."""
        query = (
            sa.select(t.actions.c.state, sa.func.count())
            .where(
                t.actions.c.updated_at >= since,
                t.actions.c.rollback_of.is_(None),
                t.actions.c.state.in_([s.value for s in ENDED]),
            )
            .group_by(t.actions.c.state)
        )
        try:
            with self.engine.connect() as conn:
                counts = {state: n for state, n in conn.execute(query)}
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        failed = counts.get(ActionState.FAILED.value, 0) + counts.get(ActionState.ROLLED_BACK.value, 0)
        return failed, sum(counts.values())
