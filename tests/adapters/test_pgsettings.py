"""The PostgreSQL settings adapter against a real, private PostgreSQL cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from reconciler.adapters.pgsettings import PostgresSettingsAdapter
from reconciler.errors import AccessDenied, ApplyError, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port
from tests.servers import PG_PASSWORD

pytestmark = pytest.mark.integration


@pytest.fixture
def adapter() -> PostgresSettingsAdapter:
    return PostgresSettingsAdapter(Settings(adapters=AdapterSettings(credentials={"pg": PG_PASSWORD}, timeout_s=5)))


@pytest.fixture
def server(pg_cluster: dict[str, Any]) -> dict[str, Any]:
    """The private cluster, with ALTER SYSTEM's file emptied again after each test."""
    yield pg_cluster
    with psycopg.connect(host="127.0.0.1", port=pg_cluster["port"], user="postgres", autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET ALL")
        conn.execute("SELECT pg_reload_conf()")


def source(server: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"adapter": "postgres", **server, "password": "pg", **extra}


def show(server: dict[str, Any], name: str) -> str:
    with psycopg.connect(host="127.0.0.1", port=server["port"], user="postgres") as conn:
        return str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]


def test_reads_only_the_managed_settings_in_base_units(
    tmp_path: Path, server: dict[str, Any], adapter: PostgresSettingsAdapter
) -> None:
    desired = {"work_mem": "64MB", "statement_timeout": "30s", "log_connections": True, "shared_buffers": "128MB"}
    t = target(tmp_path, source(server, include=["max_conn*"]), desired)
    observed = adapter.discover(t)
    assert set(observed.document) == {*desired, "max_connections"}
    assert observed.document["work_mem"] == "4096"  # kB
    assert observed.unwritable == {
        "/shared_buffers": "needs a server restart (context postmaster)",
        "/max_connections": "needs a server restart (context postmaster)",
    }
    assert adapter.normalize(t, desired) == {
        "work_mem": "65536",
        "statement_timeout": "30000",
        "log_connections": "on",
        "shared_buffers": "16384",  # 8kB pages
    }


def test_staged_apply_reload_and_verify(
    tmp_path: Path, server: dict[str, Any], adapter: PostgresSettingsAdapter
) -> None:
    t = target(tmp_path, source(server), {"work_mem": "64MB"})
    adapter.discover(t)
    staged = adapter.stage(t, [Change(("work_mem",), "4096", "65536")], dry_run=False)
    assert staged.results == [ChangeResult.WRITE]
    assert show(server, "work_mem") == "4MB"  # staged in postgresql.auto.conf, not yet in force
    adapter.commit(staged)
    assert show(server, "work_mem") == "64MB"
    assert adapter.discover(t).document == {"work_mem": "65536"}


def test_an_invalid_value_is_refused_at_stage_and_nothing_stays_staged(
    tmp_path: Path, server: dict[str, Any], adapter: PostgresSettingsAdapter
) -> None:
    t = target(tmp_path, source(server), {"work_mem": "1MB", "log_min_messages": "loud"})
    adapter.discover(t)
    changes = [Change(("work_mem",), "4096", "1024"), Change(("log_min_messages",), "warning", "loud")]
    with pytest.raises(ApplyError, match='invalid value for parameter "log_min_messages"'):
        adapter.stage(t, changes, dry_run=False)
    with psycopg.connect(host="127.0.0.1", port=server["port"], user="postgres") as conn:
        assert conn.execute("SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'").fetchone() == (
            0,
        )


def test_discard_restores_what_alter_system_held(
    tmp_path: Path, server: dict[str, Any], adapter: PostgresSettingsAdapter
) -> None:
    t = target(tmp_path, source(server), {"work_mem": "8MB"})
    adapter.commit(adapter.stage(t, [Change(("work_mem",), "4096", "8192")], dry_run=False))
    staged = adapter.stage(t, [Change(("work_mem",), "8192", "16384")], dry_run=False)
    adapter.discard(staged)
    adapter.commit(adapter.stage(t, [Change(("statement_timeout",), "0", "1000")], dry_run=False))
    assert show(server, "work_mem") == "8MB"


def test_a_second_writer_between_stage_and_commit_is_a_conflict(
    tmp_path: Path, server: dict[str, Any], adapter: PostgresSettingsAdapter
) -> None:
    t = target(tmp_path, source(server), {"work_mem": "8MB"})
    staged = adapter.stage(t, [Change(("work_mem",), "4096", "8192")], dry_run=False)
    with psycopg.connect(host="127.0.0.1", port=server["port"], user="postgres", autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET work_mem = '2MB'")
    with pytest.raises(ConflictError, match="work_mem was changed by another writer"):
        adapter.commit(staged)
    stale = adapter.stage(t, [Change(("work_mem",), "8192", "16384")], dry_run=True)
    assert stale.results == [ChangeResult.CONFLICT]


def test_a_restart_setting_is_never_written(
    tmp_path: Path, server: dict[str, Any], adapter: PostgresSettingsAdapter
) -> None:
    t = target(tmp_path, source(server), {"shared_buffers": "256MB"})
    with pytest.raises(ApplyError, match="shared_buffers needs a server restart"):
        adapter.stage(t, [Change(("shared_buffers",), "16384", "32768")], dry_run=False)


def test_errors_are_clear_and_hold_no_password(tmp_path: Path, server: dict[str, Any]) -> None:
    wrong = PostgresSettingsAdapter(Settings(adapters=AdapterSettings(credentials={"pg": "wrong-one"})))
    with pytest.raises(AccessDenied, match="refused the credentials") as caught:
        wrong.discover(target(tmp_path, source(server), {"work_mem": "4MB"}))
    assert "wrong-one" not in str(caught.value)
    fine = PostgresSettingsAdapter(Settings(adapters=AdapterSettings(credentials={"pg": PG_PASSWORD}, timeout_s=1)))
    with pytest.raises(DiscoveryError, match="cannot connect"):
        fine.discover(target(tmp_path, source(server, port=free_port()), {"work_mem": "4MB"}))
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.work_men: .* has no setting named 'work_men'"):
        fine.discover(target(tmp_path, source(server), {"work_men": "4MB"}))
    t = target(tmp_path, source(server), {"work_mem": "four", "statement_timeout": "5mb"})
    fine.discover(t)
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.work_mem: 'four' is not a number"):
        fine.normalize(t, {"work_mem": "four"})
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.statement_timeout: unit 'mb' is not one of us"):
        fine.normalize(t, {"statement_timeout": "5mb"})
