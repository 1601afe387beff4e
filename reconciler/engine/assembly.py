"""A Reconciler from its parts: the gate and its holds, the pass's dependencies, and the observers of its
outcomes. The daemon's has the rolling window, the rollout and the backlog; a one-shot command's has none."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.domain.breaker import ErrorBudget
from reconciler.engine.assess import Assessor
from reconciler.engine.backlog import Backlog
from reconciler.engine.effects import Effects, History, MetricsEffect, Notifications, Observer, RolloutProgress
from reconciler.engine.gate import Gate
from reconciler.engine.guard import Guard
from reconciler.engine.pass_ import PassDeps
from reconciler.engine.rollout import Rollout
from reconciler.engine.run import DesiredLookup, Engine, Reconciler
from reconciler.engine.unsettled import Accounted, Unsettled, this_host
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event
from reconciler.ports import AdapterLookup, ApprovalStore, BreakerStore, Clock, HistoryStore, SafetyWindow
from reconciler.remediate import safety


def assemble(
    desired: DesiredLookup,
    store: HistoryStore,
    adapters: AdapterLookup,
    metrics: Metrics,
    clock: Clock,
    *,
    hmac_key: bytes,
    guard: Guard,
    secret_file_roots: Sequence[Path] = (),
    approvals: ApprovalStore | None = None,
    limits: safety.Limits | None = None,
    breaker: BreakerStore | None = None,
    error_budget: ErrorBudget | None = None,
    notify: Callable[[Event], None] | None = None,
    window: SafetyWindow | None = None,
    rollout: Rollout | None = None,
    backlog: Backlog | None = None,
    accounted: Accounted = this_host,
) -> Reconciler:
    """A Reconciler from its parts: the gate, the pass's dependencies and the observers of its outcomes. The
    daemon's has the rolling window, the rollout and the backlog; a one-shot command's has none of them.
    `accounted` says whose runs' writes in flight hold a target's writes (engine/unsettled.py)."""
    limits = limits or safety.Limits()
    notify = notify or (lambda event: None)
    gate = Gate(
        guard,
        clock,
        metrics,
        limits=limits,
        breaker=breaker,
        error_budget=error_budget,
        window=window,
        rollout=rollout,
        notify=notify,
        backlog=backlog,
        unsettled=Unsettled(store, accounted),
    )
    deps = PassDeps(store, adapters, Assessor(hmac_key, secret_file_roots), gate, clock, limits, approvals)
    observers: list[Observer] = [History(), MetricsEffect(metrics, clock), Notifications(notify)]
    if rollout is not None:
        observers.append(RolloutProgress(rollout))
    return Reconciler(Engine(desired, deps, Effects(observers), metrics, hmac_key))
