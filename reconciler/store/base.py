"""What every SQL store class shares: its engine, and how a database error becomes StoreUnavailable."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from reconciler.errors import StoreUnavailable
from reconciler.store.engine import describe_error


class SqlStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _fail(self, exc: SQLAlchemyError) -> StoreUnavailable:
        """The cause in words (store/engine.describe_error), without SQLAlchemy's statement dump; never a
        password."""
        return StoreUnavailable(f"history store {describe_error(exc, self.engine.url.render_as_string(False))}")
