"""An emergency change goes back to git and to every environment: escalated drift → `adopt --commit --push
--scope app` → a branch with one commit in the bare repository → merged → the drift is gone everywhere."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from reconciler.cli import app

runner = CliRunner()
GIT_ENV = {
    "GIT_AUTHOR_NAME": "setup",
    "GIT_AUTHOR_EMAIL": "setup@example.com",
    "GIT_COMMITTER_NAME": "setup",
    "GIT_COMMITTER_EMAIL": "setup@example.com",
}

BASE = """\
# What every payments-api environment shares
kind: Base
metadata: {name: payments-api}
spec:
  desired:
    log_level: INFO
    database:
      timeout: 30   # seconds; raised in incidents
      pool_size: 20
"""
TARGET = """\
kind: Target
metadata: {{name: payments-api-{env}, app: payments-api, environment: {env}}}
spec:
  source: {{adapter: file, path: ../live/{env}.yaml}}
  extends: payments-api
  desired: {{database: {{host: db.{env}}}}}
"""
TARGETS = "---\n".join(TARGET.format(env=env) for env in ("prod", "staging"))
POLICY = """\
kind: Policy
metadata: {name: default}
spec:
  default: reversible
  rules:
    - match: {environment: prod, paths: ["/database/**"]}
      class: escalate
      reason: production database settings need a human
"""


def git(repo: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), **GIT_ENV}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone of a bare repository holding the desired state; live files beside it; a migrated store."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(bare), str(repo)], check=True, capture_output=True)
    (repo / "desired").mkdir()
    (repo / "desired" / "base.yaml").write_text(BASE)
    (repo / "desired" / "targets.yaml").write_text(TARGETS)
    (repo / "desired" / "policy.yaml").write_text(POLICY)
    (repo / ".gitignore").write_text("live/\n")
    git(repo, "checkout", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "desired state")
    git(repo, "push", "-q", "origin", "main")
    (repo / "live").mkdir()
    live = "log_level: INFO\ndatabase:\n  host: db.{env}\n  timeout: {timeout}\n  pool_size: 20\n"
    (repo / "live" / "prod.yaml").write_text(live.format(env="prod", timeout=60))  # the emergency change
    (repo / "live" / "staging.yaml").write_text(live.format(env="staging", timeout=30))
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(repo / "desired"))
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", json.dumps([str(repo / "live")]))
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'history.db'}")
    monkeypatch.setenv("RECONCILER_GIT__PULL_REQUEST_URL", "https://git.example/org/desired/compare/main...{branch}")
    assert cli("db", "upgrade").exit_code == 0
    return repo


def drift_of(plan: dict[str, Any]) -> dict[str, set[str]]:
    return {t["target"]: {d["path"] for d in t["drift"]} for t in plan["targets"]}


def test_an_emergency_change_reaches_git_and_every_environment(checkout: Path, tmp_path: Path) -> None:
    """The adoption is one commit on a pushed branch touching only the value, the working tree is left alone,
    and once the branch is merged the drift is gone in every environment of the app."""
    plan = json.loads(cli("plan", "--format", "json").stdout)
    assert drift_of(plan) == {"payments-api-prod": {"/database/timeout"}, "payments-api-staging": set()}
    prod = next(t for t in plan["targets"] if t["target"] == "payments-api-prod")
    assert [d["class"] for d in prod["drift"]] == ["escalate"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    with engine.connect() as conn:
        drift_id = conn.execute(sa.text("SELECT max(id) FROM drifts WHERE path = '/database/timeout'")).scalar()
    engine.dispose()

    args = ("adopt", str(drift_id), "--reason", "INC-4711: 60 s holds under load", "--commit", "--push", "origin")
    adopted = cli(*args, "--scope", "app", "--actor", "Dana Ops <dana@example.com>")
    assert adopted.exit_code == 0, adopted.output
    branch = f"adopt/payments-api-prod-database-timeout-{drift_id}"
    assert f"committed on branch {branch}" in adopted.output
    assert f"https://git.example/org/desired/compare/main...{branch}" in adopted.output
    assert git(checkout, "status", "--porcelain") == "" and (checkout / "desired" / "base.yaml").read_text() == BASE

    bare = tmp_path / "remote.git"
    assert git(bare, "rev-list", "--count", f"main..{branch}").strip() == "1"
    diff = git(bare, "diff", "--unified=0", f"main..{branch}")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        "-      timeout: 30   # seconds; raised in incidents",
        "+      timeout: 60   # seconds; raised in incidents",
    ]
    assert git(bare, "diff", "--name-only", f"main..{branch}").split() == ["desired/base.yaml"]
    author, message = git(bare, "log", "-1", "--format=%an <%ae>%n%B", branch).split("\n", 1)
    assert author == "Dana Ops <dana@example.com>"
    for line in (
        "Reason: INC-4711: 60 s holds under load",
        "Target: payments-api-prod",
        "Path: /database/timeout",
        f"Drift: {drift_id}",
        "Old value: 30",
        "New value: 60",
    ):
        assert line in message

    git(checkout, "fetch", "-q", "origin")
    git(checkout, "merge", "-q", "--ff-only", f"origin/{branch}")  # the review, merged
    after = json.loads(cli("plan", "--format", "json").stdout)
    assert drift_of(after) == {"payments-api-prod": set(), "payments-api-staging": {"/database/timeout"}}
    assert cli("apply", "--target", "payments-api-staging").exit_code == 0  # staging gets the fix
    final = json.loads(cli("plan", "--format", "json").stdout)
    assert drift_of(final) == {"payments-api-prod": set(), "payments-api-staging": set()}
    assert "timeout: 60" in (checkout / "live" / "staging.yaml").read_text()


def test_commit_refusals_change_nothing(checkout: Path, tmp_path: Path) -> None:
    """A branch that exists, a dirty manifest, --push without --commit and an unknown scope are refused, exit 1,
    and leave the repository as it was."""
    cli("plan")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    with engine.connect() as conn:
        drift_id = str(conn.execute(sa.text("SELECT max(id) FROM drifts")).scalar())
    engine.dispose()
    git(checkout, "branch", "taken")
    refused = cli("adopt", drift_id, "-m", "x", "--commit", "--branch", "taken")
    assert refused.exit_code == 1 and "branch taken exists already" in refused.output
    assert cli("adopt", drift_id, "-m", "x", "--push", "origin").exit_code == 1
    assert "--scope must be" in cli("adopt", drift_id, "-m", "x", "--scope", "everywhere").output
    (checkout / "desired" / "base.yaml").write_text(BASE + "# local edit\n")
    dirty = cli("adopt", drift_id, "-m", "x", "--commit", "--scope", "app")
    assert dirty.exit_code == 1 and "uncommitted changes" in dirty.output
    assert git(checkout, "branch", "--format=%(refname:short)").split() == ["main", "taken"]
    assert git(tmp_path / "remote.git", "branch", "--format=%(refname:short)").split() == ["main"]
