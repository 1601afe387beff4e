"""The public fakes run real passes: an engine over FakeAdapter and MemoryHistory fixes, journals and
conflicts as it would against a live system and a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import loader
from reconciler.domain.clock import SystemClock
from reconciler.domain.plan import ActionState
from reconciler.domain.run import Mode, RunStatus
from reconciler.engine.assembly import assemble
from reconciler.engine.guard import Guard
from reconciler.errors import ConflictError
from reconciler.observe.metrics import Metrics
from reconciler.ports import Change
from reconciler.testing import FakeAdapter, MemoryHistory

MANIFEST = """
kind: Target
metadata: {name: payments, environment: dev}
spec:
  source: {adapter: fake}
  desired: {log_level: INFO, pool: 10}
---
kind: Policy
metadata: {name: p}
spec: {default: reversible}
"""


def test_an_engine_over_the_fakes_fixes_and_journals(tmp_path: Path) -> None:
    """Apply writes the fake's document, the journal records verified actions, a second pass finds nothing."""
    (tmp_path / "desired.yaml").write_text(MANIFEST)
    state = loader.load(tmp_path)
    adapter = FakeAdapter({"payments": {"log_level": "DEBUG", "pool": 10}})
    history = MemoryHistory()
    guard = Guard(Mode.APPLY, ["*"])
    engine = assemble(
        lambda: state, history, lambda name: adapter, Metrics(), SystemClock(), hmac_key=b"k", guard=guard
    )
    first = engine.reconcile()
    assert first.status is RunStatus.FIXED and adapter.documents["payments"] == {"log_level": "INFO", "pool": 10}
    assert [a.state for a in history.actions(first.run_id)] == [ActionState.VERIFIED]
    record = history.run(first.run_id)
    assert record is not None and record.status is RunStatus.FIXED and record.targets == 1
    assert engine.reconcile().status is RunStatus.CLEAN and adapter.writes == {"payments": 1}
    adapter.fail_reads.add("payments")
    failed = engine.reconcile().targets[0]
    assert failed.status is RunStatus.FAILED and failed.retry and "cannot be read" in (failed.error or "")


def test_the_fake_adapter_is_a_compare_and_swap(tmp_path: Path) -> None:
    """A commit staged against content another writer has changed since is refused."""
    (tmp_path / "desired.yaml").write_text(MANIFEST)
    target = loader.load(tmp_path).targets["payments"]
    adapter = FakeAdapter({"payments": {"log_level": "DEBUG"}})
    staged = adapter.stage(target, [Change(("log_level",), "DEBUG", "INFO")], dry_run=False)
    adapter.documents["payments"]["log_level"] = "WARN"
    with pytest.raises(ConflictError):
        adapter.commit(staged)
    assert adapter.documents["payments"] == {"log_level": "WARN"} and adapter.writes == {}
