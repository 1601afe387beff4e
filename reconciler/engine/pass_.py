"""One level-based pass over one target, top to bottom: read → compare → classify (assess) → decide → plan →
gate → execute. It never trusts whatever woke it; it always looks again. Its result is a frozen PassOutcome;
what it leaves behind (history, metrics, notifications) is written by the observers in effects.py."""

from __future__ import annotations

import time
from collections.abc import Container, Mapping
from dataclasses import dataclass, replace

from reconciler.domain.approval import Approval
from reconciler.domain.manifest import DriftClass, Target
from reconciler.domain.plan import ActionState
from reconciler.domain.run import Mode, RunStatus
from reconciler.domain.state import DesiredState
from reconciler.engine import decide, health
from reconciler.engine.assess import Assessment, Assessor
from reconciler.engine.effects import RunRecord
from reconciler.engine.gate import Gate, ModeDecision
from reconciler.engine.outcome import PassOutcome
from reconciler.errors import ReconcilerError, StoreUnavailable, TemporaryError
from reconciler.observe import logging as logs
from reconciler.ports import Adapter, AdapterLookup, ApprovalStore, Clock, HistoryStore
from reconciler.remediate import planner, safety
from reconciler.remediate.executor import Execution, execute

log = logs.get_logger("reconciler.pass")


@dataclass(frozen=True, slots=True)
class PassDeps:
    """What every pass needs, built once."""

    store: HistoryStore
    adapters: AdapterLookup
    assessor: Assessor
    gate: Gate
    clock: Clock
    limits: safety.Limits
    approvals: ApprovalStore | None = None


@dataclass(frozen=True, slots=True)
class PassContext:
    """What a pass shares with the other passes of its run."""

    state: DesiredState
    run: RunRecord
    decision: ModeDecision  # the run's
    budget: safety.Budget
    last_status: dict[str, RunStatus]  # each target's status at its last full pass, for unchanged passes
    basis: str | None = None  # what a memo depends on besides its target and live state (assess.basis)
    # Targets known (from one query for the batch) to have no open approval: when such a target finds nothing
    # escalated, it has no approval to raise, keep or supersede, and need not ask the store.
    no_approvals: Container[str] = frozenset()
    # Targets known (from one query for the batch, made within it) to have no write in the flapping window: a
    # pass of one that writes nothing need not ask for its writes. A pass that may write always asks, so that
    # a write made since the batch's query counts.
    no_writes: Container[str] = frozenset()


def run_pass(deps: PassDeps, ctx: PassContext, target: Target, *, known_unchanged: bool = False) -> PassOutcome:
    """One pass; a failure is this target's outcome and never reaches the caller."""
    decision = deps.gate.target(ctx.decision, target)
    started = time.perf_counter()
    with logs.bound_contextvars(target=target.name, environment=target.environment):
        try:
            outcome = _look_and_act(deps, ctx, target, decision, known_unchanged)
        except ReconcilerError as exc:
            log.warning("pass failed", error=str(exc), error_type=type(exc).__name__)
            temporary = isinstance(exc, TemporaryError)
            delay = exc.delay_s if isinstance(exc, TemporaryError) else None
            outcome = PassOutcome(target, decision, RunStatus.FAILED, error=str(exc), error_type=type(exc).__name__)
            outcome = replace(outcome, retry=temporary, requeue_after_s=delay)
        except Exception as exc:  # a bug must not take the daemon down; it is a failed pass
            log.exception("pass crashed")
            outcome = PassOutcome(
                target, decision, RunStatus.FAILED, error=f"internal error: {type(exc).__name__}: {exc}"
            )
        if outcome.status is RunStatus.FAILED:
            deps.assessor.forget(target.name)
        elif not outcome.unchanged:
            log.info(
                "pass done", status=outcome.status.value, mode=outcome.mode.value, held_by=outcome.decision.held_by
            )
        return replace(outcome, duration_s=time.perf_counter() - started)


def unchanged_outcome(
    target: Target, decision: ModeDecision, last_status: Mapping[str, RunStatus], seen: Assessment
) -> PassOutcome:
    """A pass that found nothing changed since the target's last good one: what that one found, again."""
    return PassOutcome(
        target,
        decision,
        last_status.get(target.name, RunStatus.CLEAN),
        seen.comparison,
        tuple(seen.classified),
        unchanged=True,
        fingerprint=seen.observed.fingerprint,
        layers=seen.observed.layers,
    )


def _look_and_act(
    deps: PassDeps, ctx: PassContext, target: Target, decision: ModeDecision, known_unchanged: bool
) -> PassOutcome:
    adapter = deps.adapters(target.spec.source.adapter)
    now = deps.clock.now()
    memo = deps.assessor.remembered(target, ctx.state, decision.mode, now, ctx.basis) if known_unchanged else None
    seen = memo or deps.assessor.assess(ctx.state, target, adapter, decision.mode, now, ctx.basis)
    if seen.unchanged:
        return unchanged_outcome(target, decision, ctx.last_status, seen)
    decided, approvals, created, degraded = _decide(deps, ctx, target, seen, adapter, decision)
    plan = _plan(ctx, target, seen, decided, approvals)
    decision = deps.gate.admit(decision, ctx.state, target, len(plan.actions), ctx.budget, run_id=ctx.run.id)
    if plan.actions:
        ctx.run.ensure()  # the journal's rows point at the run
    health_gate = health.gate_for(target.spec.health)
    execution = execute(target, plan.actions, adapter, ctx.run.recorder, dry_run=not decision.writes, gate=health_gate)
    _mark_used(deps, plan, execution)
    outcome = PassOutcome(
        target,
        decision,
        _status(plan, execution),
        seen.comparison,
        decided.classified,
        plan,
        execution,
        error=execution.error,
        approvals=approvals,
        new_escalations=tuple(created),
        flapped=decided.flapped,
        fingerprint=seen.observed.fingerprint,
        layers=seen.observed.layers,
        degraded=degraded,
    )
    _remember(deps, ctx, seen._replace(classified=list(decided.classified)), outcome, decided.unfixable)
    return outcome


def _decide(
    deps: PassDeps, ctx: PassContext, target: Target, seen: Assessment, adapter: Adapter, decision: ModeDecision
) -> tuple[decide.Decided, Mapping[str, Approval], list[Approval], bool]:
    """The final classes and the target's approvals, and whether the store could not be asked for them. A pass
    that writes nothing goes on without the store (detection never stops with it): it skips flapping and
    approvals, and is looked at in full once the store is back. A pass that would write stops here."""

    def final(store: HistoryStore | None) -> decide.Decided:
        writable, unwritable = adapter.capabilities.write, seen.observed.unwritable
        now = deps.clock.now()
        return decide.decide(
            target, seen.classified, writable=writable, unwritable=unwritable, store=store, limits=deps.limits, now=now
        )

    try:
        # None: no write to count (flapping is looked for in the store only when there may be one)
        unwritten = not decision.writes and target.name in ctx.no_writes
        decided = final(None if unwritten else deps.store)
    except StoreUnavailable:
        if decision.writes:
            raise
        return final(None), {}, [], True
    try:
        approvals, created = _sync_approvals(deps, ctx, target, decided)
    except StoreUnavailable:
        if decision.writes:
            raise
        return decided, {}, [], True
    return decided, approvals, created, False


def _plan(
    ctx: PassContext, target: Target, seen: Assessment, decided: decide.Decided, approvals: Mapping[str, Approval]
) -> planner.TargetPlan:
    """The fixes of the final classes; an approval counts only where a write could carry it out."""
    assert seen.desired is not None  # a full assessment carries the normalised desired document
    plan = planner.plan(
        target,
        decided.classified,
        seen.desired,
        seen.observed.document,
        run_id=ctx.run.id,
        desired_version=ctx.state.version.digest,
        approvals={p: a for p, a in approvals.items() if p not in decided.unfixable},
    )
    log.info(
        "pass planned",
        drift=len(seen.comparison.items),
        drift_percent=round(seen.comparison.drift_percent, 2),
        actions=len(plan.actions),
        escalations=len(plan.escalations),
    )
    return plan


def _sync_approvals(
    deps: PassDeps, ctx: PassContext, target: Target, decided: decide.Decided
) -> tuple[Mapping[str, Approval], list[Approval]]:
    """One pending approval per escalated drift that an approval could let through, raised once; the
    target's approvals by pointer, and the ones raised now."""
    if deps.approvals is None:
        return {}, []
    escalations = [
        c for c in decided.classified if c.class_ is DriftClass.ESCALATE and c.item.pointer not in decided.unfixable
    ]
    if not escalations and target.name in ctx.no_approvals:
        return {}, []
    return deps.approvals.sync(target.name, target.environment, escalations, ctx.run.id, deps.clock.now())


def _mark_used(deps: PassDeps, plan: planner.TargetPlan, execution: Execution) -> None:
    """An approval is used once the change it let through is in live."""
    if deps.approvals is None or not plan.approved:
        return
    done = (ActionState.VERIFIED, ActionState.NOOP)
    used = [(plan.approved[a.id], a.id) for a in execution.actions if a.id in plan.approved and a.state in done]
    deps.approvals.mark_used(used)


def _remember(
    deps: PassDeps, ctx: PassContext, seen: Assessment, outcome: PassOutcome, unfixable: frozenset[str]
) -> None:
    """Keep the assessment for the next pass if it stands for what live holds now in this mode. In apply mode
    one with escalations an approval could let through is looked at in full every pass (an approval may have
    arrived); escalations nothing can fix (a read-only source, an unwritable path) need no such look."""
    name = outcome.target.name
    if outcome.wrote or outcome.mode is not seen.key[2]:
        # Live changed under us, or a hold turned the pass to dry-run and its fixes are still to do: look again.
        deps.assessor.forget(name)
    elif outcome.status is not RunStatus.FAILED:
        rework = outcome.mode is Mode.APPLY and any(
            c.class_ is DriftClass.ESCALATE and c.item.pointer not in unfixable for c in outcome.classified
        )
        deps.assessor.remember(name, seen, rework=rework)
        ctx.last_status[name] = outcome.status


def _status(plan: planner.TargetPlan, execution: Execution) -> RunStatus:
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
