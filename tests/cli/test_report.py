"""`reconciler report`: what runs where, by app and environment, from live state, the desired state and history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.settings import Settings
from tests.test_cli import cli

LAYERED = """
kind: Target
metadata: {name: payments-effective, environment: prod, app: payments-effective}
spec:
  source:
    adapter: layered
    authoritative: base
    layers:
      - {name: base, adapter: file, path: ../live/layers/base.env}
      - {name: override, adapter: file, path: ../live/layers/override.env}
  desired: {POOL_SIZE: "20", LOG_LEVEL: INFO, DB_PASSWORD: hunter2}
  secrets: ["/DB_PASSWORD"]
"""


@pytest.fixture
def migrated(settings: Settings, example: Path) -> Settings:
    (example / "live" / "layers").mkdir()
    (example / "live" / "layers" / "base.env").write_text("POOL_SIZE=20\nLOG_LEVEL=INFO\nDB_PASSWORD=hunter2\n")
    (example / "live" / "layers" / "override.env").write_text("POOL_SIZE=10\nDB_PASSWORD=letmein\n")
    (example / "desired" / "layered.yaml").write_text(LAYERED)
    assert cli("db", "upgrade").exit_code == 0
    return settings


def keys(report: dict[str, Any], target: str) -> dict[str, dict[str, Any]]:
    (found,) = [t for t in report["targets"] if t["target"] == target]
    return {k["path"]: k for k in found["keys"]}


def test_the_report_says_what_runs_where(migrated: Settings) -> None:
    """Per target: every key's effective value, the layer that won, whether it matches, the drift's class and
    since when, the exceptions in force with owner and expiry, the last passes and the desired version; secrets
    only as keyed hashes; --env and --app choose."""
    cli("plan")
    report = json.loads(cli("report", "--format", "json").stdout)
    assert report["desired_version"] and {t["target"] for t in report["targets"]} == {
        "payments-api-prod", "payments-api-staging", "checkout-staging", "payments-effective",
    }  # fmt: skip
    prod = keys(report, "payments-api-prod")
    assert prod["/database/host"]["matches"] is True and prod["/database/host"]["live"] == "db.prod.internal"
    assert prod["/database/pool_size"] | {"drift_age_s": 0} == prod["/database/pool_size"] | {
        "live": 10, "desired": 20, "matches": False, "class": "escalate", "drift_age_s": 0,
    }  # fmt: skip
    assert prod["/database/pool_size"]["drifting_since"] is not None
    (target,) = [t for t in report["targets"] if t["target"] == "payments-api-prod"]
    assert target["exceptions"][0]["owner"] == "payments-oncall" and target["exceptions"][0]["expires"]
    assert target["last_pass_at"] and target["last_clean_at"] is None and target["last_desired_version"]
    layered = keys(report, "payments-effective")
    assert layered["/POOL_SIZE"]["layer"] == "override" and layered["/POOL_SIZE"]["matches"] is False
    assert layered["/LOG_LEVEL"]["layer"] == "base" and layered["/LOG_LEVEL"]["matches"] is True
    password = layered["/DB_PASSWORD"]
    assert password["secret"] and password["live"].startswith("hmac-sha256:") and not password["matches"]
    markdown = cli("report", "--env", "prod", "--app", "payments-*").stdout
    assert "hunter2" not in markdown and "letmein" not in markdown and "hunter2" not in json.dumps(report)
    assert "## payments-api" in markdown and "### prod: payments-api-prod" in markdown
    assert "staging" not in markdown and '| `/POOL_SIZE` | "10" | override |' in markdown
    assert "owner payments-oncall, expires" in markdown


def test_an_unreadable_target_is_listed_with_its_error_and_exit_1(migrated: Settings, example: Path) -> None:
    """A target whose live state cannot be read is still in the report, with the error; the exit code is 1.
    A bad format is refused."""
    (example / "live" / "checkout" / "staging.env").unlink()
    result = cli("report", "--app", "checkout", "--format", "json")
    assert result.exit_code == 1
    (target,) = json.loads(result.stdout)["targets"]
    assert target["error"] and target["keys"] == []
    assert cli("report", "--format", "table").exit_code != 0
