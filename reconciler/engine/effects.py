"""The effects of a pass, recorded by observers of its outcome: history, metrics, notifications, rollout
progress. The steps of a pass only return values; everything a pass leaves behind is written here, once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Protocol, runtime_checkable

from reconciler.domain.approval import ApprovalState
from reconciler.domain.history import PassRecord
from reconciler.domain.ids import new_id
from reconciler.domain.manifest import DriftClass
from reconciler.domain.plan import ActionState
from reconciler.domain.rollout import Progress
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.state import DesiredState
from reconciler.engine import process
from reconciler.engine.backlog import Recorder
from reconciler.engine.gate import Hold
from reconciler.engine.outcome import PassOutcome
from reconciler.engine.rollout import Rollout
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event, EventKind
from reconciler.observe.targets import NO_DRIFT
from reconciler.ports import Clock

log = logs.get_logger("reconciler.effects")


class RunRecord:
    """A run's row in history, written on first need, so that passes with nothing new leave no trace."""

    def __init__(self, recorder: Recorder, kind: RunKind, trigger: str, version: str) -> None:
        self.id = new_id()  # one for every pass, though most leave no trace
        self.kind = kind
        self.recorder = recorder  # where what the run found is written: the store, or the daemon's backlog
        self._args = (trigger, version)
        self.started = False

    def ensure(self) -> str:
        if not self.started:
            trigger, version = self._args
            self.recorder.start_run(self.kind, trigger, version, run_id=self.id, owner=process.identity())
            self.started = True
        return self.id

    def finish(self, status: RunStatus) -> None:
        if self.started:
            self.recorder.finish_run(self.id, status)


class Observer(Protocol):
    """Records one kind of effect of a pass."""

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None: ...

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """pass_done() of passes that found nothing changed since their memo (`outcome.unchanged`), a batch at
        once: the daemon's steady state, where most passes end this way."""


@runtime_checkable
class KeepsTargets(Protocol):
    """An observer that keeps something of each target between passes, and drops it for targets this process
    no longer passes."""

    def forget(self, names: Collection[str]) -> None: ...


class History:
    """Every pass that found something new, with its drift, in the run's recorder (the journal has its actions).

    A pass that is looked at in full again only in case something else changed (apply mode, escalations an
    approval could let through) and then finds what the last recorded pass of its target found — same desired
    version, same live state, same status and classes, nothing written, nothing new to ask — is not recorded
    again: it is an unchanged pass in all but name. Before, such a target added every drift row once per
    interval, the largest part of history's growth (docs/operations.md, retention sizing)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[object, ...]] = {}  # target -> what its last recorded pass found

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """An unchanged pass is not recorded: it found what its memo's recorded pass found."""

    def forget(self, names: Collection[str]) -> None:
        for name in names:
            self._last.pop(name, None)

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None:
        if outcome.unchanged:
            return
        target = outcome.target
        found = _found(outcome, state)
        if found is not None and self._last.get(target.name) == found:
            return
        if found is None:
            self._last.pop(target.name, None)
        else:
            self._last[target.name] = found
        record = PassRecord(
            target=target.name,
            environment=target.environment,
            status=outcome.status,
            drift_count=len(outcome.classified),
            drift_percent=outcome.comparison.drift_percent if outcome.comparison else 0.0,
            observed_fingerprint=outcome.fingerprint,
            error=outcome.error,
            duration_s=outcome.duration_s,
            note=outcome.note,
        )
        run.recorder.record_pass(run.ensure(), record, outcome.classified)


_NO_CLASSES: frozenset[tuple[tuple[object, object], int]] = frozenset()


def _found(outcome: PassOutcome, state: DesiredState) -> tuple[object, ...] | None:
    """What a pass found, to tell a repeat of the last recorded one; None for a pass that must be recorded (it
    failed, wrote or would write something, raised an escalation, or could not ask the store)."""
    if (
        outcome.status is RunStatus.FAILED
        or outcome.degraded
        or outcome.new_escalations
        or (outcome.execution is not None and outcome.execution.actions)
    ):
        return None
    # Kept for every target: a clean pass's classes are the one empty frozenset, not one of 216 bytes each.
    classes = frozenset(Counter((c.class_, c.decided_by) for c in outcome.classified).items()) or _NO_CLASSES
    return (state.version.digest, outcome.fingerprint, outcome.status, outcome.note, classes)


class MetricsEffect:
    """Pass results, drift by class and its age, actions, flapping, pending approvals, last success."""

    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self.metrics = metrics
        self.clock = clock
        self._drift_since: dict[str, float] = {}  # target -> when its current open drift was first seen

    def forget(self, names: Collection[str]) -> None:
        for name in names:
            self._drift_since.pop(name, None)

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """Counted and timed each; the last success of those that did not fail set at once, under one lock."""
        metrics, good = self.metrics, []
        counted = Counter((outcome.target.environment, outcome.duration_s) for outcome in outcomes)
        for (environment, duration_s), count in counted.items():
            metrics.passes_done(environment, "unchanged", duration_s, count)
        for outcome in outcomes:
            target = outcome.target
            if outcome.status is not RunStatus.FAILED:
                good.append(target.name)
            elif outcome.error_type is not None:
                metrics.adapter_errors.labels(target.spec.source.adapter, target.environment).inc()
        metrics.target_states.update_each(good, last_success=self.clock.now().timestamp())

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None:
        target, metrics, states = outcome.target, self.metrics, self.metrics.target_states
        result = "unchanged" if outcome.unchanged else outcome.status.value
        metrics.pass_done(target.environment, result, outcome.duration_s)
        if outcome.status is not RunStatus.FAILED:
            states.update(target.name, last_success=self.clock.now().timestamp())
        elif outcome.error_type is not None:  # live (or history) could not be read or written
            metrics.adapter_errors.labels(target.spec.source.adapter, target.environment).inc()
        if outcome.unchanged:
            return
        if outcome.plan is not None:  # a full pass: its approvals are current (none left: zero pending)
            pending = sum(1 for a in outcome.approvals.values() if a.state is ApprovalState.PENDING)
            states.update(target.name, pending=pending)
        for _ in outcome.flapped:
            metrics.flapping.labels(target.environment).inc()
        if outcome.status is not RunStatus.FAILED:
            counts = {c.value: 0 for c in DriftClass}
            for c in outcome.classified:
                counts[c.class_.value] += 1
            if counts[DriftClass.REVERSIBLE.value] or counts[DriftClass.ESCALATE.value]:
                since = self._drift_since.setdefault(target.name, self.clock.now().timestamp())
            else:
                self._drift_since.pop(target.name, None)
                since = 0.0
            states.update(target.name, drift=counts if any(counts.values()) else NO_DRIFT, open_since=since)
        if outcome.execution:
            for outcome_state, count in Counter(a.state.value for a in outcome.execution.actions).items():
                metrics.actions.labels(target.environment, outcome_state).inc(count)


class Notifications:
    """New escalations (once per drift: an approval is raised once), failed fixes and automatic rollbacks.
    Payloads name targets, paths and reasons, never values."""

    def __init__(self, notify: Callable[[Event], None]) -> None:
        self.notify = notify

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """Nothing to say: an unchanged pass raises no escalation and writes nothing."""

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None:
        target = outcome.target
        if outcome.new_escalations:
            self._escalated(outcome)
        failed = outcome.failed_write
        if failed is None:
            return
        rolled_back = outcome.execution is not None and outcome.execution.rolled_back
        self.notify(
            Event(
                EventKind.ROLLBACK if rolled_back else EventKind.FAILED_FIX,
                f"{run.id}:{target.name}",
                f"{target.name}: " + ("change rolled back" if rolled_back else "fix failed"),
                {"target": target.name, "environment": target.environment, "run": run.id, "error": failed},
            )
        )

    def _escalated(self, outcome: PassOutcome) -> None:
        target = outcome.target
        # Bound once per pass: through the module's lazy proxy each call would bind a new logger (100,000
        # escalations in the largest benchmarked pass).
        warn = log.bind(target=target.name).warning
        for approval in outcome.new_escalations:
            warn("escalation awaits approval", approval=approval.id, path=approval.pointer, reason=approval.reason)
            self.notify(
                Event(
                    EventKind.ESCALATION,
                    f"{target.name}:{approval.pointer}",
                    f"{target.name}: {approval.pointer} needs a person: {approval.reason}",
                    {
                        "target": target.name,
                        "environment": target.environment,
                        "path": approval.pointer,
                        "reason": approval.reason,
                        "approval": approval.id,
                    },
                )
            )


class RolloutProgress:
    """Where each target is in the rollout of the desired version (the daemon's apply passes): done when it has
    nothing left to write (or never writes: its own mode, the guard), pending while a hold or a conflict keeps
    its writes back, failed when a write failed or was rolled back."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """Nothing new: a rollout takes a target's progress from its full passes."""

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None:
        held_by = outcome.decision.held_by
        if outcome.unchanged or held_by in (Hold.CONFIGURED, Hold.SWITCH) or outcome.plan is None:
            return  # nothing new, no rollout going on, or live could not be read
        to_write = bool(outcome.plan.actions)
        if held_by is not None and not held_by.lasting and to_write:
            self.rollout.record(state, outcome.target, Progress.PENDING, error=outcome.note)
        elif (failed := outcome.failed_write) is not None:
            self.rollout.record(state, outcome.target, Progress.FAILED, error=failed)
        elif outcome.execution is not None and any(a.state is ActionState.CONFLICT for a in outcome.execution.actions):
            self.rollout.record(state, outcome.target, Progress.PENDING, error="conflict: the next pass plans again")
        else:
            self.rollout.record(state, outcome.target, Progress.DONE, wrote=outcome.wrote)


class Effects:
    """The observers of every pass, in order: history first (what a crash must not lose), then the rest."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def add(self, observer: Observer) -> None:
        """One more observer, after the others (the composition root adds the daemon's own before passes run)."""
        self.observers = (*self.observers, observer)

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None:
        for observer in self.observers:
            observer.pass_done(outcome, run, state)

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """pass_done() of a batch of unchanged passes (`outcome.unchanged`), each observer taking them at once."""
        if outcomes:
            for observer in self.observers:
                observer.unchanged_done(outcomes, run, state)

    def forget(self, names: Collection[str]) -> None:
        """Every observer that keeps something of each target drops what it keeps of `names`."""
        for observer in self.observers:
            if isinstance(observer, KeepsTargets):
                observer.forget(names)
