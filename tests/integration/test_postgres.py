"""The same migrations and store on the real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.history import SqlHistoryStore
from tests.conftest import HMAC_KEY
from tests.store.test_history import exercise

pytestmark = pytest.mark.integration


def test_migrations_and_history_on_postgres(postgres_url: str) -> None:
    """Alembic migrates an empty PostgreSQL database to head, and the store round-trips everything."""
    engine = engines.create_engine(postgres_url)
    with pytest.raises(Exception, match="Run `reconciler db upgrade`"):
        migrate.check(engine)
    migrate.upgrade(engine)
    migrate.check(engine)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"desired_versions", "runs", "passes", "drifts", "actions", "alembic_version"} <= tables
    exercise(SqlHistoryStore(engine, HMAC_KEY))
    migrate.downgrade(engine, "base")  # and back down
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()


def test_cli_apply_and_rollback_on_postgres(
    postgres_url: str, settings: Settings, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's db upgrade, apply, history and rollback work with RECONCILER_DATABASE_URL on PostgreSQL."""
    monkeypatch.setenv("RECONCILER_DATABASE_URL", postgres_url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, check=False)

    assert run("db", "upgrade").returncode == 0
    env_file = example / "live" / "checkout" / "staging.env"
    original = env_file.read_text()
    applied = run("apply", "--target", "checkout-staging", "--format", "json")
    assert applied.returncode == 0, applied.stderr
    assert "FEATURE_FAST_PAY=false" in env_file.read_text()
    run_id = json.loads(applied.stdout)["run_id"]
    assert run_id in run("history").stdout
    assert run("rollback", run_id).returncode == 0
    assert env_file.read_text() == original
