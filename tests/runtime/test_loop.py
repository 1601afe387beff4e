from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.adapters.file import FileAdapter
from reconciler.domain.breaker import Breaker, BreakerState, ErrorBudget
from reconciler.domain.clock import SystemClock
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.run import Mode, RunStatus
from reconciler.engine.guard import Guard
from reconciler.errors import DiscoveryError
from reconciler.observe.metrics import Metrics
from reconciler.remediate.safety import Limits
from reconciler.runtime.retry import RetryingAdapter
from reconciler.settings import FileSettings, Settings
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.history import SqlHistoryStore
from tests.engine.helpers import MovableClock, make


def test_an_expired_exception_lets_the_fix_happen(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """The incident's timeout is left alone while its exception holds and escalated once it has expired."""
    engine, _ = make(settings, store, datetime(2026, 11, 22, tzinfo=UTC))
    report = engine.reconcile(["payments-api-prod"], mode=Mode.DRY_RUN)
    classes = {c.item.pointer: c.class_.value for c in report.targets[0].classified}
    assert classes["/database/timeout"] == "acceptable"
    later, _ = make(settings, store, datetime(2027, 7, 1, tzinfo=UTC))
    report = later.reconcile(["payments-api-prod"], mode=Mode.DRY_RUN)
    classes = {c.item.pointer: c.class_.value for c in report.targets[0].classified}
    assert classes["/database/timeout"] == "escalate"  # the prod database rule decides again


def test_target_mode_can_only_make_it_safer(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """A target that says dry-run stays in dry-run under a global apply; nothing is written for it."""
    manifest = example / "desired" / "checkout.yaml"
    manifest.write_text(manifest.read_text().replace("interval: 30s", "interval: 30s\n  mode: dry-run"))
    engine, _ = make(settings, store, datetime(2026, 11, 22, tzinfo=UTC))
    before = (example / "live" / "checkout" / "staging.env").read_text()
    report = engine.reconcile(["checkout-staging"])
    assert report.targets[0].mode is Mode.DRY_RUN and report.targets[0].status is RunStatus.DRIFT
    assert (example / "live" / "checkout" / "staging.env").read_text() == before


def test_metrics_follow_passes(settings: Settings, store: SqlHistoryStore) -> None:
    """Every series exists at zero before the first pass; a pass sets drift items, results and last success."""
    engine, metrics = make(settings, store, datetime(2026, 11, 22, tzinfo=UTC))
    metrics.init_targets([("payments-api-prod", "prod", "payments-api")])
    text = metrics.render()[0].decode()
    assert 'reconciler_drift_items{app="payments-api",class="escalate",environment="prod"} 0.0' in text
    assert 'reconciler_passes_total{environment="prod",result="failed"} 0.0' in text
    assert "target=" not in text  # per-target series only when asked for
    engine.reconcile(["payments-api-prod"], mode=Mode.DRY_RUN)
    text = metrics.render()[0].decode()
    assert 'reconciler_drift_items{app="payments-api",class="reversible",environment="prod"} 2.0' in text
    assert 'reconciler_targets_drifting{app="payments-api",environment="prod"} 1.0' in text
    assert 'reconciler_passes_total{environment="prod",result="drift"} 1.0' in text
    assert 'reconciler_actions_total{environment="prod",outcome="dry_run"} 2.0' in text
    assert "path" not in text.split("# HELP")[0]


def test_a_crashing_adapter_fails_its_target_only(settings: Settings, store: SqlHistoryStore) -> None:
    """An unexpected exception in one target's pass is recorded as that target's failure; others go on."""

    class Broken:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("boom")

    engine, _ = make(settings, store, datetime(2026, 11, 22, tzinfo=UTC), adapters=lambda name: Broken())
    report = engine.reconcile(mode=Mode.DRY_RUN)
    assert len(report.targets) == 3
    assert all("internal error: RuntimeError: boom" in (t.error or "") for t in report.targets)
    recorded = store.run(report.run_id)
    assert recorded is not None and recorded.status is RunStatus.FAILED and recorded.targets == 3

    def unbuildable(name: str) -> Any:
        raise RuntimeError("cannot build")

    # The run's bulk check meets it first: still one failure per target.
    engine, _ = make(settings, store, datetime(2026, 11, 22, tzinfo=UTC), adapters=unbuildable)
    report = engine.reconcile(mode=Mode.DRY_RUN)
    assert [t.error for t in report.targets] == ["internal error: RuntimeError: cannot build"] * 3


def test_unchanged_targets_cost_nothing_and_record_nothing(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A second pass over unchanged state skips the comparison and writes no history; a live edit, a new
    desired version or an exception's expiry make the next pass look in full again."""
    clock = MovableClock(datetime(2026, 11, 22, tzinfo=UTC))
    metrics = Metrics()
    engine, _ = make(settings, store, clock=clock, metrics=metrics, global_mode=Mode.DRY_RUN)
    first = engine.reconcile(["payments-api-prod"], trigger="schedule")
    assert first.recorded and not first.targets[0].unchanged
    second = engine.reconcile(["payments-api-prod"], trigger="schedule")
    assert second.targets[0].unchanged and not second.recorded
    assert second.targets[0].status is first.targets[0].status is RunStatus.DRIFT
    assert [r.id for r in store.runs()] == [first.run_id]
    assert 'reconciler_passes_total{environment="prod",result="unchanged"} 1.0' in metrics.render()[0].decode()

    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("log_level: DEBUG", "log_level: WARN"))
    third = engine.reconcile(["payments-api-prod"], trigger="schedule")
    assert not third.targets[0].unchanged and third.recorded

    clock.at = datetime(2027, 7, 1, tzinfo=UTC)  # the INC-4711 exception has expired
    fourth = engine.reconcile(["payments-api-prod"], trigger="schedule")
    assert not fourth.targets[0].unchanged
    assert {c.item.pointer: c.class_.value for c in fourth.targets[0].classified}["/database/timeout"] == "escalate"


class Forgetful(FileAdapter):
    """A live system that accepts a write but still shows the old value right after it (once)."""

    def __init__(self, settings: FileSettings) -> None:
        super().__init__(settings)
        self.before: dict[str, Observed] = {}
        self.lie = False

    def discover(self, target: Target) -> Observed:
        observed = super().discover(target)
        if self.lie and target.name in self.before:
            self.lie = False
            return self.before.pop(target.name)
        self.before[target.name] = Observed(observed.fingerprint, observed.location, document=observed.document)
        return observed

    def commit(self, staged: Any) -> None:
        super().commit(staged)
        self.lie = True


def test_a_failed_wave_stops_later_waves(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """When a staging target fails verification (and is rolled back), prod runs dry-run with a note saying
    why, recorded in history and counted."""
    forgetful = Forgetful(settings.file)
    metrics = Metrics()
    engine, _ = make(settings, store, adapters=lambda name: forgetful, metrics=metrics)
    report = engine.reconcile()
    by_name = {t.target.name: t for t in report.targets}
    assert by_name["checkout-staging"].status is RunStatus.FAILED and by_name["checkout-staging"].execution.rolled_back  # type: ignore[union-attr]
    prod = by_name["payments-api-prod"]
    assert prod.mode is Mode.DRY_RUN and (prod.note or "").startswith("wave stopped: checkout-staging (staging) failed")
    assert "log_level: DEBUG" in (example / "live" / "payments-api" / "prod" / "config.yaml").read_text()
    assert by_name["payments-api-staging"].mode is Mode.APPLY  # the same wave goes on
    notes = {p.target: p.note for p in store.passes(report.run_id)}
    assert (notes["payments-api-prod"] or "").startswith("wave stopped")
    assert 'reconciler_waves_stopped_total{environment="staging"} 1.0' in metrics.render()[0].decode()


def test_guards(settings: Settings, store: SqlHistoryStore, example: Path, tmp_path: Path) -> None:
    """Apply writes only in allowed environments; the flag file and SIGUSR1-style forcing make the daemon's
    mode dry-run, and removing them restores it."""
    flag = tmp_path / "dry-run"
    guard = Guard(Mode.APPLY, ["dev", "stag*"], flag)
    engine, _ = make(settings, store, guard=guard)
    report = engine.reconcile()
    by_name = {t.target.name: t for t in report.targets}
    assert by_name["checkout-staging"].status is RunStatus.FIXED
    prod = by_name["payments-api-prod"]
    assert prod.mode is Mode.DRY_RUN and prod.note == "apply is not allowed in environment prod (guard)"
    assert guard.mode() is Mode.APPLY
    flag.touch()
    assert guard.mode() is Mode.DRY_RUN
    assert engine.reconcile(["checkout-staging"]).kind.value == "dry-run"
    flag.unlink()
    guard.force_dry_run(True)
    assert guard.mode() is Mode.DRY_RUN
    guard.force_dry_run(False)
    assert guard.mode() is Mode.APPLY


def test_a_writer_that_keeps_changing_a_path_back_is_escalated(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """After flap_threshold fixes of one path within the window, reconciler stops fixing it and escalates it
    with the history of the fight; other paths are still fixed."""
    live = example / "live" / "checkout" / "staging.env"
    metrics = Metrics()
    engine, _ = make(
        settings, store, clock=SystemClock(), metrics=metrics, limits=Limits(flap_threshold=2, flap_window_s=3600)
    )
    for _ in range(2):  # fixed twice; the other writer sets it back each time
        report = engine.reconcile(["checkout-staging"])
        assert report.targets[0].status is RunStatus.FIXED
        live.write_text(live.read_text().replace("FEATURE_FAST_PAY=false", "FEATURE_FAST_PAY=true"))
    live.write_text(live.read_text() + "LOG_LEVEL_EXTRA=1\n")
    third = engine.reconcile(["checkout-staging"]).targets[0]
    classes = {c.item.pointer: (c.class_.value, c.decided_by) for c in third.classified}
    assert classes["/FEATURE_FAST_PAY"] == ("escalate", "flapping")
    assert "written 2 times" in next(c.reason for c in third.classified if c.item.pointer == "/FEATURE_FAST_PAY")
    assert "FEATURE_FAST_PAY=true" in live.read_text()
    assert 'reconciler_flapping_total{environment="staging"} 1.0' in metrics.render()[0].decode()


def test_blast_radius_limits_a_run(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """A run stops writing when its next target would pass max_targets_per_run; the rest run dry-run with a note."""
    engine, _ = make(settings, store, limits=Limits(max_targets_per_run=1))
    by_name = {t.target.name: t for t in engine.reconcile().targets}
    assert by_name["checkout-staging"].status is RunStatus.FIXED
    prod = by_name["payments-api-prod"]
    assert prod.mode is Mode.DRY_RUN and (prod.note or "").startswith("blast radius: 1 targets written")
    assert "log_level: DEBUG" in (example / "live" / "payments-api" / "prod" / "config.yaml").read_text()
    fraction, _ = make(settings, store, limits=Limits(max_fleet_fraction=0.2))
    notes = [t.note for t in fraction.reconcile().targets if t.note]
    assert notes and "max_fleet_fraction 0.2 of 3 targets" in notes[0]


def test_a_fix_refused_by_the_blast_radius_is_tried_again_next_run(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A target whose fix the blast radius refused is not remembered as settled: the next run (same engine,
    nothing changed live) writes it."""
    staging = example / "live" / "payments-api" / "staging" / "config.yaml"
    staging.write_text(staging.read_text().replace("log_level: INFO", "log_level: DEBUG"))
    engine, _ = make(settings, store, limits=Limits(max_targets_per_run=1))
    first = {t.target.name: t for t in engine.reconcile().targets}
    assert first["checkout-staging"].status is RunStatus.FIXED
    assert first["payments-api-staging"].mode is Mode.DRY_RUN and "log_level: DEBUG" in staging.read_text()
    again = {t.target.name: t for t in engine.reconcile().targets}
    assert again["payments-api-staging"].status is RunStatus.FIXED and not again["payments-api-staging"].unchanged
    assert "log_level: INFO" in staging.read_text()


def test_the_error_budget_opens_the_circuit_breaker(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """When most recent writes fail, the breaker opens: later runs stay dry-run, saying why, until reset."""
    breaker = SqlBreakerStore(store.engine)
    metrics = Metrics()
    engine, _ = make(
        settings,
        store,
        adapters=lambda name: Forgetful(settings.file),
        clock=SystemClock(),
        metrics=metrics,
        breaker=breaker,
        error_budget=ErrorBudget(window_s=600, failure_ratio=0.5, min_writes=1, cooldown_s=60),
    )
    # checkout-staging's write fails verification and is rolled back; the failed wave holds prod in dry-run
    engine.reconcile(["checkout-staging", "payments-api-prod"])
    assert breaker.get().is_open(datetime.now(UTC))
    assert "writes failed or were rolled back" in (breaker.get().reason or "")
    held = engine.reconcile(["checkout-staging"]).targets[0]
    assert held.mode is Mode.DRY_RUN and (held.note or "").startswith("circuit breaker open until")
    text = metrics.render()[0].decode()
    assert "reconciler_circuit_open 1.0" in text and "reconciler_circuit_opened_total 1.0" in text
    breaker.set(Breaker(BreakerState.CLOSED), datetime.now(UTC))
    assert engine.reconcile(["payments-api-staging"]).targets[0].mode is Mode.APPLY


class TimingOut(FileAdapter):
    """Reads time out twice for each target before they answer."""

    def __init__(self, settings: FileSettings) -> None:
        super().__init__(settings)
        self.calls: dict[str, int] = {}

    def discover(self, target: Target) -> Observed:
        self.calls[target.name] = self.calls.get(target.name, 0) + 1
        if self.calls[target.name] % 3 != 0:
            raise DiscoveryError(f"{target.name}: timed out after 2s")
        return super().discover(target)


def test_an_adapter_that_times_out_is_retried_within_the_pass(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """Reads that time out are retried with backoff inside the pass (counted), and the fix goes through the
    real executor; the verify read after the write is retried the same way."""
    metrics = Metrics()
    inner = TimingOut(settings.file)
    adapter = RetryingAdapter(
        "file",
        inner,
        attempts=3,
        initial_s=0.001,
        max_s=0.01,
        on_retry=lambda name: metrics.adapter_retries.labels(name).inc(),
    )
    engine, _ = make(settings, store, adapters=lambda name: adapter, clock=SystemClock(), metrics=metrics)
    report = engine.reconcile(["checkout-staging"]).targets[0]
    assert report.status is RunStatus.FIXED, report.error
    assert "FEATURE_FAST_PAY=false" in (example / "live" / "checkout" / "staging.env").read_text()
    assert 'reconciler_adapter_retries_total{adapter="file"} 4.0' in metrics.render()[0].decode()  # read, verify
    inner.calls.clear()
    give_up = RetryingAdapter("file", inner, attempts=2, initial_s=0.001, max_s=0.01)
    engine, _ = make(settings, store, adapters=lambda name: give_up, clock=SystemClock(), metrics=metrics)
    failed = engine.reconcile(["payments-api-prod"]).targets[0]
    assert failed.status is RunStatus.FAILED and failed.retry and "timed out" in (failed.error or "")
    assert 'reconciler_adapter_errors_total{adapter="file",environment="prod"} 1.0' in metrics.render()[0].decode()


def test_a_wave_limit_holds_the_rest_of_that_wave_only(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """With one target per wave, the second target of the staging wave runs dry-run; prod, a later wave,
    writes again."""
    staging = example / "live" / "payments-api" / "staging" / "config.yaml"
    staging.write_text(staging.read_text().replace("log_level: INFO", "log_level: DEBUG"))
    engine, _ = make(settings, store, limits=Limits(max_targets_per_wave=1))
    by_name = {t.target.name: t for t in engine.reconcile().targets}
    assert by_name["checkout-staging"].status is RunStatus.FIXED
    held = by_name["payments-api-staging"]
    assert held.mode is Mode.DRY_RUN and (held.note or "").startswith("blast radius: wave 2 wrote 1 targets")
    assert by_name["payments-api-prod"].mode is Mode.APPLY


def test_the_age_of_open_drift_is_exported(settings: Settings, store: SqlHistoryStore, example: Path) -> None:
    """The time open drift began holds across passes whose drift changes, goes back to 0 once the target is
    clean, and is exported per target (when asked) and as the oldest per environment and app."""
    clock = MovableClock(datetime(2026, 11, 22, tzinfo=UTC))
    metrics = Metrics(per_target=True)
    metrics.init_targets(
        [("payments-api-prod", "prod", "payments-api"), ("payments-api-staging", "staging", "payments-api")]
    )
    engine, _ = make(settings, store, clock=clock, global_mode=Mode.DRY_RUN, metrics=metrics)

    def since(target: str = "payments-api-prod", environment: str = "prod") -> float | None:
        per_target = metrics.registry.get_sample_value(
            "reconciler_target_drift_open_since_timestamp_seconds", {"target": target, "environment": environment}
        )
        oldest = metrics.registry.get_sample_value(
            "reconciler_oldest_open_drift_timestamp_seconds", {"environment": environment, "app": "payments-api"}
        )
        assert oldest == per_target  # one target per environment here
        return per_target

    engine.reconcile(["payments-api-prod"])
    began = clock.at.timestamp()
    assert since() == began
    clock.at = datetime(2026, 11, 22, 1, tzinfo=UTC)
    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("log_level: DEBUG", "log_level: WARN"))
    engine.reconcile(["payments-api-prod"])
    assert since() == began  # still the same stretch of drift
    engine.reconcile(["payments-api-prod"], mode=Mode.APPLY)  # fixes what is reversible; an escalation stays
    assert since() == began
    engine.reconcile(["payments-api-staging"])
    assert since("payments-api-staging", "staging") == 0


class Counting(FileAdapter):
    """The file adapter, counting the targets it reads one by one and the bulk reads."""

    def __init__(self, settings: FileSettings) -> None:
        super().__init__(settings)
        self.discovered: list[str] = []
        self.bulk_reads = 0

    def discover(self, target: Target) -> Observed:
        self.discovered.append(target.name)
        return super().discover(target)

    def fingerprints(self, targets: Any) -> dict[str, str]:
        self.bulk_reads += 1
        return super().fingerprints(targets)


def test_a_run_reads_in_full_only_the_targets_that_changed(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A run over many targets fingerprints them in one bulk read; the unchanged ones are answered from
    their memo without a read of their own, with the status of their last pass. A target whose mode differs
    from the run's (dry-run by its manifest) is checked in its own mode."""
    manifest = example / "desired" / "checkout.yaml"
    manifest.write_text(manifest.read_text().replace("interval: 30s", "interval: 30s\n  mode: dry-run"))
    adapter = Counting(settings.file)
    engine, _ = make(settings, store, adapters=lambda name: adapter, global_mode=Mode.APPLY)
    first = engine.reconcile(mode=Mode.DRY_RUN)
    assert sorted(adapter.discovered) == sorted(t.target.name for t in first.targets)
    assert adapter.bulk_reads == 0  # no memo yet: each target is read once, by its own pass
    adapter.discovered.clear()
    second = engine.reconcile(mode=Mode.DRY_RUN)
    assert adapter.discovered == [] and adapter.bulk_reads == 1
    assert all(t.unchanged for t in second.targets)
    assert [t.status for t in second.targets] == [t.status for t in first.targets]

    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("log_level: DEBUG", "log_level: WARN"))
    third = engine.reconcile(mode=Mode.DRY_RUN)
    assert adapter.discovered == ["payments-api-prod"]
    assert [t.target.name for t in third.targets if not t.unchanged] == ["payments-api-prod"]

    adapter.discovered.clear()
    engine.reconcile(["checkout-staging", "payments-api-prod"])  # apply: checkout-staging stays dry-run
    assert adapter.bulk_reads == 3  # one per run with memos
    assert "checkout-staging" not in adapter.discovered  # unchanged in its own mode, dry-run
    assert "payments-api-prod" in adapter.discovered  # its memo is of a dry-run pass, this one is apply
