"""One level-based pass: re-read desired and live state, compare, classify, plan, then record or apply.

A pass never trusts whatever woke it; it always looks again. Failures of one target are that target's
result and never stop the others.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from reconciler.domain.approval import Approval, ApprovalState
from reconciler.domain.breaker import Breaker, BreakerState, ErrorBudget
from reconciler.domain.drift import Classified, Comparison
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DriftClass, Target
from reconciler.domain.plan import ActionState
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.domain.state import DesiredState
from reconciler.engine import health, process
from reconciler.engine.assess import Assessor
from reconciler.engine.guard import Guard
from reconciler.errors import ConfigurationError, ReconcilerError, TemporaryError
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event, EventKind
from reconciler.ports import ApprovalStore, BreakerStore, Clock, HistoryStore
from reconciler.remediate import planner, rollback, safety
from reconciler.remediate.executor import Adapter, Execution, execute

AdapterLookup = Callable[[str], Adapter]
DesiredLookup = Callable[[], DesiredState]

log = logs.get_logger("reconciler.pass")


@dataclass
class TargetReport:
    """What one pass found and did for one target."""

    target: Target
    mode: Mode
    status: RunStatus = RunStatus.CLEAN
    comparison: Comparison | None = None
    classified: list[Classified] = field(default_factory=list)
    plan: planner.TargetPlan | None = None
    execution: Execution | None = None
    error: str | None = None
    retry: bool = False  # the error is temporary: try the pass again with backoff
    duration_s: float = 0.0
    fingerprint: str | None = None
    unchanged: bool = False  # nothing changed since the last good pass: no work, nothing recorded
    note: str | None = None  # why the pass ran as it did: a guard, a stopped wave
    approvals: dict[str, Approval] = field(default_factory=dict)  # the target's approvals, by pointer
    layers: dict[str, list[tuple[str, Any]]] | None = None  # a layered source's values per pointer, winner last


@dataclass
class RunReport:
    """A run: its id, mode, the desired version it measured against, and one report per target."""

    run_id: str
    kind: RunKind
    desired_version: str
    targets: list[TargetReport]
    refused: list[rollback.Refusal] = field(default_factory=list)
    recorded: bool = False  # whether history holds this run (a run of unchanged passes writes nothing)

    @property
    def status(self) -> RunStatus:
        statuses = [t.status for t in self.targets]
        if self.refused:
            statuses.append(RunStatus.FAILED)
        return RunStatus.worst(statuses)


_ids = random.Random()  # noqa: S311 - ids, not secrets; seeded from os.urandom once per process


class _LazyRun:
    """A run row written on first need, so that passes with nothing new leave no trace in history."""

    def __init__(self, store: HistoryStore, kind: RunKind, trigger: str, version: str, rollback_of: str | None) -> None:
        # A version-4 UUID from the process's PRNG: run ids identify, they guard nothing, and one is made for
        # every pass (most leave no trace), where uuid4()'s read of os.urandom showed in profiles.
        self.id = str(uuid.UUID(int=_ids.getrandbits(128), version=4))
        self._args = (store, kind, trigger, version, rollback_of)
        self.started = False

    def ensure(self) -> str:
        if not self.started:
            store, kind, trigger, version, rollback_of = self._args
            store.start_run(kind, trigger, version, rollback_of=rollback_of, run_id=self.id, owner=process.identity())
            self.started = True
        return self.id


class Reconciler:
    """Runs passes over targets against the history store; shared by the CLI and the daemon."""

    def __init__(
        self,
        desired: DesiredLookup,
        store: HistoryStore,
        adapters: AdapterLookup,
        metrics: Metrics,
        clock: Clock,
        *,
        global_mode: Mode,
        hmac_key: bytes,
        secret_file_roots: Sequence[Path] = (),
        guard: Guard | None = None,
        approvals: ApprovalStore | None = None,
        limits: safety.Limits | None = None,
        breaker: BreakerStore | None = None,
        error_budget: ErrorBudget | None = None,
        notify: Callable[[Event], None] | None = None,
    ) -> None:
        self.desired = desired
        self.store = store
        self.adapters = adapters
        self.metrics = metrics
        self.clock = clock
        self.guard = guard or Guard(global_mode, ["*"])
        self.approvals = approvals
        self.limits = limits or safety.Limits()
        self.breaker = breaker
        self.error_budget = error_budget or ErrorBudget()
        self._breaker_was_open = False
        self.notify = notify or (lambda event: None)
        self.hmac_key = hmac_key
        self.assessor = Assessor(hmac_key, secret_file_roots)
        self._last_status: dict[str, RunStatus] = {}
        self._drift_since: dict[str, float] = {}  # target -> when its current open drift was first seen
        self._stored_version: str | None = None

    def ensure_version(self, state: DesiredState) -> None:
        """Store the desired version once per change, not once per pass."""
        if self._stored_version != state.version.digest:
            self.store.ensure_version(state.version, str(state.root))
            self._stored_version = state.version.digest

    def reconcile(
        self,
        names: Sequence[str] | None = None,
        *,
        mode: Mode | None = None,
        trigger: str = "cli",
        unchanged: Mapping[str, Mode] | None = None,
    ) -> RunReport:
        """One run over `names` (all targets when None), in waves of environment rank. `unchanged` is what
        `unchanged()` found for them before, if it was asked; otherwise the run finds out itself."""
        state = self.desired()
        unknown = sorted({n for n in names or () if n not in state.targets})  # not set(state.targets): O(fleet)
        if unknown:
            raise ConfigurationError(f"no target named {', '.join(unknown)} in {state.root}")
        run_mode = self.guard.mode() if mode is None else mode
        kind = RunKind.APPLY if run_mode is Mode.APPLY else RunKind.DRY_RUN
        self.ensure_version(state)
        self.metrics.set_desired_version(state.version.digest, state.version.git_commit)
        run = _LazyRun(self.store, kind, trigger, state.version.digest, None)
        report = RunReport(run.id, kind, state.version.digest, [])
        with logs.bound_contextvars(run_id=run.id, mode=run_mode.value):
            try:
                budget = safety.Budget(self.limits, fleet=len(state.targets))
                held = self.breaker_hold() if run_mode is Mode.APPLY else None
                stop: tuple[int, str] | None = None  # rank of the failed wave, and why
                targets = state.ordered_targets(list(names) if names else None)
                if unchanged is None:
                    unchanged = self._unchanged(state, targets, run_mode)
                for target in targets:
                    rank = target.wave
                    later = stop is not None and rank > stop[0]
                    why = stop[1] if stop and later else held
                    done = self._pass(state, target, run_mode, run, budget, why, unchanged.get(target.name))
                    report.targets.append(done)
                    if stop is None and done.execution and (done.execution.rolled_back or done.execution.error):
                        # Waves go in environment rank; a failed one stops every later wave of this run.
                        why = f"wave stopped: {target.name} ({target.environment}) failed: {done.execution.error}"
                        stop = (rank, why)
                        self.metrics.waves_stopped.labels(target.environment).inc()
                        log.error("wave failed; later waves run dry-run", target=target.name, error=done.error)
            finally:
                if run.started:
                    self.store.finish_run(run.id, report.status)
        report.recorded = run.started
        if run_mode is Mode.APPLY and any(t.execution and t.execution.actions for t in report.targets):
            self._spend_error_budget()
        return report

    def unchanged(self, names: Sequence[str]) -> dict[str, Mode]:
        """Which of `names` are unchanged since their last good pass, by one bulk read per adapter, each with
        the mode it holds for: for a caller that runs them one by one (the daemon's batch of passes that
        fell due together), so that each run of one takes its memo without a read of its own."""
        state = self.desired()
        targets = [state.targets[n] for n in names if n in state.targets]
        return self._unchanged(state, targets, self.guard.mode())

    def _unchanged(self, state: DesiredState, targets: Sequence[Target], run_mode: Mode) -> dict[str, Mode]:
        """The targets of a run found unchanged by one bulk read per adapter (Assessor.stale), each with the
        mode it was checked in: its pass takes the memo without a read of its own, if it runs in that mode.
        A check made here stands for its target's pass later in the run, as any read does for the pass
        that made it."""
        by_adapter: dict[str, dict[str, Target]] = {}
        for target in targets:
            by_adapter.setdefault(target.spec.source.adapter, {})[target.name] = target
        now = self.clock.now()
        unchanged: dict[str, Mode] = {}
        for name, group in by_adapter.items():
            if len(group) < 2:
                continue  # its own read costs the same
            try:
                adapter = self.adapters(name)
            except Exception:  # noqa: S112 - an unknown or broken adapter: each of its passes reports it
                continue
            seen = self.assessor.fingerprints(adapter, group)
            if not seen:
                continue
            by_mode: dict[Mode, dict[str, Target]] = {}
            for target in group.values():
                by_mode.setdefault(self._mode(target, run_mode)[0], {})[target.name] = target
            for mode, same in by_mode.items():
                stale = self.assessor.stale(state, same, seen, mode, now)
                unchanged.update((target, mode) for target in same.keys() - stale)
        return unchanged

    def _mode(self, target: Target, run_mode: Mode) -> tuple[Mode, str | None]:
        """A target's mode in a run of `run_mode`, and why it is safer than that, if it is."""
        mode = Mode.safer(run_mode, target.spec.mode)
        if mode is Mode.APPLY and not self.guard.allows_apply(target.environment):
            return Mode.DRY_RUN, f"apply is not allowed in environment {target.environment} (guard)"
        return mode, None

    def breaker_hold(self) -> str | None:
        """Why a run may not write now (the circuit breaker is open), or None; keeps the gauge current."""
        if self.breaker is None:
            return None
        now = self.clock.now()
        state = self.breaker.get()
        is_open = state.is_open(now)
        self.metrics.circuit_open.set(1 if is_open else 0)
        if self._breaker_was_open and not is_open:
            self.notify(Event(EventKind.BREAKER, f"remediation:{now.isoformat()}", "remediation resumed", {}))
            log.warning("circuit breaker closed: remediation resumes")
        self._breaker_was_open = is_open
        if not is_open:
            return None
        until = f" until {state.until:%Y-%m-%d %H:%M} UTC" if state.until else ""
        return f"circuit breaker open{until}: {state.reason} (`reconciler breaker reset` to close it)"

    def _spend_error_budget(self) -> None:
        """Open the breaker when too many recent writes failed."""
        if self.breaker is None:
            return
        now = self.clock.now()
        budget = self.error_budget
        failed, total = self.breaker.write_outcomes(now - timedelta(seconds=budget.window_s))
        reason = budget.exceeded(failed, total)
        if reason is None or self.breaker.get().is_open(now):
            return
        until = now + timedelta(seconds=budget.cooldown_s)
        self.breaker.set(Breaker(BreakerState.OPEN, reason, now, until, "error budget"), now)
        self._breaker_was_open = True
        self.metrics.circuit_open.set(1)
        self.metrics.circuit_opened.inc()
        log.error(
            "circuit breaker opened: remediation paused, detection goes on", reason=reason, until=until.isoformat()
        )

    def _pass(
        self,
        state: DesiredState,
        target: Target,
        run_mode: Mode,
        run: _LazyRun,
        budget: safety.Budget,
        stopped: str | None = None,
        unchanged_in: Mode | None = None,
    ) -> TargetReport:
        mode, note = self._mode(target, run_mode)
        if mode is Mode.APPLY and stopped is not None:
            mode, note = Mode.DRY_RUN, stopped
        report = TargetReport(target, mode, note=note)
        started = time.perf_counter()
        adapter_name = target.spec.source.adapter
        with logs.bound_contextvars(target=target.name, environment=target.environment):
            try:
                self._look_and_act(state, target, mode, run, report, budget, unchanged_in is mode)
            except ReconcilerError as exc:
                report.status, report.error = RunStatus.FAILED, str(exc)
                report.retry = isinstance(exc, TemporaryError)
                self.metrics.adapter_errors.labels(adapter_name, target.environment).inc()
                log.warning("pass failed", error=str(exc), error_type=type(exc).__name__)
            except Exception as exc:  # a bug must not take the daemon down; it is a failed pass
                report.status, report.error = RunStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}"
                log.exception("pass crashed")
            if report.status is RunStatus.FAILED:
                self.assessor.forget(target.name)
            report.duration_s = time.perf_counter() - started
            self._record(run, report)
        return report

    def _look_and_act(
        self,
        state: DesiredState,
        target: Target,
        mode: Mode,
        run: _LazyRun,
        report: TargetReport,
        budget: safety.Budget,
        known_unchanged: bool,
    ) -> None:
        adapter = self.adapters(target.spec.source.adapter)
        now = self.clock.now()
        assessment = self.assessor.remembered(target.name, state, mode, now) if known_unchanged else None
        if assessment is None:
            assessment = self.assessor.assess(state, target, adapter, mode, now)
        report.fingerprint = assessment.observed.fingerprint
        report.layers = assessment.observed.layers
        report.comparison, report.classified = assessment.comparison, assessment.classified
        if assessment.unchanged:
            report.unchanged = True
            report.status = self._last_status.get(target.name, RunStatus.CLEAN)
            return
        report.classified = self._check_flapping(target, report.classified)
        assessment = assessment._replace(classified=report.classified)
        assert assessment.desired is not None
        approvals = self._sync_approvals(target, report.classified, run)
        report.approvals = approvals
        report.plan = planner.plan(
            target,
            report.classified,
            assessment.desired,
            assessment.observed.document,
            run_id=run.id,
            desired_version=state.version.digest,
            approvals=approvals,
        )
        if report.plan.actions and not adapter.capabilities.write:
            # A read-only source: nothing can be fixed here, so every fix becomes an escalation.
            report.plan.escalations.extend(c for c in report.classified if c.class_ is DriftClass.REVERSIBLE)
            report.plan.actions.clear()
        elif report.plan.actions and assessment.observed.unwritable:
            report.classified = _escalate_unwritable(report.plan, report.classified, assessment.observed.unwritable)
        if report.plan.actions and mode is Mode.APPLY:
            refused = budget.refuse(len(report.plan.actions), target.wave)
            if refused is None:
                budget.spend(len(report.plan.actions))
            else:
                mode, report.mode, report.note = Mode.DRY_RUN, Mode.DRY_RUN, refused
                log.warning("blast radius reached; the rest of the run is dry-run", reason=refused)
        if report.plan.actions:
            run.ensure()  # the journal's rows point at the run
        report.execution = execute(
            target,
            report.plan.actions,
            adapter,
            self.store,
            dry_run=mode is Mode.DRY_RUN,
            gate=health.gate_for(target.spec.health),
        )
        if self.approvals is not None and report.plan.approved:
            used = [
                (report.plan.approved[a.id], a.id)
                for a in report.execution.actions
                if a.id in report.plan.approved and a.state in (ActionState.VERIFIED, ActionState.NOOP)
            ]
            self.approvals.mark_used(used)
        report.status = _status(report)
        if report.execution.error:
            report.error = report.execution.error
            kind = EventKind.ROLLBACK if report.execution.rolled_back else EventKind.FAILED_FIX
            self.notify(
                Event(
                    kind,
                    f"{run.id}:{target.name}",
                    f"{target.name}: " + ("change rolled back" if report.execution.rolled_back else "fix failed"),
                    {
                        "target": target.name,
                        "environment": target.environment,
                        "run": run.id,
                        "error": report.execution.error,
                    },
                )
            )
        if any(a.state.wrote for a in report.execution.actions):
            self.assessor.forget(target.name)  # live changed under us: look in full next time
        elif mode is not assessment.key[2]:
            # The blast radius turned this apply pass into a dry-run: its fixes are still to do, so it is not
            # remembered as the outcome of an apply pass over this state.
            self.assessor.forget(target.name)
        elif report.status is not RunStatus.FAILED:
            self.assessor.remember(target.name, assessment)
            self._last_status[target.name] = report.status
        log.info(
            "pass done",
            status=report.status.value,
            drift=len(report.comparison.items),
            drift_percent=round(report.comparison.drift_percent, 2),
            actions=len(report.plan.actions),
            escalations=len(report.plan.escalations),
        )

    def _check_flapping(self, target: Target, classified: list[Classified]) -> list[Classified]:
        """Reversible drift fixed too often lately is escalated instead of fixed once more."""
        reversible = [c.item.pointer for c in classified if c.class_ is DriftClass.REVERSIBLE]
        if not reversible:
            return classified
        since = self.clock.now() - timedelta(seconds=self.limits.flap_window_s)
        fixes = self.store.recent_fixes(target.name, reversible, since)
        if not fixes:
            return classified
        result, flapped = safety.flapping(classified, fixes, self.limits)
        for pointer in flapped:
            self.metrics.flapping.labels(target.environment).inc()
            log.warning("flapping: stopped fixing and escalated", path=pointer, fixes=len(fixes[pointer]))
        return result

    def _sync_approvals(self, target: Target, classified: list[Classified], run: _LazyRun) -> dict[str, Approval]:
        """One pending approval per escalated drift, raised once; the target's approvals by pointer."""
        if self.approvals is None:
            return {}
        escalations = [c for c in classified if c.class_ is DriftClass.ESCALATE]
        approvals, created = self.approvals.sync(target.name, target.environment, escalations, run.id, self.clock.now())
        for approval in created:
            log.warning(
                "escalation awaits approval", approval=approval.id, path=approval.pointer, reason=approval.reason
            )
        pending = sum(1 for a in approvals.values() if a.state is ApprovalState.PENDING)
        self.metrics.target_states.update(target.name, pending=pending)
        return approvals

    def _record(self, run: _LazyRun, report: TargetReport) -> None:
        target = report.target
        result = "unchanged" if report.unchanged else report.status.value
        self.metrics.pass_done(target.environment, result, report.duration_s)
        if report.status is not RunStatus.FAILED:
            self.metrics.target_states.update(target.name, last_success=self.clock.now().timestamp())
        if report.unchanged:
            return
        record = PassRecord(
            target=target.name,
            environment=target.environment,
            status=report.status,
            drift_count=len(report.classified),
            drift_percent=report.comparison.drift_percent if report.comparison else 0.0,
            observed_fingerprint=report.fingerprint,
            error=report.error,
            duration_s=report.duration_s,
            note=report.note,
        )
        self.store.record_pass(run.ensure(), record, report.classified)
        if report.status is not RunStatus.FAILED:
            counts = {c.value: 0 for c in DriftClass}
            for c in report.classified:
                counts[c.class_.value] += 1
            if counts[DriftClass.REVERSIBLE.value] or counts[DriftClass.ESCALATE.value]:
                since = self._drift_since.setdefault(target.name, self.clock.now().timestamp())
            else:
                self._drift_since.pop(target.name, None)
                since = 0.0
            self.metrics.target_states.update(target.name, drift=counts, open_since=since)
        if report.execution:
            for action in report.execution.actions:
                self.metrics.actions.labels(target.environment, action.state.value).inc()


def _escalate_unwritable(
    plan: planner.TargetPlan, classified: list[Classified], unwritable: Mapping[str, str]
) -> list[Classified]:
    """Fixes of paths the source cannot change live become escalations that say why; the drift's class and
    reason say so too (in reports and history). Returns the classes, updated."""
    changed: dict[str, Classified] = {}
    kept = []
    for action in plan.actions:
        why = unwritable.get(action.pointer) or unwritable.get("")  # "": the whole document
        if why is None:
            kept.append(action)
            continue
        drift = next(c for c in classified if c.item.pointer == action.pointer)
        changed[action.pointer] = Classified(
            drift.item, DriftClass.ESCALATE, f"cannot be fixed live: {why}", drift.decided_by
        )
    plan.actions[:] = kept
    plan.escalations.extend(changed.values())
    return [changed.get(c.item.pointer, c) for c in classified]


def _status(report: TargetReport) -> RunStatus:
    plan, execution = report.plan, report.execution
    assert plan is not None and execution is not None
    if execution.error or execution.rolled_back:
        return RunStatus.FAILED
    unresolved = (
        plan.escalations
        or plan.unpruned
        or any(a.state in (ActionState.CONFLICT, ActionState.DRY_RUN) for a in execution.actions)
    )
    if unresolved:
        return RunStatus.DRIFT
    if any(a.state is ActionState.VERIFIED for a in execution.actions):
        return RunStatus.FIXED
    return RunStatus.CLEAN
