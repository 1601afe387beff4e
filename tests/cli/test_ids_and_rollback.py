"""The CLI at 2 AM: ids given back as printed (a unique prefix), and rollbacks that tell the truth about live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reconciler.domain.run import RunKind
from reconciler.runtime import compose
from reconciler.settings import Settings
from tests.test_cli import cli, migrated  # noqa: F401 - the fixture, shared


def prod_file(example: Path) -> Path:
    return example / "live" / "payments-api" / "prod" / "config.yaml"


def recorded_runs() -> int:
    return len(json.loads(cli("history", "--limit", "10000", "--format", "json").stdout))


@pytest.mark.usefixtures("migrated")
def test_a_unique_prefix_works_wherever_an_id_is_taken(settings: Settings, example: Path) -> None:
    """history, rollback and approvals take the first eight characters of an id as the tables print them."""
    applied = json.loads(cli("apply", "--target", "payments-api-prod", "--format", "json").stdout)
    prefix = applied["run_id"][:8]
    detail = cli("history", prefix, "--format", "json")
    assert detail.exit_code == 0 and json.loads(detail.stdout)["id"] == applied["run_id"]
    action = next(a for a in applied["targets"][0]["actions"] if a["path"] == "/log_level")
    undone = cli("rollback", action["id"][:6])
    assert undone.exit_code == 0, undone.output
    assert yaml.safe_load(prod_file(example).read_text())["log_level"] == "DEBUG"
    (approval,) = [
        a for a in json.loads(cli("approvals", "list", "--format", "json").stdout) if a["state"] == "pending"
    ]
    decided = cli("approvals", "approve", approval["id"][:8].upper(), "--actor", "alice")
    assert decided.exit_code == 0 and "approved: payments-api-prod /database/pool_size by alice" in decided.output


@pytest.mark.usefixtures("migrated")
def test_an_ambiguous_prefix_lists_the_matches_and_a_short_one_is_refused(settings: Settings) -> None:
    """Two runs sharing a prefix: the prefix names both and exits 1; fewer than six characters never match."""
    store = compose.build_store(settings)
    first = store.start_run(RunKind.APPLY, "cli", None, run_id="abcdef01-0000-4000-8000-000000000001")
    second = store.start_run(RunKind.APPLY, "cli", None, run_id="abcdef02-0000-4000-8000-000000000002")
    ambiguous = cli("history", "abcdef")
    assert ambiguous.exit_code == 1
    assert "abcdef is ambiguous" in ambiguous.output and first in ambiguous.output and second in ambiguous.output
    assert cli("rollback", "abcdef").exit_code == 1 and "ambiguous" in cli("rollback", "abcdef").output
    assert json.loads(cli("history", "abcdef02", "--format", "json").stdout)["id"] == second
    short = cli("history", "abcde")
    assert short.exit_code == 1 and "no run with id abcde (a prefix needs at least 6 characters)" in short.output
    assert "no run or action with id ffffffff" in cli("rollback", "ffffffff").output
    assert "no run with id 100%_" in cli("history", "100%_").output  # LIKE's wildcards are taken literally
    assert "no approval with id 0123456" in cli("approvals", "reject", "0123456").output


@pytest.mark.usefixtures("migrated")
def test_adopt_takes_a_drift_id_exactly(settings: Settings) -> None:
    """A drift id is a whole number: anything else, or an unknown one, is a clear error with exit 1."""
    for bad, words in (("not-a-number", "no drift with id not-a-number"), ("999999", "no drift with id 999999")):
        result = cli("adopt", bad, "--reason", "r")
        assert result.exit_code == 1 and words in result.output


@pytest.mark.usefixtures("migrated")
def test_a_refused_rollback_shows_what_live_really_holds(settings: Settings, example: Path) -> None:
    """Someone changed the key after the run wrote it: the rollback refuses it, and LIVE NOW shows the hand-made
    value (not the one the run wrote), in the table, JSON and Markdown; the dry run records nothing."""
    applied = json.loads(cli("apply", "--target", "payments-api-prod", "--format", "json").stdout)
    prod = prod_file(example)
    prod.write_text(prod.read_text().replace("log_level: INFO", "log_level: WARNING"))
    before = recorded_runs()
    preview = json.loads(cli("rollback", applied["run_id"], "--dry-run", "--format", "json").stdout)
    assert recorded_runs() == before  # a dry run is not a rollback run
    markdown = cli("rollback", applied["run_id"], "--dry-run", "--format", "markdown").stdout
    assert "| Path | Live Now | Put Back | State | Note |" in markdown
    assert '| /log_level | "WARNING" | "DEBUG" | conflict | ' in markdown
    assert "(rollback, a dry run: not recorded)" in markdown
    (actions,) = [t["actions"] for t in preview["targets"]]
    level = next(a for a in actions if a["path"] == "/log_level")
    assert (level["live_now"], level["live_now_read"], level["state"]) == ("WARNING", True, "conflict")
    gone = next(a for a in actions if a["path"] == "/debug_endpoints")
    assert gone["live_now_missing"] and gone["state"] == "dry_run"

    refused = cli("rollback", applied["run_id"])
    assert refused.exit_code == 1
    row = next(line for line in refused.stdout.splitlines() if line.strip().startswith("/log_level"))
    assert row.split()[:3] == ["/log_level", '"WARNING"', '"DEBUG"']
    undone = next(line for line in refused.stdout.splitlines() if line.strip().startswith("/debug_endpoints"))
    assert undone.split()[:3] == ["/debug_endpoints", "true", "true"]  # put back, and live holds it now
    assert recorded_runs() == before + 1
    assert yaml.safe_load(prod.read_text())["log_level"] == "WARNING"
