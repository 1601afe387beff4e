"""Ids as people give them back: a whole id, or a unique prefix (at least MIN_PREFIX characters) of a run,
action or approval id; drift ids are whole numbers and are matched exactly (a number's prefix is another
drift). Also: which run undid a write (what a second rollback of the same run reports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.plan import ActionState
from reconciler.errors import ConfigurationError
from reconciler.store import tables as t
from reconciler.store.base import SqlStore

MIN_PREFIX = 6
SHOWN = 10  # matches listed for an ambiguous prefix
_TABLES = {"run": t.runs, "action": t.actions, "approval": t.approvals, "drift": t.drifts}


class Found(NamedTuple):
    kind: str  # run, action, approval or drift
    id: str


class SqlIds(SqlStore):
    def resolve(self, text: str, kinds: Sequence[str]) -> Found:
        """The one id of `kinds` that `text` names, whole or by a unique prefix; a ConfigurationError naming
        the matches when it is ambiguous, or saying what was looked for when nothing matches."""
        given = text.strip().lower()
        what = " or ".join(kinds)
        if not given:
            raise ConfigurationError(f"an empty {what} id")
        exact = self._matches(given, kinds, prefix=False)
        if len(exact) == 1:
            return exact[0]
        found = exact or (self._matches(given, kinds, prefix=True) if len(given) >= MIN_PREFIX else [])
        if not found:
            prefixes = any(k != "drift" for k in kinds)
            short = (
                f" (a prefix needs at least {MIN_PREFIX} characters)" if prefixes and len(given) < MIN_PREFIX else ""
            )
            raise ConfigurationError(f"no {what} with id {text}{short}")
        if len(found) > 1:
            listed = "; ".join(f"{f.kind} {f.id}" for f in found[:SHOWN])
            more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
            raise ConfigurationError(f"{text} is ambiguous: it matches {listed}{more}; give more characters")
        return found[0]

    def _matches(self, given: str, kinds: Sequence[str], *, prefix: bool) -> list[Found]:
        found: list[Found] = []
        try:
            with self.engine.connect() as conn:
                for kind in kinds:
                    table = _TABLES[kind]
                    if kind == "drift":
                        if prefix or not given.isdigit() or len(given) > 18:
                            continue
                        query = sa.select(table.c.id).where(table.c.id == int(given))
                    elif prefix:
                        escaped = given.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                        query = sa.select(table.c.id).where(table.c.id.like(escaped + "%", escape="\\"))
                    else:
                        query = sa.select(table.c.id).where(table.c.id == given)
                    rows = conn.execute(query.order_by(table.c.id).limit(SHOWN + 1)).scalars().all()
                    found += [Found(kind, str(r)) for r in rows]
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return found

    def undone_by(self, action_ids: Sequence[str]) -> dict[str, str]:
        """For each of `action_ids` that a later action put back (a rollback run's, or the automatic rollback
        of its own run), the id of the run that did."""
        if not action_ids:
            return {}
        a = t.actions
        held = (ActionState.VERIFIED.value, ActionState.NOOP.value)
        found: dict[str, str] = {}
        try:
            with self.engine.connect() as conn:
                for i in range(0, len(action_ids), 900):
                    rows = conn.execute(
                        sa.select(a.c.rollback_of, a.c.run_id)
                        .where(a.c.rollback_of.in_(action_ids[i : i + 900]), a.c.state.in_(held))
                        .order_by(a.c.created_at)
                    )
                    found.update((r.rollback_of, r.run_id) for r in rows)
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        return found
