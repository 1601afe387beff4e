"""SqlAdoptionStore: recorded drift looked up by id, and adoptions recorded with who and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.domain.values import from_json, to_json
from reconciler.errors import StoreUnavailable
from reconciler.store import tables as t
from reconciler.store.engine import safe_url


class SqlAdoptionStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _fail(self, exc: SQLAlchemyError) -> StoreUnavailable:
        return StoreUnavailable(f"history store {safe_url(str(self.engine.url))}: {type(exc).__name__}")

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
