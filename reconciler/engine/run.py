"""A run: one pass per target, in waves of environment rank, under one gate decision and one blast-radius
budget. Shared by the CLI (a run over many targets) and the daemon (a run per pass, or per batch).

Failures of one target are that target's outcome and never stop the others; a failed write stops every later
wave of the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta

from reconciler.domain.manifest import Target
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.domain.state import DesiredState
from reconciler.engine import assess
from reconciler.engine.assess import Assessment, Assessor
from reconciler.engine.backlog import Gathered, Recorder, WriteAhead
from reconciler.engine.effects import (
    Effects,
    RunRecord,
)
from reconciler.engine.gate import Gate, Hold, ModeDecision
from reconciler.engine.outcome import PassOutcome, RunOutcome
from reconciler.engine.pass_ import PassContext, PassDeps, run_pass, unchanged_outcome
from reconciler.errors import ConfigurationError, StoreUnavailable
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.ports import (
    Adapter,
    AdapterLookup,
    HistoryStore,
    ReadsAhead,
    TargetCache,
)
from reconciler.remediate import safety

DesiredLookup = Callable[[], DesiredState]

log = logs.get_logger("reconciler.run")


@dataclass(frozen=True, slots=True)
class Engine:
    """Everything a run needs besides the targets: the desired state, the pass's dependencies, the observers."""

    desired: DesiredLookup
    deps: PassDeps
    effects: Effects
    metrics: Metrics
    hmac_key: bytes


class Reconciler:
    """Runs passes over targets; shared by the CLI and the daemon."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.desired = engine.desired
        self.store: HistoryStore = engine.deps.store
        self.adapters: AdapterLookup = engine.deps.adapters
        self.assessor: Assessor = engine.deps.assessor
        self.gate: Gate = engine.deps.gate
        self.hmac_key = engine.hmac_key
        self.backlog = self.gate.backlog  # the daemon's: what passes found while the store was away
        self._last_status: dict[str, RunStatus] = {}
        self._quiet: dict[str, PassOutcome] = {}  # target -> its last unchanged pass (_unchanged_outcome)
        self._stored_version: str | None = None
        self._resync: set[str] = set()  # targets to look at in full once the store answers again
        self._resync_lock = threading.Lock()
        self._gathering = threading.local()  # .current: this thread's Gathered, .quiet: see gathering()

    def ensure_version(self, state: DesiredState, recorder: Recorder | None = None) -> None:
        """Store the desired version once per change, not once per pass. Never gathered: the runs of every
        worker's batch point at it, and another worker's batch may be written first."""
        if self._stored_version != state.version.digest:
            if isinstance(recorder, Gathered):
                recorder = self.backlog
            (recorder or self.store).ensure_version(state.version, str(state.root))
            self._stored_version = state.version.digest

    def _recorder(self, decision: ModeDecision) -> Recorder:
        """Where a run writes what it found: through the daemon's backlog, which keeps it while the store is
        away; a run that may write live puts what a write needs first straight into the store (WriteAhead)."""
        if self.backlog is None:
            return self.store
        self._resync_memos()
        if decision.writes:
            return WriteAhead(self.store, self.backlog)
        gathered: Gathered | None = getattr(self._gathering, "current", None)
        return gathered if gathered is not None else self.backlog

    def forget(self, targets: Iterable[Target]) -> None:
        """Drop what this process keeps of targets it no longer passes (removed from the desired state, or
        leased by another replica): their memos, each holding the target's live document and comparison, their
        last outcomes and statuses, the observers' and the adapters' per-target state. Kept, they grew a
        long-running daemon with every target that left it, and a replica with every rebalance. A pass of one
        of them in flight meanwhile may keep its own outcome until it is forgotten again."""
        by_adapter: dict[str, list[str]] = {}
        for target in targets:
            by_adapter.setdefault(target.spec.source.adapter, []).append(target.name)
        names = [name for group in by_adapter.values() for name in group]
        if not names:
            return
        for name in names:  # before the memos: a pass in flight that remembers anew keeps its status with it
            self._quiet.pop(name, None)
            self._last_status.pop(name, None)
        self.assessor.forget_all(names)
        self.engine.effects.forget(names)
        for adapter_name, group in by_adapter.items():
            try:
                adapter = self.adapters(adapter_name)
            except Exception:  # noqa: S112 - an unknown or broken adapter keeps nothing to drop
                continue
            if isinstance(adapter, TargetCache):
                adapter.forget(group)

    def _resync_memos(self) -> None:
        """Once the store answers again, the targets passed while it was away are looked at in full: those
        passes skipped what needs it (approvals, flapping), so their memos go."""
        if self.backlog is None or not self._resync or not self.backlog.healthy:
            return
        with self._resync_lock:
            names, self._resync = self._resync, set()
        for name in names:
            self.assessor.forget(name)

    @contextmanager
    def gathering(self, names: Collection[str] = ()) -> Iterator[None]:
        """Within it, the history of this thread's runs that write nothing live is kept, and written in one
        transaction when it ends (the daemon's batch of passes that fell due together); a run that may write
        keeps its journal going to the store at once. The approvals of `names` (the batch) are looked up
        once, so that a target with none that finds nothing escalated does not ask for its own; so are their
        writes within the flapping window, for the passes that write nothing (PassContext.no_writes)."""
        self._gathering.quiet = _Lazy(lambda: self._without_approvals(names))
        self._gathering.unwritten = _Lazy(lambda: self._without_writes(names))
        try:
            if self.backlog is None or self.backlog.batch is None or getattr(self._gathering, "current", None):
                yield
                return
            gathered = Gathered(self.gate.clock)
            self._gathering.current = gathered
            try:
                yield
            finally:
                self._gathering.current = None
                self.backlog.write_all(gathered.entries)
        finally:
            self._gathering.quiet = self._gathering.unwritten = frozenset()

    @contextmanager
    def reading_ahead(self, names: Collection[str]) -> Iterator[None]:
        """Within it, this thread's passes of `names` take their reads from one read per adapter made ahead
        of them all (ReadsAhead: a local adapter's, with two targets or more), instead of one read each: the
        daemon's batch of passes that fell due together and still need a read (first passes, changed live).
        Whatever goes wrong here leaves the reads to the passes: a worker's batch must not end before them."""
        with ExitStack() as ahead:
            try:
                self._read_ahead(names, ahead)
            except Exception:  # a bug: the passes still run, each reading on its own
                log.exception("reads ahead of a batch failed; its targets are read one by one", targets=len(names))
            yield

    def _read_ahead(self, names: Collection[str], ahead: ExitStack) -> None:
        state = self.desired()
        by_adapter: dict[str, dict[str, Target]] = {}
        for name in names:
            target = state.targets.get(name)
            if target is not None:
                by_adapter.setdefault(target.spec.source.adapter, {})[name] = target
        for adapter, group in self._bulk_groups(by_adapter):
            if isinstance(adapter, ReadsAhead):
                ahead.enter_context(adapter.reading_ahead(group))

    def _bulk_groups(self, by_adapter: Mapping[str, dict[str, Target]]) -> Iterator[tuple[Adapter, dict[str, Target]]]:
        """Each adapter's group of two targets or more, with the adapter: a bulk read of one costs what its own
        read does. An unknown or broken adapter's group is left out: each of its passes reports it."""
        for name, group in by_adapter.items():
            if len(group) < 2:
                continue
            try:
                adapter = self.adapters(name)
            except Exception:  # noqa: S112 - its passes say what is wrong
                continue
            yield adapter, group

    def _without_writes(self, names: Collection[str]) -> frozenset[str]:
        if not names:
            return frozenset()
        since = self.gate.clock.now() - timedelta(seconds=self.gate.limits.flap_window_s)
        try:
            return frozenset(names) - self.store.written_targets(names, since)
        except StoreUnavailable:
            return frozenset()  # each pass asks for its own, and finds out
        except Exception:  # a bug: the passes still run, each asking for its own writes
            log.exception("writes of a batch could not be looked up", targets=len(names))
            return frozenset()

    def _without_approvals(self, names: Collection[str]) -> frozenset[str]:
        approvals = self.engine.deps.approvals
        if approvals is None or not names:
            return frozenset()
        try:
            return frozenset(names) - approvals.open_targets(names)
        except StoreUnavailable:
            return frozenset()  # each pass asks for its own, and finds out
        except Exception:  # a bug: the passes still run, each asking for its own approvals
            log.exception("approvals of a batch could not be looked up", targets=len(names))
            return frozenset()

    def reconcile(
        self,
        names: Sequence[str] | None = None,
        *,
        mode: Mode | None = None,
        trigger: str = "cli",
        unchanged: Mapping[str, Mode] | None = None,
        cut_off: str | None = None,
    ) -> RunOutcome:
        """One run over `names` (all targets when None), in waves of environment rank. `mode` is what a command
        asked for (None: the configured mode); the gate may hold it. `unchanged` is what `unchanged()` found
        for them before, if it was asked; otherwise the run finds out itself. `cut_off`: why this process may
        look but not write (a replica that cannot reach the store to hold its leases)."""
        state = self.desired()
        unknown = sorted({n for n in names or () if n not in state.targets})  # not set(state.targets): O(fleet)
        if unknown:
            raise ConfigurationError(f"no target named {', '.join(unknown)} in {state.root}")
        decision = self.gate.run(mode, cut_off=cut_off)
        # An apply run whose writes the breaker holds is still an apply run; the switch makes it a dry-run one.
        asked = mode or (Mode.DRY_RUN if decision.held_by in (Hold.CONFIGURED, Hold.SWITCH) else Mode.APPLY)
        kind = RunKind.APPLY if asked is Mode.APPLY else RunKind.DRY_RUN
        recorder = self._recorder(decision)
        self.ensure_version(state, recorder)
        self.engine.metrics.set_desired_version(state.version.digest, state.version.git_commit)
        run = RunRecord(recorder, kind, trigger, state.version.digest)
        budget = safety.Budget(self.gate.limits, fleet=len(state.targets))
        quiet: Container[str] = getattr(self._gathering, "quiet", frozenset())
        unwritten: Container[str] = getattr(self._gathering, "unwritten", frozenset())
        basis = self._basis(state, decision)
        ctx = PassContext(state, run, decision, budget, self._last_status, basis, quiet, unwritten)
        outcomes: list[PassOutcome] = []
        with logs.bound_contextvars(run_id=run.id, mode=decision.mode.value):
            try:
                targets = state.ordered_targets(list(names) if names else None)
                if unchanged is None:
                    unchanged = self._unchanged(state, targets, decision)
                for target in targets:
                    same = unchanged.get(target.name) is self.gate.target(decision, target).mode
                    done = run_pass(self.engine.deps, ctx, target, known_unchanged=same)
                    if not done.unchanged:  # its last unchanged pass, and the comparison it holds, are gone
                        self._quiet.pop(target.name, None)
                    self.engine.effects.pass_done(done, run, state)
                    if done.degraded:
                        with self._resync_lock:
                            self._resync.add(target.name)
                    outcomes.append(done)
                    self._stop_later_waves(budget, done)
            finally:
                run.finish(RunStatus.worst([o.status for o in outcomes]))
        if any(o.execution and o.execution.actions and o.mode is Mode.APPLY for o in outcomes):
            self.gate.spend_error_budget()
        return RunOutcome(run.id, kind, state.version.digest, tuple(outcomes), recorded=run.started)

    def unchanged_passes(self, names: Sequence[str], unchanged: Mapping[str, Mode]) -> tuple[RunOutcome, list[str]]:
        """The passes of `names` that `unchanged()` found unchanged and whose memo still stands, as one run that
        reads nothing, writes nothing and leaves no trace in history (the observers still see each pass); and
        the names left for a pass of their own. The daemon's steady state: most passes of a batch end here,
        for a fraction of the cost of a run each."""
        self._resync_memos()  # a target passed while the store was away is not unchanged: it needs a full look
        state = self.desired()
        decision = self.gate.run()
        basis, now = self._basis(state, decision), self.engine.deps.clock.now()
        held = decision.held_by in (Hold.CONFIGURED, Hold.SWITCH)
        run = RunRecord(self.store, RunKind.DRY_RUN if held else RunKind.APPLY, "schedule", state.version.digest)
        outcomes: list[PassOutcome] = []
        rest: list[str] = []
        for name in names:
            target = state.targets.get(name)
            mode = unchanged.get(name)
            taken = self.gate.target(decision, target) if target is not None and mode is not None else None
            memo = None
            if target is not None and taken is not None and taken.mode is mode:
                memo = self.assessor.remembered(target, state, mode, now, basis)
            if target is None or taken is None or memo is None:
                rest.append(name)
                continue
            outcomes.append(self._unchanged_outcome(target, taken, memo))
        self.engine.effects.unchanged_done(outcomes, run, state)
        return RunOutcome(run.id, run.kind, state.version.digest, tuple(outcomes), recorded=False), rest

    def _unchanged_outcome(self, target: Target, decision: ModeDecision, memo: Assessment) -> PassOutcome:
        """An unchanged pass's outcome: the last one of `target` again when it showed the same memo (its very
        comparison, which a new pass replaces) in the same mode and status. An outcome is immutable, and building
        one cost more than the rest of an unchanged pass."""
        status = self._last_status.get(target.name, RunStatus.CLEAN)
        last = self._quiet.get(target.name)
        if (
            last is not None
            and memo.comparison is not None
            and last.comparison is memo.comparison
            and last.target is target
            and last.fingerprint == memo.observed.fingerprint
            and last.status is status
            and (last.decision is decision or last.decision == decision)
        ):
            return last
        last = self._quiet[target.name] = unchanged_outcome(target, decision, self._last_status, memo)
        return last

    def carries_memos(self, decision: ModeDecision | None = None) -> bool:
        """Whether a target's memo outlives a desired version that leaves its manifest (and the policies) as
        they were: yes, unless this run's passes feed a rollout, which needs every target passed in full under
        each new version (an apply-mode daemon)."""
        decision = decision or self.gate.run()
        return self.gate.rollout is None or decision.held_by in (Hold.CONFIGURED, Hold.SWITCH)

    def _basis(self, state: DesiredState, decision: ModeDecision) -> str:
        return assess.basis(state, across_versions=self.carries_memos(decision))

    def _stop_later_waves(self, budget: safety.Budget, done: PassOutcome) -> None:
        """Waves go in environment rank; a failed write stops every later wave of this run."""
        failed = done.failed_write
        if failed is None or budget.stopped is not None:
            return
        target = done.target
        budget.stop_after(target.wave, f"wave stopped: {target.name} ({target.environment}) failed: {failed}")
        self.engine.metrics.waves_stopped.labels(target.environment).inc()
        log.error("wave failed; later waves run dry-run", target=target.name, error=failed)

    def unchanged(self, names: Sequence[str]) -> dict[str, Mode]:
        """Which of `names` are unchanged since their last good pass, by one bulk read per adapter, each with
        the mode it holds for: for a caller that runs them one by one (the daemon's batch of passes that
        fell due together), so that each run of one takes its memo without a read of its own."""
        state = self.desired()
        targets = [state.targets[n] for n in names if n in state.targets]
        return self._unchanged(state, targets, self.gate.run())

    def _unchanged(self, state: DesiredState, targets: Sequence[Target], decision: ModeDecision) -> dict[str, Mode]:
        """The targets of a run found unchanged by one bulk read per adapter (Assessor.stale), each with the
        mode it was checked in: its pass takes the memo without a read of its own, if it runs in that mode.
        A check made here stands for its target's pass later in the run, as any read does for the pass
        that made it."""
        by_adapter: dict[str, dict[str, Target]] = {}
        remembers = self.assessor.remembers
        for target in targets:
            if remembers(target.name):  # one without a memo needs its full read (reading_ahead): no second one
                by_adapter.setdefault(target.spec.source.adapter, {})[target.name] = target
        now = self.gate.clock.now()
        found: dict[str, Mode] = {}
        for adapter, group in self._bulk_groups(by_adapter):
            seen = self.assessor.fingerprints(adapter, group)
            if not seen:
                continue
            for mode, same in self.gate.by_mode(decision, group).items():
                stale = self.assessor.stale(state, same, seen, mode, now, self._basis(state, decision))
                found.update((target, mode) for target in same.keys() - stale)
        return found


class _Lazy:
    """A set of names looked up on the first question only: a batch whose passes are all unchanged (most of
    them, in a steady state) never asks the store which of its targets have approvals."""

    def __init__(self, find: Callable[[], frozenset[str]]) -> None:
        self._find = find
        self._found: frozenset[str] | None = None

    def __contains__(self, name: object) -> bool:
        if self._found is None:
            self._found = self._find()
        return name in self._found
