from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from reconciler.adapters.file import FileAdapter
from reconciler.desired.loader import load
from reconciler.domain.manifest import DesiredVersion, DriftOp, Target
from reconciler.domain.observed import Observed
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind
from reconciler.remediate.executor import execute
from reconciler.remediate.rollback import plan_rollback, rollback
from reconciler.settings import FileSettings
from reconciler.store.history import SqlHistoryStore


def setup(tmp_path: Path, text: str) -> Target:
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "c.yaml").write_text(text)
    (tmp_path / "desired").mkdir()
    (tmp_path / "desired" / "t.yaml").write_text(
        "kind: Target\nmetadata: {name: t}\nspec:\n  source: {adapter: file, path: ../live/c.yaml}\n  desired: {}\n"
    )
    return load(tmp_path / "desired").targets["t"]


def action(run_id: str, path: str, before: Any, after: Any) -> Action:
    return Action(str(uuid.uuid4()), run_id, "t", (path,), DriftOp.CHANGE, before, after, "v" * 64, "test")


class Clamping(FileAdapter):
    """A live system that accepts a write but holds another value afterwards, once (say, it clamps it)."""

    def __init__(self, settings: FileSettings) -> None:
        super().__init__(settings)
        self.committed = False
        self.clamped = False

    def commit(self, staged: Any) -> None:
        super().commit(staged)
        self.committed = True

    def discover(self, target: Target) -> Observed:
        observed = super().discover(target)
        if self.committed and not self.clamped:
            self.clamped = True
            return Observed(observed.fingerprint, observed.location, document={**observed.document, "a": 99})
        return observed


class Fighter(FileAdapter):
    """Another writer that changes the file right after each of our commits."""

    def commit(self, staged: Any) -> None:
        super().commit(staged)
        staged.handle.path.write_text("a: 42\nb: 2\n")


def states(store: SqlHistoryStore, run_id: str) -> dict[str, str]:
    return {f"{a.pointer}{'<-' if a.rollback_of else ''}": a.state.value for a in store.actions(run_id)}


def test_apply_journals_every_state_and_verifies(tmp_path: Path, store: SqlHistoryStore) -> None:
    """Actions are journaled, written in one staged commit, verified by re-reading; a second run is a no-op."""
    target = setup(tmp_path, "a: 1\nb: 2\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    run_id = _run(store)
    result = execute(target, [action(run_id, "a", 1, 10), action(run_id, "b", 2, 20)], adapter, store, dry_run=False)
    assert [a.state for a in result.actions] == [ActionState.VERIFIED, ActionState.VERIFIED]
    assert states(store, run_id) == {"/a": "verified", "/b": "verified"}
    assert adapter.discover(target).document == {"a": 10, "b": 20}
    again = _run(store)
    result = execute(target, [action(again, "a", 1, 10)], adapter, store, dry_run=False)
    assert result.actions[0].state is ActionState.NOOP and result.error is None


def test_dry_run_journals_and_changes_nothing(tmp_path: Path, store: SqlHistoryStore) -> None:
    """Dry-run goes down to the adapter's stage and records what would be written, writing nothing."""
    target = setup(tmp_path, "a: 1\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    run_id = _run(store)
    execute(target, [action(run_id, "a", 1, 10)], adapter, store, dry_run=True)
    assert states(store, run_id) == {"/a": "dry_run"}
    assert (tmp_path / "live" / "c.yaml").read_text() == "a: 1\n"


def test_conflict_writes_nothing_for_that_action(tmp_path: Path, store: SqlHistoryStore) -> None:
    """When live holds neither before nor after, that action is a conflict; the others still apply."""
    target = setup(tmp_path, "a: 5\nb: 2\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    run_id = _run(store)
    execute(target, [action(run_id, "a", 1, 10), action(run_id, "b", 2, 20)], adapter, store, dry_run=False)
    assert states(store, run_id) == {"/a": "conflict", "/b": "verified"}
    assert adapter.discover(target).document == {"a": 5, "b": 20}


def test_failed_verify_rolls_the_target_back(tmp_path: Path, store: SqlHistoryStore) -> None:
    """When live does not hold what was written, every write of the target is undone and journaled."""
    target = setup(tmp_path, "a: 1\nb: 2\n")
    adapter = Clamping(FileSettings(roots=[tmp_path / "live"]))
    run_id = _run(store)
    result = execute(target, [action(run_id, "a", 1, 10), action(run_id, "b", 2, 20)], adapter, store, dry_run=False)
    assert result.rolled_back and result.error and "verify" in result.error
    assert states(store, run_id) == {"/a": "rolled_back", "/b": "rolled_back", "/b<-": "verified", "/a<-": "verified"}
    assert (tmp_path / "live" / "c.yaml").read_text() == "a: 1\nb: 2\n"


def test_rollback_refuses_where_another_writer_changed_live(tmp_path: Path, store: SqlHistoryStore) -> None:
    """A rollback only puts back values where live still holds what the run wrote."""
    target = setup(tmp_path, "a: 1\nb: 2\n")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    run_id = _run(store)
    execute(target, [action(run_id, "a", 1, 10), action(run_id, "b", 2, 20)], adapter, store, dry_run=False)
    (tmp_path / "live" / "c.yaml").write_text("a: 42\nb: 20\n")  # someone changed /a since
    undo_run = _run(store)
    plan = plan_rollback(store.actions(run_id), run_id=undo_run, of_run=run_id, known_targets={"t": target})
    result = rollback(target, plan.by_target["t"], adapter, store, dry_run=False)
    assert {a.pointer: a.state.value for a in result.actions} == {"/b": "verified", "/a": "conflict"}
    assert adapter.discover(target).document == {"a": 42, "b": 2}
    assert states(store, run_id) == {"/a": "verified", "/b": "rolled_back"}


def test_a_writer_that_fights_back_fails_the_pass(tmp_path: Path, store: SqlHistoryStore) -> None:
    """If another writer overwrites our change at once, verify fails and the rollback is refused, both recorded."""
    target = setup(tmp_path, "a: 1\nb: 2\n")
    adapter = Fighter(FileSettings(roots=[tmp_path / "live"]))
    run_id = _run(store)
    result = execute(target, [action(run_id, "a", 1, 10)], adapter, store, dry_run=False)
    assert result.error and "automatic rollback incomplete" in result.error
    assert states(store, run_id) == {"/a": "failed", "/a<-": "conflict"}
    assert (tmp_path / "live" / "c.yaml").read_text() == "a: 42\nb: 2\n"


def _run(store: SqlHistoryStore) -> str:
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    return store.start_run(RunKind.APPLY, "test", "v" * 64)


class Racer(FileAdapter):
    """Another writer that writes `content` between our stage and our commit."""

    def __init__(self, settings: FileSettings, content: str) -> None:
        super().__init__(settings)
        self.content = content

    def commit(self, staged: Any) -> None:
        staged.handle.path.write_text(self.content)
        super().commit(staged)


def test_a_race_lost_to_a_writer_of_the_same_value_is_a_noop(tmp_path: Path, store: SqlHistoryStore) -> None:
    """When another writer commits first, an action whose path it set to the same new value is a noop (nothing
    drifts); one whose path it set to something else is a conflict; nothing of ours is written."""
    target = setup(tmp_path, "a: 1\nb: 2\n")
    adapter = Racer(FileSettings(roots=[tmp_path / "live"]), "a: 10\nb: 7\n")
    run_id = _run(store)
    execute(target, [action(run_id, "a", 1, 10), action(run_id, "b", 2, 20)], adapter, store, dry_run=False)
    assert states(store, run_id) == {"/a": "noop", "/b": "conflict"}
    assert adapter.discover(target).document == {"a": 10, "b": 7}
