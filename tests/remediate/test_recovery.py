from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.file import FileAdapter
from reconciler.desired.loader import load
from reconciler.domain.clock import SystemClock
from reconciler.domain.manifest import DesiredVersion, DriftOp
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.domain.state import DesiredState
from reconciler.engine import process
from reconciler.engine.assembly import assemble
from reconciler.engine.guard import Guard
from reconciler.observe.metrics import Metrics
from reconciler.runtime import undo
from reconciler.runtime.retry import RetryingAdapter
from reconciler.settings import FileSettings
from reconciler.store.history import SqlHistoryStore
from tests.conftest import HMAC_KEY


def setup(tmp_path: Path, live: str) -> tuple[DesiredState, FileAdapter]:
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "c.yaml").write_text(live)
    (tmp_path / "desired").mkdir()
    (tmp_path / "desired" / "t.yaml").write_text(
        "kind: Target\nmetadata: {name: t}\nspec:\n  source: {adapter: file, path: ../live/c.yaml}\n"
        "  desired: {a: 2, b: 2, c: 2, pw: new}\n  secrets: [/pw]\n"
    )
    state = load(tmp_path / "desired")
    adapter = FileAdapter(FileSettings(roots=[tmp_path / "live"]))
    return state, adapter


def engine_over(state: Any, store: SqlHistoryStore, adapter: Any) -> Any:
    """A Reconciler over `state` whose every target reads through `adapter`."""
    guard = Guard(Mode.APPLY, ["*"])
    return assemble(
        lambda: state, store, lambda name: adapter, Metrics(), SystemClock(), guard=guard, hmac_key=HMAC_KEY
    )


def test_recovery_settles_dead_runs_against_live(tmp_path: Path, store: SqlHistoryStore) -> None:
    """In-flight actions of a dead process become verified, failed or conflict by what live holds (secrets by
    hash); the run is marked failed; runs of live processes are not touched."""
    state, adapter = setup(tmp_path, "a: 2\nb: 1\nc: 9\npw: new\n")
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    dead = store.start_run(RunKind.APPLY, "cli", "v" * 64, owner="x")  # "x" is no process: dead
    alive = store.start_run(RunKind.APPLY, "cli", "v" * 64, owner=process.identity())

    def action(run: str, name: str, before: object, after: object, secret: bool = False) -> Action:
        return Action(str(uuid.uuid4()), run, "t", (name,), DriftOp.CHANGE, before, after, "v" * 64, "r", secret)

    store.record_actions(
        [
            action(dead, "a", 1, 2).with_state(ActionState.STAGED),  # written: live holds after
            action(dead, "b", 1, 2),  # not written: live holds before
            action(dead, "c", 1, 2).with_state(ActionState.APPLIED),  # someone else wrote: neither
            action(dead, "pw", "old", "new", secret=True),  # secret, written
        ]
    )
    store.record_actions([action(alive, "b", 1, 2).with_state(ActionState.STAGED)])
    engine = engine_over(state, store, adapter)
    settled = {a.pointer: a.state.value for a in undo.recover(engine)}
    assert settled == {"/a": "verified", "/b": "interrupted", "/c": "conflict", "/pw": "verified"}
    assert {a.pointer: a.state for a in store.actions(alive)} == {"/b": ActionState.STAGED}
    dead_run, alive_run = store.run(dead), store.run(alive)
    assert dead_run is not None and dead_run.status is RunStatus.FAILED and "interrupted" in (dead_run.error or "")
    assert alive_run is not None and alive_run.status is RunStatus.RUNNING
    assert undo.recover(engine) == []  # settled once only


@pytest.mark.parametrize("wrapped", [False, True])
def test_recovery_removes_staged_files_an_interrupted_commit_left(
    tmp_path: Path, store: SqlHistoryStore, wrapped: bool
) -> None:
    """The staged files a killed apply left beside a target's file are removed when its run is recovered
    (also through the daemon's retrying wrapper); every other file in the folder stays."""
    state, _ = setup(tmp_path, "a: 2\nb: 1\nc: 2\npw: new\n")
    live = tmp_path / "live"
    leftovers = [".c.yaml.abc.reconciler-tmp", ".c.yaml.k1_x9q2z.reconciler-tmp"]
    others = [".d.yaml.abc.reconciler-tmp", ".c.yaml.abc.reconciler-kept", "c.yaml.bak", "c.yaml"]
    for name in leftovers + others[:-1]:
        (live / name).write_text("a: 1\n")
    adapter: Any = FileAdapter(FileSettings(roots=[live]))  # built after the kill: the leftovers are older
    if wrapped:
        adapter = RetryingAdapter("file", adapter, attempts=1, initial_s=0.01, max_s=0.01)
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    dead = store.start_run(RunKind.APPLY, "cli", "v" * 64, owner="x")
    store.record_actions(
        [
            Action(str(uuid.uuid4()), dead, "t", ("b",), DriftOp.CHANGE, 1, 2, "v" * 64, "r").with_state(
                ActionState.STAGED
            )
        ]
    )
    engine = engine_over(state, store, adapter)
    assert [a.state for a in undo.recover(engine)] == [ActionState.INTERRUPTED]
    assert sorted(p.name for p in live.iterdir()) == sorted(others)
