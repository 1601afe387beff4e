"""Undoing: settle what an interrupted run left in flight, and roll back a run or a single action."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import datetime
from typing import Any

from reconciler.domain import ids
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, get_in
from reconciler.domain.plan import IN_FLIGHT, Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.values import Redacted
from reconciler.engine import gate, process
from reconciler.engine.gate import Override
from reconciler.engine.outcome import PassOutcome, RunOutcome
from reconciler.engine.run import Reconciler
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import Capabilities
from reconciler.remediate import recovery
from reconciler.remediate import rollback as rollbacks
from reconciler.remediate.executor import Execution

log = logs.get_logger("reconciler.undo")

# Which run undid each of these actions: action id -> run id (store/ids.py answers it from history).
UndoneBy = Callable[[Sequence[str]], Mapping[str, str]]


def in_flight(engine: Reconciler, owners: Collection[str]) -> set[str]:
    """The targets with actions in flight in unfinished runs of `owners`."""
    if not owners:
        return set()
    runs = [run_id for run_id, owner in engine.store.unfinished_runs() if owner is not None and owner in owners]
    return {action.target for run_id in runs for action in engine.store.actions(run_id, IN_FLIGHT)}


def recover(
    engine: Reconciler,
    *,
    dead_owners: Collection[str] = (),
    lock: Callable[[str], AbstractContextManager[bool]] | None = None,
    targets: Collection[str] | None = None,
    busy: set[str] | None = None,
) -> list[Action]:
    """Settle the in-flight actions of runs whose process is gone, against live state; mark those runs
    failed. Gone: a process of this host that no longer runs, or one of `dead_owners` (replicas whose
    heartbeat stopped). Runs of live processes, and other hosts' runs not named, are left alone. With `lock`,
    a target is settled only while its lock is held, and only the actions still in flight then (another
    replica may have settled them, and passed the target, meanwhile); a run with a target that is busy waits
    for a later call. With `targets`, only those targets' actions are settled, and a run is marked failed
    once none of its actions is in flight. `busy` collects the targets left unsettled because their lock was
    busy."""
    dead = [
        run_id
        for run_id, owner in engine.store.unfinished_runs()
        if process.alive(owner) is False or (owner is not None and owner in dead_owners)
    ]
    if not dead:
        return []
    state = engine.desired()
    settled: list[Action] = []
    for run_id in dead:
        in_flight = engine.store.actions(run_id, IN_FLIGHT)
        by_target: dict[str, list[Action]] = {}
        for action in in_flight:
            by_target.setdefault(action.target, []).append(action)
        done: list[Action] = []
        left = False
        for name, actions in by_target.items():
            if targets is not None and name not in targets:
                left = True
                continue
            if name not in state.targets:
                done += recovery.settle_unknown(engine.store, actions, f"target {name} is no longer defined")
                continue
            target = state.targets[name]
            adapter = engine.adapters(target.spec.source.adapter)
            with lock(name) if lock is not None else nullcontext(True) as free:
                if not free:
                    left = True
                    if busy is not None:
                        busy.add(name)
                    continue
                pending = actions
                if lock is not None:
                    read = {a.id for a in actions}
                    pending = [a for a in engine.store.actions(run_id, IN_FLIGHT) if a.id in read]
                if pending:
                    done += recovery.recover_target(target, pending, adapter, engine.store, engine.hmac_key)
            engine.assessor.forget(name)
        settled += done
        if left:
            continue
        engine.store.finish_run(run_id, RunStatus.FAILED, f"interrupted; {len(in_flight)} in-flight actions recovered")
        counts = {s.value: sum(1 for a in done if a.state is s) for s in {a.state for a in done}}
        log.warning("interrupted run recovered", run_id=run_id, actions=len(in_flight), outcome=counts)
    return settled


def rollback(
    engine: Reconciler,
    undo: str,
    *,
    dry_run: bool,
    trigger: str = "cli",
    override: Override | None = None,
    undone_by: UndoneBy | None = None,
) -> RunOutcome:
    """Undo what a run wrote, or one action of it (`undo` names either), as a new run; refuses (and says
    why) where that cannot be done. Each target's writes ask the gate: the dry-run switch, an open breaker and
    the apply-environment guard refuse them unless `override` says who overrides them and why. A dry run is
    not recorded; a run or action that an earlier rollback undid already is refused, naming the run that did
    (`undone_by` finds it), and records nothing."""
    only: Action | None = None
    if engine.store.run(undo) is None:
        found = engine.store.actions(action_id=undo)
        if not found:
            raise ConfigurationError(f"no run or action with id {undo}")
        only = found[0]
        _refuse_repeat(f"action {undo}", [only], undone_by)
        if not only.state.wrote:
            raise ConfigurationError(f"action {undo} is {only.state.value}: it wrote nothing to undo")
    of_run = only.run_id if only is not None else undo
    originals = [only] if only is not None else engine.store.actions(of_run)
    if only is None:
        _refuse_repeat(f"run {undo}", originals, undone_by)
    state = engine.desired()
    engine.ensure_version(state)
    kind = RunKind.ROLLBACK
    run_id = (
        ids.new_id()
        if dry_run
        else engine.store.start_run(kind, trigger, state.version.digest, rollback_of=of_run, owner=process.identity())
    )
    outcomes: list[PassOutcome] = []
    refused: list[rollbacks.Refusal] = []
    with logs.bound_contextvars(run_id=run_id, rollback_of=of_run, dry_run=dry_run):
        try:
            plan = rollbacks.plan_rollback(
                originals,
                run_id=run_id,
                of_run=of_run,
                known_targets=state.targets,
                capabilities=lambda target: _capabilities(engine, target),
            )
            refused = plan.refused
            for name in plan.by_target:
                target = state.targets[name]
                decision = (
                    gate.dry_run(gate.Hold.CONFIGURED)
                    if dry_run
                    else engine.gate.rollback(target, override, run_id=run_id)
                )
                outcome = _rollback_target(engine, target, plan.by_target[name], decision, run_id, record=not dry_run)
                outcomes.append(replace(outcome, live_now=_live_now(engine, target, plan.by_target[name])))
        finally:
            status = RunStatus.worst([o.status for o in outcomes] + ([RunStatus.FAILED] if refused else []))
            if not dry_run:
                engine.store.finish_run(run_id, status)
    notes = _already_undone(of_run, len(plan.undone), bool(plan.by_target or plan.refused))
    return RunOutcome(run_id, kind, state.version.digest, tuple(outcomes), tuple(refused), not dry_run, notes)


def _already_undone(of_run: str, undone: int, more: bool) -> tuple[str, ...]:
    """What the report says of writes that an earlier rollback (or an automatic one) already undid, when the
    rollback still has others to undo (a run undone whole is refused before: _refuse_repeat)."""
    if not undone or not more:
        return ()
    return (f"{undone} of the writes of run {of_run} were already rolled back",)


def _capabilities(engine: Reconciler, target: Target) -> Capabilities:
    """What the target's adapter can do; an adapter that cannot be built can do nothing (its writes then fail
    with why)."""
    try:
        return engine.adapters(target.spec.source.adapter).capabilities
    except ReconcilerError:
        return Capabilities(read=False)


def _refuse_repeat(what: str, originals: list[Action], undone_by: UndoneBy | None) -> None:
    """Refuse a rollback of writes that are all rolled back already, naming the run (or runs) that undid them."""
    undone = [a.id for a in originals if a.state is ActionState.ROLLED_BACK]
    if not undone or any(a.state.wrote for a in originals):
        return
    runs = sorted(set((undone_by(undone) if undone_by is not None else {}).values()))
    own = {a.run_id for a in originals}
    by = [f"run {r}" + (" (its automatic rollback)" if r in own else "") for r in runs]
    raise ConfigurationError(
        f"{what} was already rolled back" + (f" by {', '.join(by)}" if by else "") + ": nothing is left to undo"
    )


def _rollback_target(
    engine: Reconciler,
    target: Target,
    reverse: list[Action],
    decision: gate.ModeDecision,
    run_id: str,
    *,
    record: bool = True,
) -> PassOutcome:
    started = time.perf_counter()
    execution: Execution | None = None
    error: str | None = None
    refused = decision.held_by is not None and decision.held_by is not gate.Hold.CONFIGURED
    with logs.bound_contextvars(target=target.name):
        try:
            adapter = engine.adapters(target.spec.source.adapter)
            journal = engine.store if record else _UNRECORDED
            execution = rollbacks.rollback(
                target, reverse, adapter, journal, dry_run=not decision.writes, hmac_key=engine.hmac_key
            )
            states = {a.state for a in execution.actions}
            if refused:
                status, error = RunStatus.FAILED, decision.why
            elif execution.error or ActionState.FAILED in states:
                status, error = RunStatus.FAILED, execution.error
            elif ActionState.CONFLICT in states:
                status, error = RunStatus.FAILED, "live no longer holds what the run wrote; refused where it differs"
            else:
                status = RunStatus.FIXED if decision.writes else RunStatus.DRIFT
        except ReconcilerError as exc:
            status, error = RunStatus.FAILED, str(exc)
        duration_s = time.perf_counter() - started
        done = PassRecord(target.name, target.environment, status, error=error, duration_s=duration_s)
        if record:
            engine.store.record_pass(run_id, replace(done, note=decision.why), [])
        log.info("rollback done", status=status.value, error=error)
    return PassOutcome(target, decision, status, execution=execution, error=error, duration_s=duration_s)


class _Unrecorded:
    """The journal of a rollback's dry run, which is not recorded: it keeps nothing."""

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None:
        return None

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        return None


_UNRECORDED = _Unrecorded()


def _live_now(engine: Reconciler, target: Target, reverse: Sequence[Action]) -> Mapping[str, Any]:
    """What live holds now at each path a rollback touched (read again after it; a secret as its keyed hash),
    by pointer; empty when live cannot be read. A refused key then shows what really is there, not what the
    run wrote."""
    try:
        document = engine.adapters(target.spec.source.adapter).discover(target).document
    except ReconcilerError as exc:
        log.warning("live not read after the rollback", error=str(exc))
        return {}
    list_keys = target.list_keys()
    found: dict[str, Any] = {}
    for action in reverse:
        value = get_in(document, action.path, list_keys)
        found[action.pointer] = Redacted.of(value, engine.hmac_key) if action.secret and value is not MISSING else value
    return found
