"""SqlAdoptionStore: recorded drift looked up by id, and adoptions recorded with who and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.values import from_json, to_json
from reconciler.store import tables as t
from reconciler.store.base import SqlStore


class SqlAdoptionStore(SqlStore):
    def drift(self, drift_id: int) -> dict[str, Any] | None:
        """One recorded drift row, values decoded (secrets stay redacted)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.drifts).where(t.drifts.c.id == drift_id)).mappings().first()
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
        if row is None:
            return None
        return {**dict(row), "desired": from_json(row["desired"]), "observed": from_json(row["observed"])}

    def record(
        self, drift_id: int, target: str, path: str, value: Any, file: str, actor: str, reason: str, at: datetime
    ) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.adoptions.insert().values(
                        drift_id=drift_id,
                        target=target,
                        path=path,
                        value=to_json(value),
                        file=file,
                        actor=actor,
                        reason=reason,
                        at=at,
                    )
                )
        except SQLAlchemyError as exc:
            raise self._fail(exc) from None
