"""What every SQL store class shares: its engine, and how a database error becomes StoreUnavailable."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.errors import StoreUnavailable
from reconciler.store.engine import safe_url


class SqlStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _fail(self, exc: SQLAlchemyError) -> StoreUnavailable:
        """The driver's words (first line, without SQLAlchemy's statement dump); never a password."""
        cause = getattr(exc, "orig", None) or exc
        detail = str(cause).splitlines()[0] if str(cause) else ""
        return StoreUnavailable(f"history store {safe_url(str(self.engine.url))}: {type(exc).__name__}: {detail}")
