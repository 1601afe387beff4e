"""Automatic proposals: an escalation pending longer than RECONCILER_ADOPT__PROPOSE_AFTER gets one branch with
its adoption commit and one notification; live and the checked-out desired state are left alone."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.desired import loader
from reconciler.domain.approval import ApprovalState
from reconciler.errors import ConfigurationError
from reconciler.observe.notify import Notifier, Webhook
from reconciler.runtime.adoption import Proposer
from reconciler.settings import load_settings
from reconciler.store.approvals import SqlApprovalStore
from tests.e2e.test_adopt_git import BASE, checkout, cli, git

__all__ = ["checkout"]  # the fixture


def test_a_lasting_escalation_gets_one_proposal(
    checkout: Path, tmp_path: Path, receiver: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not before its time; then one branch pushed with one commit and one notification naming branch and
    pull request (no value); never again, from this process or another."""
    monkeypatch.setenv("RECONCILER_ADOPT__PROPOSE_AFTER", "24h")
    monkeypatch.setenv("RECONCILER_GIT__REMOTE", "origin")
    settings = load_settings()
    assert settings.adopt.propose_after == 86400.0
    live = (checkout / "live" / "prod.yaml").read_text()
    assert cli("plan").exit_code == 2
    engine = sa.create_engine(settings.database_url)
    approvals = SqlApprovalStore(engine)
    (pending,) = approvals.list([ApprovalState.PENDING])
    state = loader.load(checkout / "desired")
    notifier = Notifier([Webhook(receiver["url"])], initial_s=0.01)
    notifier.start()
    proposer = Proposer(settings, approvals, notifier, lambda: state)
    assert proposer.tick(pending.created_at + timedelta(hours=23)) == []
    (proposal,) = proposer.tick(pending.created_at + timedelta(hours=25))
    assert proposer.tick(pending.created_at + timedelta(hours=26)) == []
    assert Proposer(settings, approvals, notifier, lambda: state).tick(pending.created_at + timedelta(days=2)) == []
    deadline = time.monotonic() + 5
    while notifier.sent < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    notifier.stop()
    engine.dispose()

    bare = tmp_path / "remote.git"
    assert proposal.branch == f"adopt/proposal-payments-api-prod-{pending.id[:8]}"
    assert git(bare, "rev-list", "--count", f"main..{proposal.branch}").strip() == "1"
    diff = git(bare, "diff", "--unified=0", f"main..{proposal.branch}")
    assert "+  desired: {database: {host: db.prod, timeout: 60}}" in diff and diff.count("\n+") == 2  # +++ and it
    assert git(bare, "log", "-1", "--format=%an", proposal.branch).strip() == "reconciler"
    (body,) = receiver["bodies"]
    assert body["event"] == "adoption" and body["details"]["branch"] == proposal.branch
    assert body["details"]["pull_request"].endswith(f"compare/main...{proposal.branch}")
    assert set(body["details"]) == {"target", "path", "reason", "branch", "commit", "scope", "remote", "pull_request"}
    assert " 60" not in body["summary"] + body["details"]["reason"]  # never a value
    assert (checkout / "desired" / "base.yaml").read_text() == BASE and git(checkout, "status", "--porcelain") == ""
    assert (checkout / "live" / "prod.yaml").read_text() == live


def test_propose_after_must_be_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad RECONCILER_ADOPT__PROPOSE_AFTER stops the command, naming the variable."""
    monkeypatch.setenv("RECONCILER_ADOPT__PROPOSE_AFTER", "tomorrow")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "RECONCILER_ADOPT__PROPOSE_AFTER" in str(caught.value)
