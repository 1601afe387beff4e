"""`reconciler compare`: the baseline matrix, the gate (--fail-on, --threshold), the allowlist's expired and
stale entries, and golden outputs of compare --baseline in every format."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.cli import app, main
from tests import golden

runner = CliRunner()

FLAGS = """kind: Target
metadata: {name: flags-dev, app: flags, environment: dev}
spec:
  source: {adapter: file, path: dev.json}
  desired: {new_ui: true, checkout_v2: true, beta: "on", limits: {rps: 100, burst: 20}}
---
kind: Target
metadata: {name: flags-staging, app: flags, environment: staging}
spec:
  source: {adapter: file, path: staging.json}
  desired: {new_ui: true, checkout_v2: true, beta: "off", limits: {rps: 100, burst: 20}}
---
kind: Target
metadata: {name: flags-prod, app: flags, environment: prod}
spec:
  source: {adapter: file, path: prod.json}
  desired: {new_ui: false, beta: "off", limits: {rps: 100, burst: 30}}
---
kind: Policy
metadata: {name: flag-gate}
spec:
  expected_differences:
    - {apps: [flags], paths: [/beta], reason: "beta is tried in dev first", owner: flags-team, expires: 2099-12-31}
    - {apps: [flags], paths: [/new_ui], reason: "INC-7: new UI off in prod", owner: web, expires: 2020-06-30}
    - {apps: [flags], paths: [/old_flag], reason: "old flag kept off", owner: web, expires: 2099-01-01}
"""


@pytest.fixture
def flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "flags.yaml").write_text(FLAGS)
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(desired))
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", f'["{desired}"]')
    return desired


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(("fmt", "suffix"), [("table", "txt"), ("json", "json"), ("markdown", "md")])
def test_compare_baseline_golden(flags: Path, fmt: str, suffix: str) -> None:
    """compare --baseline prints the per-pair verdicts, one row per drifted key with the baseline's value and
    each differing environment, and the expired and stale allowlist entries, exactly as recorded."""
    result = cli("compare", "--desired", "--baseline", "dev", "--format", fmt)
    assert result.exit_code == 2, result.output
    golden.check(f"compare_baseline.{suffix}", result.stdout)


def test_compare_baseline_gate_names_exactly_the_unexpected_keys(flags: Path) -> None:
    """The JSON names each drifted key once across environments; unexpected ones are the missing flag, the
    changed limit and the difference whose allowance expired; the expired and the stale entry are reported."""
    data = json.loads(cli("compare", "--desired", "--baseline", "dev", "-f", "json").stdout)
    unexpected = {k["path"]: sorted(e for e, c in k["environments"].items() if not c["expected"]) for k in data["keys"]}
    assert {k: v for k, v in unexpected.items() if v} == {
        "/new_ui": ["prod"],
        "/checkout_v2": ["prod"],
        "/limits/burst": ["prod"],
    }
    assert [(a["id"], a["state"]) for a in data["allowlist"]] == [
        ("flag-gate/expected/1", "expired"),
        ("flag-gate/expected/2", "stale"),
    ]
    prod = next(p for p in data["pairs"] if p["b"]["environment"] == "prod")
    assert (prod["differing_leaves"], prod["expected_leaves"], prod["total_leaves"]) == (3, 1, 5)
    assert prod["drift_percent"] == 60.0 and prod["drift_fraction"] == "3/5"


def test_fail_on_significant_and_exact_threshold(flags: Path) -> None:
    """--fail-on significant exits 2 only when some pair has unexpected drift above the threshold: prod's
    drift is exactly 60%, so a 60% threshold passes and 59.9% fails; the default fails on any unexpected key."""
    assert (
        cli("compare", "--desired", "--baseline", "dev", "--fail-on", "significant", "--threshold", "0.6").exit_code
        == 0
    )
    assert cli("compare", "--desired", "-b", "dev", "--fail-on", "significant", "--threshold", "59.9%").exit_code == 2
    assert cli("compare", "--desired", "-b", "dev", "--threshold", "0.6").exit_code == 2
    only_staging = cli("compare", "--desired", "-b", "dev", "--env", "staging", "-f", "json")
    assert only_staging.exit_code == 0 and json.loads(only_staging.stdout)["failed"] is False


def exit_code(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """The exit code of the `reconciler` entry point itself, which turns usage errors into 1."""
    monkeypatch.setattr(sys, "argv", ["reconciler", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


def test_unknown_environment_threshold_or_fail_on_is_an_error(flags: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An --env or --baseline that no target has, nothing to compare with the baseline, a threshold outside 0..1
    and an unknown --fail-on exit 1."""
    for args in (
        ("--env", "prd"),
        ("--baseline", "qa"),
        ("--baseline", "dev", "--env", "dev"),
        ("--threshold", "1.5"),
        ("--fail-on", "sometimes"),
    ):
        assert exit_code(monkeypatch, "compare", "--desired", *args) == 1, args
    assert "no target of an app is in environment 'prd'" in cli("compare", "--desired", "--env", "prd").output


def test_exceptions_list_shows_expected_differences(flags: Path) -> None:
    """exceptions list holds the allowlist too, with dates as written; --expiring exits 2 for the expired one."""
    listing = cli("exceptions", "list", "--expiring", "-f", "json")
    assert listing.exit_code == 2
    (expired,) = json.loads(listing.stdout)
    assert (expired["id"], expired["kind"], expired["state"], expired["expires"]) == (
        "flag-gate/expected/1",
        "expected_difference",
        "expired",
        "2020-06-30",
    )
    assert expired["ends_at"] == "2020-07-01T00:00:00+00:00"
    table = cli("exceptions", "list").stdout
    assert "flag-gate/expected/0  expected  active" in table and "2099-12-31" in table and "2100-01-01" not in table


def test_validate_warns_about_expired_and_stale_allowlist_entries(flags: Path) -> None:
    """validate passes (exit 0) and warns about the expired entry, the stale one, and an entry about no pair."""
    text = FLAGS + "    - {apps: [nothing-*], paths: [/x], reason: gone app, owner: web, expires: 2099-01-01}\n"
    (flags / "flags.yaml").write_text(text)
    result = cli("validate", str(flags))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: expected difference flag-gate/expected/1 expired 2020-06-30: INC-7: new UI off in prod",
        "warning: expected difference flag-gate/expected/2 allows a difference that is not there: no compared pair "
        "differs at /old_flag; remove it (old flag kept off)",
        "warning: expected difference flag-gate/expected/3 is about no pair of targets (apps nothing-*)",
    ]
