"""The one safety gate: whether, and how much, a pass may write live state.

Every path that writes (a daemon pass, `reconciler apply`, `reconciler rollback`, an escalation a person
approved) asks here, and nothing else decides. The answer is data, a ModeDecision: apply, or dry-run with
why. In order, a write is held by: the dry-run switch (flag file, signal), the configured mode, the circuit
breaker, the target's own mode, the apply-environment guard, a failed earlier wave of the run, the rollout of
a new desired version (daemon), another run's write in flight on the target, the run's blast-radius budget,
and the daemon's rolling window. While the history store is unreachable (or the history kept meanwhile is not
yet written) nothing is written at all: a write's journal must be on disk first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from reconciler.domain.breaker import Breaker, BreakerState, ErrorBudget
from reconciler.domain.manifest import Target
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.domain.window import Reservation, Spend
from reconciler.engine import process
from reconciler.engine.backlog import Backlog
from reconciler.engine.guard import Guard
from reconciler.engine.rollout import Rollout
from reconciler.engine.unsettled import Unsettled
from reconciler.errors import StoreUnavailable
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event, EventKind
from reconciler.ports import BreakerStore, Clock, SafetyWindow
from reconciler.remediate import safety

log = logs.get_logger("reconciler.gate")


class Hold(StrEnum):
    """What held a write back. `lasting` holds (the target's mode, the guard) stay until the manifest or the
    settings change; the others lift by themselves or by an operator's word."""

    SWITCH = "switch"  # the dry-run flag file or signal
    CONFIGURED = "configured"  # the global mode, or the mode a command asked for
    BREAKER = "breaker"
    TARGET = "target"  # the target's manifest says mode: dry-run
    GUARD = "guard"  # the environment is not among RECONCILER_GUARD__APPLY_ENVIRONMENTS
    WAVE = "wave"  # an earlier wave of this run failed
    ROLLOUT = "rollout"  # the rollout of a new desired version has not reached this wave
    BLAST_RADIUS = "blast_radius"
    STORE = "store"  # the history store is unreachable, or history kept meanwhile is not yet written
    UNSETTLED = "unsettled"  # another run's action on the target is in flight (engine/unsettled.py)

    @property
    def lasting(self) -> bool:
        return self in (Hold.TARGET, Hold.GUARD)


@dataclass(frozen=True, slots=True)
class ModeDecision:
    """Whether a pass may write: apply, or dry-run with what held it and why (None: dry-run was asked)."""

    mode: Mode
    held_by: Hold | None = None
    why: str | None = None

    @property
    def writes(self) -> bool:
        return self.mode is Mode.APPLY


APPLY = ModeDecision(Mode.APPLY)


def dry_run(held_by: Hold, why: str | None = None) -> ModeDecision:
    return ModeDecision(Mode.DRY_RUN, held_by, why)


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's word to write despite the breaker, the guard or the switch: who, and why (recorded)."""

    actor: str
    reason: str


class Gate:
    """Decides every write. Built once per process; the daemon's gate also has the window and the rollout."""

    def __init__(
        self,
        guard: Guard,
        clock: Clock,
        metrics: Metrics,
        *,
        limits: safety.Limits | None = None,
        breaker: BreakerStore | None = None,
        error_budget: ErrorBudget | None = None,
        window: SafetyWindow | None = None,
        rollout: Rollout | None = None,
        notify: Callable[[Event], None] | None = None,
        backlog: Backlog | None = None,
        unsettled: Unsettled | None = None,
    ) -> None:
        self.guard = guard
        self.unsettled = unsettled
        self.backlog = backlog
        self.clock = clock
        self.metrics = metrics
        self.limits = limits or safety.Limits()
        self.breaker = breaker
        self.error_budget = error_budget or ErrorBudget()
        self.window = window
        self.rollout = rollout
        self.notify = notify or (lambda event: None)
        self._breaker_was_open = False

    # -- a run, then each target of it -----------------------------------------------------------------------

    def run(self, requested: Mode | None = None, *, cut_off: str | None = None) -> ModeDecision:
        """The mode of a run: the configured one (or the one a command asked for), held by the dry-run switch
        and, for apply, by the history store (unreachable: `cut_off` says why when the caller found out, or
        history kept in memory not yet written) and an open circuit breaker."""
        configured, switched = self.guard.now()
        if requested is Mode.DRY_RUN:
            return dry_run(Hold.CONFIGURED)
        if switched is not None:
            return dry_run(Hold.SWITCH, switched)
        if requested is None and configured is not Mode.APPLY:
            return dry_run(Hold.CONFIGURED)
        if cut_off is not None:
            return dry_run(Hold.STORE, f"remediation paused: {cut_off}")
        if self.backlog is not None and self.backlog.waiting:
            why = f"remediation paused: the history of {self.backlog.pending} passes is not yet written to the store"
            return dry_run(Hold.STORE, why)
        try:
            held = self.breaker_hold()
        except StoreUnavailable as exc:
            return dry_run(Hold.STORE, f"remediation paused: the circuit breaker cannot be read: {exc}")
        return dry_run(Hold.BREAKER, held) if held is not None else APPLY

    def target(self, run: ModeDecision, target: Target) -> ModeDecision:
        """The mode of one target's pass in a run decided `run`: its manifest's mode and the guard may hold it."""
        if not run.writes:
            return run
        if target.spec.mode is Mode.DRY_RUN:
            return dry_run(Hold.TARGET)
        if not self.guard.allows_apply(target.environment):
            return dry_run(Hold.GUARD, f"apply is not allowed in environment {target.environment} (guard)")
        return run

    def by_mode(self, run: ModeDecision, targets: Mapping[str, Target]) -> dict[Mode, dict[str, Target]]:
        """`targets` by the mode target() gives each of them in a run decided `run`."""
        if not run.writes:  # a run that writes nothing holds every target in its own mode
            return {run.mode: dict(targets)}
        found: dict[Mode, dict[str, Target]] = {}
        for name, target in targets.items():
            found.setdefault(self.target(run, target).mode, {})[name] = target
        return found

    def admit(
        self,
        decision: ModeDecision,
        state: DesiredState,
        target: Target,
        writes: int,
        budget: safety.Budget,
        *,
        run_id: str | None = None,
    ) -> ModeDecision:
        """Whether a pass of run `run_id` that has `writes` writes to make may make them now: the run's failed
        waves, the rollout, another run's write in flight on the target, the run's budget and the daemon's window
        may hold it. An admitted pass's writes are spent."""
        if not decision.writes or writes == 0:
            return decision
        held: ModeDecision | None = None
        if (why := budget.stop(target.wave)) is not None:
            held = dry_run(Hold.WAVE, why)
        elif self.rollout is not None and (why := self.rollout.hold(state, target)) is not None:
            held = dry_run(Hold.ROLLOUT, why)
        elif self.unsettled is not None and run_id is not None and (why := self.unsettled.why(target.name, run_id)):
            held = dry_run(Hold.UNSETTLED, why)
        elif (why := budget.refuse(writes, target.wave)) is not None or (
            why := self._reserve(target, writes, len(state.targets))
        ) is not None:
            held = dry_run(Hold.BLAST_RADIUS, why)
            self.metrics.blast_radius.labels(target.environment).inc()
        if held is not None:
            log.warning("writes held; the pass runs dry-run", held_by=held.held_by, reason=held.why)
            return held
        budget.spend(writes)
        return decision

    def _reserve(self, target: Target, writes: int, fleet: int) -> str | None:
        """Enter the writes in the daemon's rolling window, unless they would pass a limit there."""
        if self.window is None:
            return None
        now = self.clock.now()
        window_s = self.limits.window_s
        scope = f" in the last {window_s:g}s"

        def check(spent: Spend) -> str | None:
            found = safety.over(self.limits, spent, writes, target.wave, fleet, scope)
            return None if found is None else found[0]

        entry = Reservation(now, target.name, target.wave, writes, process.identity())
        return self.window.reserve(entry, now - timedelta(seconds=window_s), check)

    # -- rollback --------------------------------------------------------------------------------------------

    def rollback(self, target: Target, override: Override | None = None, *, run_id: str | None = None) -> ModeDecision:
        """Whether rollback run `run_id` may write to `target`: the switch, the breaker, the target's own mode, the
        guard and another run's write in flight on the target refuse it unless an operator overrides them
        (`--force --reason`); the decision then says who and why, for the record."""
        switched, breaker = self.guard.switched(), self.breaker_hold()
        if switched is not None:
            held_by, held = Hold.SWITCH, switched
        elif breaker is not None:
            held_by, held = Hold.BREAKER, breaker
        elif target.spec.mode is Mode.DRY_RUN:
            held_by, held = Hold.TARGET, f"the manifest of {target.name} says mode: dry-run"
        elif not self.guard.allows_apply(target.environment):
            held_by, held = Hold.GUARD, f"apply is not allowed in environment {target.environment} (guard)"
        elif self.unsettled is not None and run_id is not None and (why := self.unsettled.why(target.name, run_id)):
            held_by, held = Hold.UNSETTLED, why
        else:
            return APPLY
        if override is None:
            return dry_run(held_by, f"rollback refused: {held}; `--force --reason '…'` overrides")
        why = f"forced by {override.actor}: {override.reason} (overrode: {held})"
        log.warning("rollback forced past the gate", actor=override.actor, reason=override.reason, held=held)
        return ModeDecision(Mode.APPLY, None, why)

    # -- the circuit breaker ---------------------------------------------------------------------------------

    def breaker_hold(self) -> str | None:
        """Why no write may happen now (the circuit breaker is open), or None; keeps the gauge current and
        announces the breaker closing by itself."""
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

    def spend_error_budget(self) -> None:
        """After writes: open the breaker when too many recent writes failed, and say so."""
        if self.breaker is None:
            return
        now = self.clock.now()
        budget = self.error_budget
        try:
            failed, total = self.breaker.write_outcomes(now - timedelta(seconds=budget.window_s))
        except StoreUnavailable as exc:  # no write happens until the store is back: then it is counted
            log.warning("error budget not checked: the history store is unreachable", error=str(exc))
            return
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
        self.notify(
            Event(
                EventKind.BREAKER,
                f"remediation:{now.isoformat()}",
                f"remediation paused until {until:%Y-%m-%d %H:%M} UTC: {reason}",
                {"reason": reason, "until": until.isoformat(), "opened_by": "error budget"},
            )
        )
