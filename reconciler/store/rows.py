"""The history tables' rows: what record_pass and the journal insert, built from the domain's records, and
what the readers turn back into them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DriftOp
from reconciler.domain.paths import from_pointer
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunStatus
from reconciler.domain.values import from_json, to_json


def pass_of(r: sa.RowMapping) -> PassRecord:
    """A `passes` row, read back."""
    return PassRecord(
        target=r["target"],
        environment=r["environment"],
        status=RunStatus(r["status"]),
        drift_count=r["drift_count"],
        drift_percent=r["drift_percent"],
        observed_fingerprint=r["observed_fingerprint"],
        error=r["error"],
        duration_s=r["duration_s"],
        note=r["note"],
    )


CHUNK = 900  # values bound in one IN (...): SQLite before 3.32 allows 999 in all, later ones 32,766


def chunks(values: Sequence[str], size: int = CHUNK) -> list[list[str]]:
    """`values` in lists of at most `size`, for statements that bind each value (`IN (...)`), which fail past
    the database's limit of bound variables (`too many SQL variables` at 300,000 drifted keys)."""
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


def drift_rows(run_id: str, target: str, drifts: Sequence[Classified]) -> list[dict[str, Any]]:
    """The `drifts` rows of one pass, as record_pass inserts them.

    Enum members give their `_value_` (a plain attribute) rather than `value` (a Python-level property, about a
    microsecond each): a pass with 100,000 drifted keys reads two per row."""
    return [
        {
            "run_id": run_id,
            "target": target,
            "path": c.item.pointer,
            "op": c.item.op._value_,
            "class": c.class_._value_,
            "reason": c.reason,
            "decided_by": c.decided_by,
            "desired": to_json(c.item.desired),
            "observed": to_json(c.item.observed),
            "secret": c.item.secret,
        }
        for c in drifts
    ]


def pass_row(run_id: str, record: PassRecord) -> dict[str, Any]:
    """The `passes` row of one pass."""
    return {
        "run_id": run_id,
        "target": record.target,
        "environment": record.environment,
        "status": record.status.value,
        "drift_count": record.drift_count,
        "drift_percent": record.drift_percent,
        "observed_fingerprint": record.observed_fingerprint,
        "error": record.error,
        "duration_s": record.duration_s,
        "note": record.note,
    }


def action_rows(actions: Sequence[Action], key: bytes, now: datetime) -> list[dict[str, Any]]:
    """The `actions` rows of a journal entry, secrets hashed with `key` (enum values as in drift_rows)."""
    return [
        {
            "id": a.id,
            "run_id": a.run_id,
            "seq": seq,
            "target": a.target,
            "path": a.pointer,
            "op": a.op._value_,
            "before": to_json(a.journal_before(key) if a.secret else a.before),
            "after": to_json(a.journal_after(key) if a.secret else a.after),
            "desired_version": a.desired_version,
            "idempotency_key": a.idempotency_key,
            "reason": a.reason,
            "secret": a.secret,
            "rollback_of": a.rollback_of,
            "state": a.state._value_,
            "error": a.error,
            "created_at": now,
            "updated_at": now,
        }
        for seq, a in enumerate(actions)
    ]


def action_of(r: sa.RowMapping) -> Action:
    """An `actions` row, read back (a secret's values stay as the journal keeps them: hashed)."""
    return Action(
        id=r["id"],
        run_id=r["run_id"],
        target=r["target"],
        path=from_pointer(r["path"]),
        op=DriftOp(r["op"]),
        before=from_json(r["before"]),
        after=from_json(r["after"]),
        desired_version=r["desired_version"],
        reason=r["reason"],
        secret=r["secret"],
        rollback_of=r["rollback_of"],
        state=ActionState(r["state"]),
        error=r["error"],
        idempotency_key=r["idempotency_key"],
    )
