"""The operator interface, driven as a user would: commands, output formats and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.settings import Settings
from reconciler.store import migrate

runner = CliRunner()


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    assert cli("db", "upgrade").exit_code == 0
    return settings


def live(example: Path, rel: str) -> Any:
    text = (example / "live" / rel).read_text()
    return yaml.safe_load(text) if rel.endswith(".yaml") else text


def test_validate(example: Path, settings: Settings) -> None:
    """validate says ok with counts and version, or lists every problem with file, document and field (with
    the settings a pass would use: live files are checked against the roots)."""
    ok = cli("validate", str(example / "desired"))
    assert ok.exit_code == 0 and "ok: 3 targets, 1 policies" in ok.output
    (example / "desired" / "broken.yaml").write_text("kind: Target\nmetadata: {name: x}\nspec: {desired: {}}\n")
    bad = cli("validate", str(example / "desired"))
    assert bad.exit_code == 1
    assert "broken.yaml: document 1 (x): spec.source: required field is missing" in bad.output


def test_commands_refuse_an_unmigrated_database(settings: Settings) -> None:
    """plan on an empty database says to run `reconciler db upgrade`, and exits 1."""
    result = cli("plan")
    assert result.exit_code == 1 and "Run `reconciler db upgrade`" in result.output


def test_db_upgrade_is_idempotent(settings: Settings) -> None:
    """db upgrade migrates once, then says the database is already current."""
    assert f"upgraded from empty to {migrate.head()}" in cli("db", "upgrade").output
    assert f"already at revision {migrate.head()}" in cli("db", "upgrade").output
    assert cli("db", "current").exit_code == 0


def test_plan_exit_codes_and_formats(migrated: Settings, example: Path) -> None:
    """plan exits 2 on drift and 0 when clean, in table, JSON and Markdown, and changes nothing."""
    before = {p: p.read_bytes() for p in (example / "live").rglob("*") if p.is_file()}
    table = cli("plan")
    assert table.exit_code == 2
    assert "/log_level" in table.output and "would fix (dry run)" in table.output and "escalated" in table.output
    data = json.loads(cli("plan", "--format", "json").stdout)
    by_target = {t["target"]: t for t in data["targets"]}
    assert data["exit_code"] == 2 and by_target["payments-api-staging"]["status"] == "clean"
    prod = {d["path"]: (d["class"], d["action"]) for d in by_target["payments-api-prod"]["drift"]}
    assert prod == {
        "/database/pool_size": ("escalate", "escalated"),
        "/database/timeout": ("acceptable", "accepted"),
        "/log_level": ("reversible", "dry_run"),
        "/debug_endpoints": ("reversible", "dry_run"),
    }
    markdown = cli("plan", "--format", "markdown")
    assert "| Path | Op | Class |" in markdown.output
    clean = cli("plan", "--target", "payments-api-staging")
    assert clean.exit_code == 0 and "no drift" in clean.output
    assert {p: p.read_bytes() for p in (example / "live").rglob("*") if p.is_file()} == before
    assert cli("plan", "--target", "nope").exit_code == 1


def test_apply_is_idempotent_and_rollback_restores(migrated: Settings, example: Path) -> None:
    """apply fixes reversible drift only; a second apply writes nothing and says so; rollback puts it back."""
    original_prod, original_env = live(example, "payments-api/prod/config.yaml"), live(example, "checkout/staging.env")
    first = json.loads(cli("apply", "--format", "json").stdout)
    assert first["exit_code"] == 2  # the escalated pool size remains
    prod = live(example, "payments-api/prod/config.yaml")
    assert prod["log_level"] == "INFO" and "debug_endpoints" not in prod
    assert prod["database"] == {"host": "db.prod.internal", "pool_size": 10, "timeout": 60}  # escalated, accepted
    assert "FEATURE_FAST_PAY=false" in live(example, "checkout/staging.env")

    second = cli("apply")
    assert second.exit_code == 2 and "nothing written" in second.output
    assert not any(t["actions"] for t in json.loads(cli("apply", "--format", "json").stdout)["targets"])

    listing = cli("history")
    assert first["run_id"] in listing.output and "rolled_back" not in listing.output
    detail = cli("history", first["run_id"])
    assert "/log_level" in detail.output and "verified" in detail.output

    undo = cli("rollback", first["run_id"], "--dry-run")
    assert undo.exit_code == 0 and live(example, "payments-api/prod/config.yaml") == prod
    undo = cli("rollback", first["run_id"], "--format", "json")
    assert undo.exit_code == 0
    assert live(example, "payments-api/prod/config.yaml") == original_prod
    assert live(example, "checkout/staging.env") == original_env
    runs = len(json.loads(cli("history", "--format", "json").stdout))
    again = cli("rollback", first["run_id"])
    undone_by = json.loads(undo.stdout)["run_id"]
    assert again.exit_code == 1 and f"already rolled back by run {undone_by}" in again.output
    assert len(json.loads(cli("history", "--format", "json").stdout)) == runs  # no empty run recorded
    assert cli("rollback", "no-such-run").exit_code == 1


def test_one_broken_target_does_not_stop_the_others(migrated: Settings, example: Path) -> None:
    """A live file that does not parse fails its own target with a clear error; the others are planned."""
    (example / "live" / "checkout" / "staging.env").write_text("THIS IS NOT AN ENV FILE\n")
    result = json.loads(cli("plan", "--format", "json").stdout)
    by_target = {t["target"]: t for t in result["targets"]}
    assert result["exit_code"] == 1
    assert by_target["checkout-staging"]["status"] == "failed"
    assert "staging.env: does not parse as env: line 1: expected KEY=value" in by_target["checkout-staging"]["error"]
    assert by_target["payments-api-prod"]["status"] == "drift"


def test_bad_desired_state_applies_nothing(migrated: Settings, example: Path) -> None:
    """With an invalid manifest anywhere, apply refuses before touching any live file."""
    before = live(example, "payments-api/prod/config.yaml")
    (example / "desired" / "zz.yaml").write_text("kind: Nope\nmetadata: {name: z}\n")
    result = cli("apply")
    assert result.exit_code == 1 and "zz.yaml: document 1 (z): kind: unknown kind 'Nope'" in result.output
    assert live(example, "payments-api/prod/config.yaml") == before


def test_secrets_never_reach_output_or_history(migrated: Settings, example: Path) -> None:
    """A secret path is compared and fixed, but its values appear in no output and no table."""
    (example / "live" / "db.yaml").write_text("db: {user: app, password: old-pass-123}\n")
    (example / "desired" / "db.yaml").write_text(
        "kind: Target\nmetadata: {name: db-prod, environment: dev}\nspec:\n"
        "  source: {adapter: file, path: ../live/db.yaml}\n"
        "  desired: {db: {user: app, password: new-pass-456}}\n  secrets: ['/db/password']\n"
    )
    outputs = [cli("plan", "--target", "db-prod", "--format", f).output for f in ("table", "json", "markdown")]
    applied = cli("apply", "--target", "db-prod", "--format", "json")
    outputs.append(applied.output)
    assert yaml.safe_load((example / "live" / "db.yaml").read_text())["db"]["password"] == "new-pass-456"
    run_id = json.loads(applied.stdout)["run_id"]
    outputs += [cli("history", run_id).output, cli("history", run_id, "--format", "json").output]
    refused = cli("rollback", run_id)
    assert refused.exit_code == 1 and "secret values are not kept in history" in refused.output
    outputs.append(refused.output)
    engine = sa.create_engine(migrated.database_url)
    with engine.connect() as conn:
        for table in ("drifts", "actions", "passes", "runs"):
            outputs += [str(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    engine.dispose()
    text = "\n".join(outputs)
    assert "old-pass-123" not in text and "new-pass-456" not in text
    assert "<redacted hmac-sha256:" in text


def test_usage_errors_exit_1_not_2(settings: Settings) -> None:
    """A wrong flag exits 1, so that exit code 2 always means drift to a CI gate."""
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", "--format", "xml"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and "must be one of table, json, markdown" in result.stderr


def test_secret_references_are_resolved_and_never_shown(
    migrated: Settings, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A desired ${env:...} value is compared and applied, appears nowhere in output or history, and a
    change of the variable alone is noticed."""
    monkeypatch.setenv("DB_PASSWORD", "from-env-789")
    (example / "live" / "app.env").write_text("DB_PASSWORD=old-value-000\nLOG_LEVEL=INFO\n")
    (example / "desired" / "app.yaml").write_text(
        "kind: Target\nmetadata: {name: app, environment: dev}\nspec:\n"
        "  source: {adapter: file, path: ../live/app.env}\n"
        "  desired: {DB_PASSWORD: '${env:DB_PASSWORD}', LOG_LEVEL: info}\n"
        "  normalize: [{paths: [/LOG_LEVEL], as: lower}]\n"
    )
    plan = cli("plan", "--target", "app", "--format", "json")
    drift = json.loads(plan.stdout)["targets"][0]["drift"]
    assert [(d["path"], d["secret"]) for d in drift] == [("/DB_PASSWORD", True)]  # LOG_LEVEL equal once lowered
    applied = cli("apply", "--target", "app", "--format", "json")
    assert "DB_PASSWORD=from-env-789" in (example / "live" / "app.env").read_text()
    engine = sa.create_engine(migrated.database_url)
    with engine.connect() as conn:
        rows = " ".join(str(r) for t in ("drifts", "actions") for r in conn.execute(sa.text(f"SELECT * FROM {t}")))
    engine.dispose()
    text = plan.output + applied.output + rows
    assert "from-env-789" not in text and "old-value-000" not in text
    assert cli("plan", "--target", "app").exit_code == 0
    monkeypatch.setenv("DB_PASSWORD", "rotated-111")
    assert cli("plan", "--target", "app").exit_code == 2


def test_explain_and_exceptions_list(settings: Settings) -> None:
    """explain names the exception or rule behind a drift's class; exceptions list shows owner and expiry."""
    result = cli("explain", "payments-api-prod", "/database/timeout")
    assert result.exit_code == 0
    assert "class: acceptable, decided by exception default/0" in result.output
    assert "owner payments-oncall" in result.output and "ticket INC-4711" in result.output
    pool = cli("explain", "payments-api-prod", "/database/pool_size")
    assert "=> rule default/0: production database settings need a human" in pool.output
    assert "not there" not in cli("explain", "payments-api-prod", "/metadata/deployed_by").output
    assert "is ignored (ignore: /metadata/**)" in cli("explain", "payments-api-prod", "/metadata/deployed_by").output
    assert cli("explain", "nope", "/x").exit_code == 1
    assert cli("explain", "payments-api-prod", "no-slash").exit_code == 1
    listing = cli("exceptions", "list")
    assert listing.exit_code == 0 and "payments-oncall" in listing.output and "active" in listing.output


def test_compare_environments(settings: Settings, example: Path) -> None:
    """compare gates on unexpected differences: live staging and prod differ (exit 2), desired ones only as
    allowed (exit 0); Markdown gives a release-notes table; an unreadable target is an error (exit 1)."""
    live_result = cli("compare")
    assert live_result.exit_code == 2
    assert "/log_level" in live_result.output and "yes: RFC-112" in live_result.output
    desired_result = cli("compare", "--desired", "--format", "json")
    data = json.loads(desired_result.stdout)
    assert desired_result.exit_code == 0 and data["pairs"][0]["unexpected"] == 0
    assert [d["path"] for d in data["pairs"][0]["differences"]] == ["/features/new_checkout"]
    markdown = cli("compare", "--env", "staging", "--env", "prod", "--format", "markdown")
    assert "| Key | staging | prod | Kind | Expected |" in markdown.output
    (example / "live" / "payments-api" / "prod" / "config.yaml").unlink()
    broken = cli("compare")
    assert broken.exit_code == 1 and "file does not exist" in broken.output


def pending_approvals() -> list[dict[str, Any]]:
    return [a for a in json.loads(cli("approvals", "list", "--format", "json").stdout) if a["state"] == "pending"]


def test_escalations_wait_for_an_approval_of_that_exact_drift(migrated: Settings, example: Path) -> None:
    """An escalated drift raises one pending approval, not one per pass; once approved, apply fixes it through
    the same staged and verified path and the approval is used; a rejected one stays escalated."""
    prod = example / "live" / "payments-api" / "prod" / "config.yaml"
    cli("plan")
    cli("plan")
    (approval,) = pending_approvals()
    assert (approval["target"], approval["path"], approval["desired"], approval["observed"]) == (
        "payments-api-prod",
        "/database/pool_size",
        20,
        10,
    )
    assert "pending approval" in cli("plan").output
    decided = cli("approvals", "approve", approval["id"], "--actor", "alice", "-m", "pool restored after INC-4711")
    assert decided.exit_code == 0 and "approved: payments-api-prod /database/pool_size by alice" in decided.output
    again = cli("approvals", "approve", approval["id"])
    assert again.exit_code == 1 and "only pending approvals can be decided" in again.output
    applied = json.loads(cli("apply", "--format", "json").stdout)
    assert yaml.safe_load(prod.read_text())["database"]["pool_size"] == 20
    actions = [a for t in applied["targets"] for a in t["actions"] if a["path"] == "/database/pool_size"]
    assert [a["state"] for a in actions] == ["verified"]
    used = [
        a for a in json.loads(cli("approvals", "list", "--all", "--format", "json").stdout) if a["id"] == approval["id"]
    ]
    assert used[0]["state"] == "used" and used[0]["action"] == actions[0]["id"]
    journal = json.loads(cli("history", applied["run_id"], "--format", "json").stdout)
    assert any("approved by alice: pool restored after INC-4711" in (a.get("reason") or "") for a in journal["actions"])

    prod.write_text(prod.read_text().replace("pool_size: 20", "pool_size: 5"))
    cli("plan")
    (second,) = pending_approvals()
    assert cli("approvals", "reject", second["id"], "--actor", "bob").exit_code == 0
    cli("apply")
    assert yaml.safe_load(prod.read_text())["database"]["pool_size"] == 5
    assert pending_approvals() == []  # a rejected drift is not asked about again


def test_an_approval_binds_to_the_exact_drift_and_expires(
    migrated: Settings, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If live changes after the approval, the approval is superseded and nothing is applied; an approval
    not used in time expires and the drift is asked about again."""
    prod = example / "live" / "payments-api" / "prod" / "config.yaml"
    cli("plan")
    (first,) = pending_approvals()
    cli("approvals", "approve", first["id"])
    prod.write_text(prod.read_text().replace("pool_size: 10", "pool_size: 11"))
    cli("apply")
    assert yaml.safe_load(prod.read_text())["database"]["pool_size"] == 11
    states = {a["id"]: a["state"] for a in json.loads(cli("approvals", "list", "--all", "--format", "json").stdout)}
    assert states[first["id"]] == "superseded"
    (fresh,) = pending_approvals()
    assert fresh["observed"] == 11
    monkeypatch.setenv("RECONCILER_APPROVALS__TTL_S", "0.001")
    cli("approvals", "approve", fresh["id"])
    time.sleep(0.01)
    cli("apply")
    assert yaml.safe_load(prod.read_text())["database"]["pool_size"] == 11
    states = {a["id"]: a["state"] for a in json.loads(cli("approvals", "list", "--all", "--format", "json").stdout)}
    assert states[fresh["id"]] == "expired" and len(pending_approvals()) == 1
    assert cli("approvals", "approve", "no-such-id").exit_code == 1


def test_rollback_of_a_single_action(migrated: Settings, example: Path) -> None:
    """rollback takes one action's id: only that change is undone; an action that wrote nothing is refused."""
    applied = json.loads(cli("apply", "--format", "json").stdout)
    prod_actions = {
        a["path"]: a["id"] for t in applied["targets"] for a in t["actions"] if t["target"] == "payments-api-prod"
    }
    preview = cli("rollback", prod_actions["/log_level"], "--dry-run")
    assert preview.exit_code == 0 and "/log_level" in preview.output and "/debug_endpoints" not in preview.output
    assert cli("rollback", prod_actions["/log_level"]).exit_code == 0
    prod = yaml.safe_load((example / "live" / "payments-api" / "prod" / "config.yaml").read_text())
    assert prod["log_level"] == "DEBUG" and "debug_endpoints" not in prod
    again = cli("rollback", prod_actions["/log_level"])
    assert (
        again.exit_code == 1 and f"action {prod_actions['/log_level']} was already rolled back by run" in again.output
    )
    assert "no run or action with id" in cli("rollback", "nope").output


def test_breaker_commands(migrated: Settings, example: Path) -> None:
    """An operator can pause remediation by hand, see it, and reset it; apply runs dry-run meanwhile."""
    assert cli("breaker", "status").exit_code == 0
    opened = cli("breaker", "open", "--reason", "change freeze for the release", "--actor", "carol")
    assert opened.exit_code == 0 and "open until reset (by carol): change freeze for the release" in opened.output
    assert cli("breaker", "status").exit_code == 2
    held = cli("apply")
    assert "note: circuit breaker open: change freeze for the release" in held.output
    assert "FEATURE_FAST_PAY=true" in (example / "live" / "checkout" / "staging.env").read_text()
    assert cli("breaker", "reset").exit_code == 0 and cli("breaker", "status").exit_code == 0
    cli("apply")
    assert "FEATURE_FAST_PAY=false" in (example / "live" / "checkout" / "staging.env").read_text()


def test_adopt_writes_the_live_value_into_the_manifest(migrated: Settings, example: Path) -> None:
    """adopt makes an emergency change permanent: the manifest gets the live value with its comments kept,
    the drift is gone, and who and why are recorded; a changed live value or a secret is refused."""
    run_id = json.loads(cli("plan", "--format", "json").stdout)["run_id"]
    drifts = {
        (d["target"], d["path"]): d["id"]
        for d in json.loads(cli("history", run_id, "--format", "json").stdout)["drift"]
    }
    manifest = example / "desired" / "payments-api.yaml"
    before = manifest.read_text()
    adopted = cli(
        "adopt",
        str(drifts[("payments-api-prod", "/database/pool_size")]),
        "--reason",
        "INC-4711: 10 is right",
        "--actor",
        "dana",
    )
    assert adopted.exit_code == 0, adopted.output
    assert "adopted by dana: payments-api-prod /database/pool_size = 10" in adopted.output
    after = manifest.read_text()
    assert "# What every payments-api environment shares" in after and "# left out of `reconciler compare`" in after
    assert "pool_size: 10" in after and after.count("pool_size: 20") == before.count("pool_size: 20") - 1
    plan = json.loads(cli("plan", "--target", "payments-api-prod", "--format", "json").stdout)
    assert "/database/pool_size" not in [d["path"] for d in plan["targets"][0]["drift"]]
    # a live-only key adopted into desired
    assert cli("adopt", str(drifts[("payments-api-prod", "/debug_endpoints")]), "-m", "keep it").exit_code == 0
    assert "debug_endpoints: true" in manifest.read_text()
    # live changed since the drift was recorded: refused, nothing written
    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("log_level: DEBUG", "log_level: WARN"))
    text = manifest.read_text()
    refused = cli("adopt", str(drifts[("payments-api-prod", "/log_level")]), "-m", "x")
    assert refused.exit_code == 1 and "no longer holds what drift" in refused.output and manifest.read_text() == text
    assert cli("adopt", "999999", "-m", "x").exit_code == 1
    engine = sa.create_engine(migrated.database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT target, path, actor, reason FROM adoptions ORDER BY id")).all()
    engine.dispose()
    assert len(rows) == 2 and tuple(rows[0]) == (
        "payments-api-prod",
        "/database/pool_size",
        "dana",
        "INC-4711: 10 is right",
    )


def test_a_rollback_is_a_run_and_can_be_rolled_back(migrated: Settings, example: Path) -> None:
    """Rolling back a rollback puts the fix back: the rollback's own actions are journaled and reversible."""
    env_file = example / "live" / "checkout" / "staging.env"
    applied = json.loads(cli("apply", "--target", "checkout-staging", "--format", "json").stdout)
    undone = json.loads(cli("rollback", applied["run_id"], "--format", "json").stdout)
    assert "FEATURE_FAST_PAY=true" in env_file.read_text()
    assert undone["kind"] == "rollback" and undone["targets"][0]["actions"][0]["rollback_of"]
    redone = cli("rollback", undone["run_id"])
    assert redone.exit_code == 0 and "FEATURE_FAST_PAY=false" in env_file.read_text()


def test_breaker_changes_by_hand_are_notified(
    migrated: Settings, receiver: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening and resetting the breaker by hand reach the webhooks, naming who did it."""
    monkeypatch.setenv("RECONCILER_NOTIFY__WEBHOOKS", json.dumps([{"url": receiver["url"], "events": ["breaker"]}]))
    cli("breaker", "open", "--reason", "release freeze", "--actor", "erin")
    cli("breaker", "reset", "--actor", "erin")
    assert [b["summary"] for b in receiver["bodies"]] == [
        "remediation paused by erin: release freeze",
        "remediation resumed by erin",
    ]
