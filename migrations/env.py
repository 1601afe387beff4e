"""Alembic environment: the engine comes from `reconciler db upgrade`, or from RECONCILER_DATABASE_URL."""

from __future__ import annotations

from alembic import context

from reconciler.settings import load_settings
from reconciler.store import engine as engines
from reconciler.store.tables import metadata

config = context.config


def run_migrations_offline() -> None:
    context.configure(url=load_settings().database_url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or engines.create_engine(load_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
