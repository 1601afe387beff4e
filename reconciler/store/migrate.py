"""Alembic, driven from code: upgrade, current revision, and the start-up check."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from reconciler.errors import NotMigrated, StoreUnavailable
from reconciler.store.engine import describe_error, safe_url


def migrations_dir() -> Path:
    """migrations/ beside the package (a source checkout or an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("the Alembic migrations folder was not found beside the reconciler package")


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["engine"] = engine
    return config


def head() -> str:
    script = ScriptDirectory.from_config(alembic_config(sa.create_engine("sqlite://")))
    revision = script.get_current_head()
    assert revision is not None
    return revision


def current(engine: sa.Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot reach {describe_error(exc, engine.url.render_as_string(False))}") from None


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def check(engine: sa.Engine) -> None:
    """Raise NotMigrated, saying what to run, when the database is not at the code's head revision."""
    have, want = current(engine), head()
    if have != want:
        state = "has no reconciler tables" if have is None else f"is at revision {have}"
        raise NotMigrated(
            f"the history database {safe_url(str(engine.url))} {state}; this version needs {want}. "
            "Run `reconciler db upgrade` (with the same RECONCILER_DATABASE_URL) first."
        )
