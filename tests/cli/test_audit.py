"""history (runs, a key's timeline, export) and db prune, driven from the CLI as an SRE would."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.domain.audit import EXPORT_FIELDS
from tests.test_cli import cli, migrated  # noqa: F401 - the fixture, found by name

# Every test here starts from the example with a migrated history (the fixture of tests/test_cli.py).
pytestmark = pytest.mark.usefixtures("migrated")
KEY = ("--target", "payments-api-prod", "--path", "/database/pool_size")


def approve_and_fix() -> None:
    """The example's escalated pool size: planned, approved by alice, applied, and seen fixed."""
    cli("plan")
    (approval,) = json.loads(cli("approvals", "list", "--format", "json").stdout)
    assert cli("approvals", "approve", approval["id"], "--actor", "alice", "-m", "INC-4711 is over").exit_code == 0
    cli("apply")
    cli("plan")


def test_a_keys_timeline_from_the_cli() -> None:
    """`history --target --path` tells the escalated key's story with who approved it and why; JSON gives the
    same events; --since narrows it."""
    approve_and_fix()
    table = cli("history", *KEY)
    assert table.exit_code == 0, table.output
    events = [line.split()[2] for line in table.output.splitlines()[2:]]
    assert events == ["seen", "classified", "escalated", "approved", "written", "verified", "gone"]
    assert "alice" in table.output and "INC-4711 is over" in table.output
    as_json = json.loads(cli("history", *KEY, "--since", "1h", "--format", "json").stdout)
    assert [e["event"] for e in as_json] == events
    assert as_json[0]["observed"] == 10 and as_json[0]["desired"] == 20 and as_json[0]["desired_version"]
    markdown = cli("history", *KEY, "--format", "markdown").stdout
    assert markdown.startswith("## payments-api-prod `/database/pool_size`") and "| approved | alice |" in markdown


def test_history_refuses_bad_input_with_exit_1() -> None:
    """A timeline needs both --target and --path, a pointer and a real duration; export takes jsonl or csv."""
    for args, words in [
        (("history", "--target", "x"), "needs both --target and --path"),
        (("history", "--target", "x", "--path", "db"), "not a JSON Pointer"),
        (("history", *KEY, "--since", "a week"), "not a duration"),
        (("history", "export", "--format", "xml"), "jsonl, csv"),
        (("db", "prune", "--older-than", "0d"), "not a duration"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 1 and words in result.stderr, (args, result.stderr)


def test_export_streams_every_event_as_jsonl_or_csv() -> None:
    """`history export` writes every event with the stable field names, secrets never in clear."""
    approve_and_fix()
    lines = [json.loads(line) for line in cli("history", "export", "--since", "30d").stdout.splitlines()]
    assert {"run", "pass", "drift", "action", "escalated", "approved"} <= {line["event"] for line in lines}
    assert all(tuple(line) == EXPORT_FIELDS for line in lines)
    rows = list(csv.DictReader(io.StringIO(cli("history", "export", "--format", "csv").stdout)))
    assert len(rows) == len(lines) and rows[0]["at"] <= rows[-1]["at"]


def test_db_prune_counts_then_deletes(sqlite_url: str) -> None:
    """`db prune --dry-run` counts and changes nothing; `db prune` deletes what is older and not needed. Of two
    old plans, the first stays (it holds the first drift under the example's active exception), the second
    goes (later passes of every target superseded it)."""
    cli("plan")
    approve_and_fix()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        old = conn.execute(sa.text("SELECT id FROM runs ORDER BY started_at LIMIT 2")).scalars().all()
        for run_id in old:
            conn.execute(sa.text("UPDATE runs SET started_at = '2020-01-01 00:00:00' WHERE id = :id"), {"id": run_id})
        before = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    dry = cli("db", "prune", "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0 and "would delete" in dry.output and "runs 1" in dry.output
    assert "kept 1 older runs" in dry.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == before
    done = cli("db", "prune", "--older-than", "30d")
    assert done.exit_code == 0 and "deleted" in done.output and "runs 1" in done.output
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT id FROM runs")).scalars())
    assert len(left) == before - 1 and old[0] in left and old[1] not in left
    engine.dispose()


def test_db_prune_with_a_broken_desired_state_changes_nothing(example: Path) -> None:
    """The desired state says which exceptions are active; if it cannot be read, prune refuses and exits 1."""
    (example / "desired" / "broken.yaml").write_text("kind: Target\nmetadata: {name: x}\nspec: {desired: {}}\n")
    result = cli("db", "prune", "--older-than", "1d")
    assert result.exit_code == 1 and "broken.yaml" in result.output
