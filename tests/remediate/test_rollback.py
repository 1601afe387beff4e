"""The rollback planner: which written actions are reversed, which refused (and why), which were undone before."""

from __future__ import annotations

from pathlib import Path

from reconciler.domain.plan import ActionState
from reconciler.domain.values import Redacted
from reconciler.ports import Capabilities
from reconciler.remediate.rollback import plan_rollback
from tests.remediate.test_executor import action, setup

WITH_HISTORY = Capabilities(write=True, secret_history=True)


def test_a_secret_change_is_reversed_only_where_the_adapter_keeps_a_history(tmp_path: Path) -> None:
    """Journaled as keyed hashes, a secret's change is refused (naming the adapter) unless its adapter declares
    secret_history; then its reverse carries the hashes: from what the run wrote back to what it replaced."""
    target = setup(tmp_path, "a: 1\n")
    wrote = action("r1", "pw", Redacted("hmac-sha256:old"), Redacted("hmac-sha256:new"))._replace(secret=True)
    originals = [wrote.with_state(ActionState.VERIFIED)]
    refused = plan_rollback(originals, run_id="r2", of_run="r1", known_targets={"t": target})
    assert not refused.by_target and len(refused.refused) == 1
    assert "the file adapter's live system keeps no earlier values" in refused.refused[0].reason
    planned = plan_rollback(
        originals, run_id="r2", of_run="r1", known_targets={"t": target}, capabilities=lambda _: WITH_HISTORY
    )
    [reverse] = planned.by_target["t"]
    assert (reverse.before, reverse.after, reverse.rollback_of, reverse.secret) == (
        Redacted("hmac-sha256:new"),
        Redacted("hmac-sha256:old"),
        wrote.id,
        True,
    )


def test_writes_rolled_back_before_are_counted_not_planned(tmp_path: Path) -> None:
    """A rolled-back action is listed as undone already; a noop one is neither planned nor listed."""
    target = setup(tmp_path, "a: 1\n")
    undone = action("r1", "a", 1, 2).with_state(ActionState.ROLLED_BACK)
    noop = action("r1", "b", 1, 2).with_state(ActionState.NOOP)
    plan = plan_rollback([undone, noop], run_id="r2", of_run="r1", known_targets={"t": target})
    assert plan.undone == [undone] and not plan.by_target and not plan.refused
