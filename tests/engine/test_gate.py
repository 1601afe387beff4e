"""The one safety gate: the daemon's rolling window, the rollout of a desired version in waves, rollback and
apply under the guards. Every test runs on SQLite and PostgreSQL: the window and the rollout live in history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.adapters.file import FileAdapter as FileAdapterForTests
from reconciler.cli import app
from reconciler.domain.breaker import Breaker, BreakerState
from reconciler.domain.observed import Observed
from reconciler.domain.rollout import Progress
from reconciler.domain.run import Mode, RunStatus
from reconciler.engine.gate import Hold, Override, dry_run
from reconciler.engine.guard import Guard
from reconciler.engine.rollout import Rollout
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event, EventKind
from reconciler.remediate.safety import Limits
from reconciler.runtime import undo
from reconciler.settings import Settings
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.history import SqlHistoryStore
from reconciler.store.rollouts import SqlRolloutStore
from reconciler.store.window import SqlSafetyWindow
from tests.engine.helpers import MovableClock, make
from tests.runtime.test_loop import Forgetful

runner = CliRunner()
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
STAGING, PROD = "checkout-staging", "payments-api-prod"  # the example's two targets with reversible drift


def test_the_window_holds_the_blast_radius_across_passes_and_processes(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """In the daemon every pass is a run of its own; the rolling window still limits what they write together,
    a second process (a replica) sees the same window, and the held pass is written once the window allows."""
    clock = MovableClock(START)
    limits = Limits(max_targets_per_run=1, window_s=600)
    engine, metrics = make(settings, store, clock=clock, limits=limits, window=SqlSafetyWindow(store.engine))
    assert engine.reconcile([STAGING]).targets[0].status is RunStatus.FIXED
    held = engine.reconcile([PROD]).targets[0]
    assert held.mode is Mode.DRY_RUN and held.decision.held_by is Hold.BLAST_RADIUS
    assert held.note == "blast radius: 1 targets written in the last 600s, max_targets_per_run 1"
    assert "log_level: DEBUG" in (example / "live" / "payments-api" / "prod" / "config.yaml").read_text()
    assert 'reconciler_blast_radius_refusals_total{environment="prod"} 1.0' in metrics.render()[0].decode()
    replica, _ = make(settings, store, clock=clock, limits=limits, window=SqlSafetyWindow(store.engine))
    assert replica.reconcile([PROD]).targets[0].decision.held_by is Hold.BLAST_RADIUS
    clock.at = START + timedelta(seconds=601)
    written = replica.reconcile([PROD]).targets[0]
    assert written.mode is Mode.APPLY and written.status is RunStatus.DRIFT  # the escalation is left alone
    assert "log_level: INFO" in (example / "live" / "payments-api" / "prod" / "config.yaml").read_text()


def test_a_one_shot_run_keeps_its_own_budget_without_a_window(settings: Settings, store: SqlHistoryStore) -> None:
    """`reconciler apply` (no window) is limited per run: two runs of one target each both write."""
    engine, _ = make(settings, store, limits=Limits(max_targets_per_run=1))
    assert engine.reconcile([STAGING]).targets[0].status is RunStatus.FIXED
    assert engine.reconcile([PROD]).targets[0].mode is Mode.APPLY


def rollout_engine(
    settings: Settings, store: SqlHistoryStore, clock: MovableClock, events: list[Event], **options: object
) -> tuple[object, Rollout]:
    rollout = Rollout(SqlRolloutStore(store.engine), clock, Metrics(), events.append, bake_s=300, check_s=0)
    engine, _ = make(settings, store, clock=clock, rollout=rollout, notify=events.append, **options)
    return engine, rollout


def test_a_new_desired_version_goes_in_waves_with_a_bake_time(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """Prod is not written before staging is verified and the bake time has passed; then it is."""
    clock, events = MovableClock(START), []
    engine, rollout = rollout_engine(settings, store, clock, events)
    early = engine.reconcile([PROD]).targets[0]  # staging has not been passed under this version yet
    assert early.decision.held_by is Hold.ROLLOUT
    assert (early.note or "").startswith("wave 4 waits: 2 target(s) of earlier waves not yet verified")
    assert engine.reconcile([STAGING, "payments-api-staging"]).status is RunStatus.FIXED
    baking = engine.reconcile([PROD]).targets[0]
    assert baking.decision.held_by is Hold.ROLLOUT and (baking.note or "").startswith("wave 4 bakes until")
    clock.at = START + timedelta(seconds=301)
    assert engine.reconcile([PROD]).targets[0].mode is Mode.APPLY
    state = engine.desired()
    assert [(w.wave, w.open) for w in rollout.status(state)] == [(2, True), (4, True)]
    assert rollout.store.completed(state.version.digest)  # every wave opened: later drift needs no waves


def test_a_failed_wave_holds_the_later_ones_until_released(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A rolled-back write in staging holds prod for that version, says so once, and a release lets it go."""
    clock, events = MovableClock(START), []
    engine, _ = rollout_engine(settings, store, clock, events, adapters=lambda name: Forgetful(settings.file))
    failed = engine.reconcile([STAGING]).targets[0]
    assert failed.status is RunStatus.FAILED and failed.execution is not None and failed.execution.rolled_back
    clock.at = START + timedelta(hours=2)
    held = engine.reconcile([PROD, "payments-api-staging"]).targets
    prod = next(t for t in held if t.target.name == PROD)
    assert prod.decision.held_by is Hold.ROLLOUT and (prod.note or "").startswith("wave held: checkout-staging")
    assert [e.kind for e in events].count(EventKind.WAVE_HELD) == 1
    assert "false" not in str(events[-1].payload()).lower()  # no value in the payload
    version = engine.desired().version.digest
    url = ["--database-url", store.engine.url.render_as_string(hide_password=False)]
    result = runner.invoke(app, ["rollout", "status", *url])
    assert result.exit_code == 2 and "wave held" in result.output, result.output
    released = runner.invoke(app, ["rollout", "release", version[:12], "--reason", "staging flake", *url])
    assert released.exit_code == 0, released.output
    progress = {p.target: p.state for p in SqlRolloutStore(store.engine).progress(version)}
    assert progress[STAGING] is Progress.RELEASED
    assert engine.reconcile([PROD]).targets[0].mode is Mode.APPLY


def test_drift_on_a_rolled_out_version_is_fixed_without_waiting(settings: Settings, store: SqlHistoryStore) -> None:
    """Once every wave is open, a hand edit in prod is fixed at once (within the limits), as before."""
    clock, events = MovableClock(START), []
    engine, _ = rollout_engine(settings, store, clock, events)
    engine.reconcile()
    clock.at = START + timedelta(seconds=301)
    assert engine.reconcile([PROD]).targets[0].mode is Mode.APPLY
    clock.at = START + timedelta(seconds=302)
    again = engine.reconcile([STAGING]).targets[0]
    assert again.mode is Mode.APPLY and again.decision.held_by is None


def test_rollback_asks_the_gate(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """Rollback is refused under an open breaker and outside the apply environments; --force --reason
    overrides, and history records who and why."""
    engine, _ = make(settings, store)
    applied = engine.reconcile([STAGING])
    live = example / "live" / "checkout" / "staging.env"
    assert "FEATURE_FAST_PAY=false" in live.read_text()
    guarded, _ = make(settings, store, guard=Guard(Mode.APPLY, ["dev"]))
    refused = undo.rollback(guarded, applied.run_id, dry_run=False)
    assert refused.status is RunStatus.FAILED and "FEATURE_FAST_PAY=false" in live.read_text()
    assert "rollback refused: apply is not allowed in environment staging" in (refused.targets[0].error or "")
    breaker = SqlBreakerStore(store.engine)
    now = datetime.now(UTC)
    breaker.set(Breaker(BreakerState.OPEN, "change freeze", now, None, "alice"), now)
    frozen, _ = make(settings, store, breaker=breaker)
    refused = undo.rollback(frozen, applied.run_id, dry_run=False)
    assert "rollback refused: circuit breaker open" in (refused.targets[0].error or "")
    assert refused.targets[0].decision.held_by is Hold.BREAKER and "FEATURE_FAST_PAY=false" in live.read_text()
    forced = undo.rollback(frozen, applied.run_id, dry_run=False, override=Override("bob", "INC-9: undo now"))
    assert forced.status is RunStatus.FIXED and "FEATURE_FAST_PAY=true" in live.read_text()
    (record,) = store.passes(forced.run_id)
    assert (record.note or "").startswith("forced by bob: INC-9: undo now (overrode: circuit breaker open")


def test_rollback_from_the_cli_is_refused_by_the_switch_and_forced_with_a_reason(
    settings: Settings, example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry-run switch refuses `reconciler rollback`; --force needs --reason."""
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    applied = runner.invoke(app, ["apply", "--format", "json", "--target", STAGING])
    assert applied.exit_code == 0, applied.output
    run_id = json.loads(applied.stdout)["run_id"]
    flag = tmp_path / "freeze"
    flag.touch()
    monkeypatch.setenv("RECONCILER_GUARD__DRY_RUN_FILE", str(flag))
    refused = runner.invoke(app, ["rollback", run_id])
    assert refused.exit_code == 1 and "rollback refused: switched to dry-run: flag file" in refused.output
    unexplained = runner.invoke(app, ["rollback", run_id, "--force"])  # a usage error (the entry point exits 1)
    assert unexplained.exit_code != 0 and "--force needs --reason" in unexplained.output
    forced = runner.invoke(app, ["rollback", run_id, "--force", "--reason", "INC-1", "--actor", "carol"])
    assert forced.exit_code == 0, forced.output
    assert "FEATURE_FAST_PAY=true" in (example / "live" / "checkout" / "staging.env").read_text()


def test_one_shot_apply_honours_the_dry_run_switch(
    settings: Settings, example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the flag file exists, `reconciler apply` writes nothing and says why."""
    flag = tmp_path / "freeze"
    flag.touch()
    monkeypatch.setenv("RECONCILER_GUARD__DRY_RUN_FILE", str(flag))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["apply", "--format", "json"])
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert {t["mode"] for t in data["targets"]} == {"dry-run"}
    assert all("flag file" in (t["note"] or "") for t in data["targets"])
    assert "FEATURE_FAST_PAY=true" in (example / "live" / "checkout" / "staging.env").read_text()


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_a_version_that_comes_back_rolls_out_afresh(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """A → B → A: the second A does not reuse the first A's finished rollout; prod waits for staging again."""
    clock, events = MovableClock(START), []
    engine, _ = rollout_engine(settings, store, clock, events)
    engine.reconcile()
    clock.at += timedelta(seconds=301)
    engine.reconcile()  # A is rolled out everywhere
    manifest = example / "desired" / "checkout.yaml"
    original = manifest.read_text()
    edit(manifest, "interval: 30s", "interval: 31s")  # B
    engine.reconcile()
    manifest.write_text(original)  # A again
    edit(example / "live" / "payments-api" / "prod" / "config.yaml", "log_level: INFO", "log_level: DEBUG")
    clock.at += timedelta(seconds=1)
    again = engine.reconcile([PROD]).targets[0]
    assert again.decision.held_by is Hold.ROLLOUT and "waits" in (again.note or "")


def test_a_clean_pass_on_another_replica_keeps_the_bake_time(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """Replica A writes staging; replica B then finds staging clean: prod still bakes from A's write."""
    clock, events = MovableClock(START), []
    first, _ = rollout_engine(settings, store, clock, events)
    second, _ = rollout_engine(settings, store, clock, events)
    first.reconcile([STAGING, "payments-api-staging"])
    clock.at += timedelta(seconds=10)
    second.reconcile([STAGING, "payments-api-staging"])  # nothing left to write there
    held = first.reconcile([PROD]).targets[0]
    assert held.decision.held_by is Hold.ROLLOUT and "bakes until" in (held.note or "")


def test_a_late_fix_in_an_earlier_wave_does_not_hold_a_completed_rollout(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """Once every wave has opened, a hand edit fixed in staging later neither restarts the bake nor holds prod,
    and a failed late fix holds nothing: later drift is fixed as before, within the limits."""
    clock, events = MovableClock(START), []
    engine, rollout = rollout_engine(settings, store, clock, events)
    engine.reconcile()
    clock.at += timedelta(seconds=301)
    engine.reconcile([PROD])
    assert rollout.store.completed(engine.desired().version.digest)
    clock.at += timedelta(hours=3)
    edit(example / "live" / "checkout" / "staging.env", "FEATURE_FAST_PAY=false", "FEATURE_FAST_PAY=true")
    edit(example / "live" / "payments-api" / "prod" / "config.yaml", "log_level: INFO", "log_level: DEBUG")
    assert engine.reconcile([STAGING]).targets[0].status is RunStatus.FIXED
    prod = engine.reconcile([PROD]).targets[0]
    assert prod.mode is Mode.APPLY and prod.decision.held_by is None
    assert EventKind.WAVE_HELD not in [e.kind for e in events]


def test_release_frees_a_wave_waiting_for_an_unreadable_target(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A staging target that cannot be read holds prod (it never settles); `release` counts it as done."""
    clock, events = MovableClock(START), []
    engine, rollout = rollout_engine(settings, store, clock, events)
    (example / "live" / "payments-api" / "staging" / "config.yaml").unlink()
    engine.reconcile([STAGING, "payments-api-staging"])
    clock.at += timedelta(hours=1)
    waiting = engine.reconcile([PROD]).targets[0]
    assert waiting.decision.held_by is Hold.ROLLOUT and "payments-api-staging" in (waiting.note or "")
    state = engine.desired()
    assert rollout.release(state, state.version.digest, "alice", "staging is being rebuilt") == 1
    assert engine.reconcile([PROD]).targets[0].mode is Mode.APPLY


def test_an_escalation_no_approval_can_fix_costs_no_full_pass(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """In apply mode, drift on a path the source cannot change is escalated once, then remembered: later passes
    over unchanged live are unchanged passes (no comparison, no history row), as in dry-run."""

    class Unwritable(FileAdapterForTests):
        def discover(self, target: Any) -> Observed:
            observed = super().discover(target)
            return Observed(observed.fingerprint, observed.location, document=observed.document, unwritable={"": "ro"})

    adapter = Unwritable(settings.file)
    engine, _ = make(settings, store, adapters=lambda name: adapter)
    first = engine.reconcile([STAGING]).targets[0]
    assert not first.unchanged and {c.class_.value for c in first.classified} == {"escalate"}
    second = engine.reconcile([STAGING]).targets[0]
    assert second.unchanged and not second.plan


def test_rollback_is_refused_for_a_target_whose_manifest_says_dry_run(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A target switched to `mode: dry-run` after a write is not written by its rollback either, unless forced."""
    engine, _ = make(settings, store)
    applied = engine.reconcile([STAGING])
    edit(example / "desired" / "checkout.yaml", "interval: 30s", "interval: 30s\n  mode: dry-run")
    live = example / "live" / "checkout" / "staging.env"
    refused = undo.rollback(engine, applied.run_id, dry_run=False)
    assert refused.targets[0].decision.held_by is Hold.TARGET and "FEATURE_FAST_PAY=false" in live.read_text()
    assert "says mode: dry-run" in (refused.targets[0].error or "")
    forced = undo.rollback(engine, applied.run_id, dry_run=False, override=Override("bob", "INC-10"))
    assert forced.status is RunStatus.FIXED and "FEATURE_FAST_PAY=true" in live.read_text()


def test_a_batch_is_grouped_by_the_mode_each_target_runs_in(settings: Settings, store: SqlHistoryStore) -> None:
    """by_mode() gives each target the mode target() would: the guard's environments hold some in dry-run in
    an apply run; a run that writes nothing holds them all."""
    engine, _ = make(settings, store, guard=Guard(Mode.APPLY, ["prod"]))
    targets = engine.desired().targets
    gate = engine.gate
    apply = gate.run()
    assert apply.mode is Mode.APPLY
    grouped = gate.by_mode(apply, targets)
    assert set(grouped[Mode.APPLY]) == {n for n, t in targets.items() if t.environment == "prod"}
    assert set(grouped[Mode.DRY_RUN]) == {n for n, t in targets.items() if t.environment != "prod"}
    assert all(gate.target(apply, targets[n]).mode is mode for mode, same in grouped.items() for n in same)
    held = dry_run(Hold.SWITCH)
    assert gate.by_mode(held, targets) == {Mode.DRY_RUN: dict(targets)}
