"""The daemon: schedules every target at its interval, works passes on a pool, serves HTTP, stops on SIGTERM.

Its parts are built by runtime/compose.py, the composition root.
"""

from __future__ import annotations

import functools
import heapq
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from reconciler.diff import compare
from reconciler.domain.manifest import Target
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import ProcessLock
from reconciler.present.report import target_dict, target_summary
from reconciler.runtime import adoption, compose, heap, parity_api, ui, undo
from reconciler.runtime.api import Api
from reconciler.runtime.compose import Components
from reconciler.runtime.expiries import Expiries
from reconciler.runtime.http import HttpServer
from reconciler.runtime.probes import RELOAD_SHARE, Probes, shorter_turns
from reconciler.runtime.queue import WorkQueue
from reconciler.runtime.replicas import DEPARTURES_S, Replicas
from reconciler.runtime.scheduler import Scheduler
from reconciler.runtime.watch import WatchSupervisor
from reconciler.runtime.workers import Workers

log = logs.get_logger("reconciler.daemon")
PROBE_S = 1.0  # how often the history store is looked at for /readyz
RECOVER_EVERY_S = 60.0  # one daemon: how often runs of this host whose process is gone are settled
PROBE_TIMEOUT_S = 1.0  # a probe in flight for longer than this (the store hangs): not ready
STALE_PROBE_S = 5.0  # a probe older than this (the store hangs): not ready
CAUGHT_UP_EVERY_S = 5.0  # how often the daemon looks whether it has caught up with its first cycle
GROWTH_LIMIT_S = 1800.0  # the collector's growth phase (runtime/heap.py) ends then, caught up or not
LOGGED_NAMES = 20  # of the targets a new desired version added, and of those it removed, named in the log


class Daemon:
    """Schedules every target at its interval, works passes on a pool, serves HTTP, stops on SIGTERM."""

    def __init__(self, components: Components) -> None:
        self.c = components
        s = components.settings.scheduler
        self.queue = WorkQueue(backoff_base_s=s.backoff_base_s, backoff_max_s=s.backoff_max_s)
        self.scheduler = Scheduler(default_interval_s=s.default_interval_s, jitter_s=s.jitter_s)
        self.replicas = Replicas(
            components.leases,
            components.reconciler,
            components.metrics,
            ttl_s=s.lease_ttl_s,
            wake=self.queue.add,
            moved=self._leases_moved,
        )
        self.watches = WatchSupervisor(
            self.queue, components.adapters.watcher, components.metrics, debounce_s=s.watch_debounce_s
        )
        if self.replicas.shared:  # a replica watches the targets it leases, none before its first claim
            self.watches.hold(set())
        self.stopping = threading.Event()
        self._prober: threading.Thread | None = None
        self._probe_started: float | None = None  # when the probe in flight began, if one is
        self._flusher: threading.Thread | None = None
        self._store_state: tuple[str, str | None, float] = ("not looked at yet", None, time.monotonic())
        self._state: DesiredState | None = None
        self._previous_policies: str | None = None
        self._reported_error: str | None = None
        self._lock: ProcessLock | None = None
        self._switch_interval: float | None = None  # the interpreter's, set back when the daemon stops
        self.expiries = Expiries(components.metrics, components.settings.policy.expiry_warning_s)
        token = components.settings.http.api_token
        self.api = Api(
            version=self._version_info,
            guard=components.reconciler.gate.guard,
            approvals=components.approvals,
            approval_ttl_s=components.settings.approvals.ttl_s,
            readiness=self.readiness,
            watches=self.watches.covered,
            token=token.get_secret_value() if token is not None else None,
            parity=parity_api.view_of(components.parity),
            render=functools.partial(target_dict, key=components.settings.hmac_key()),
            summarize=target_summary,
        )
        self.probes = Probes()  # answered before the next pass starts
        self.workers = Workers(
            components, self.queue, self.scheduler, self.replicas, self.api, self.watches, self.probes
        )
        self.http = HttpServer(
            components.settings.http.host,
            components.settings.http.port,
            render_metrics=components.metrics.render,
            readiness=self.readiness,
            api=self.api,
            ui=ui.build(components, self.api),
            probes=self.probes,
        )

    def _version_info(self) -> dict[str, Any]:
        state = self._state
        if state is None:
            return {}
        return {"digest": state.version.digest, "git_commit": state.version.git_commit, "root": str(state.root)}

    def readiness(self) -> dict[str, Any]:
        """What /readyz says, at once: the store's state comes from the background probe's last look (a store
        that hangs never holds up the answer), the rest from memory."""
        if self._prober is None:  # not running as a daemon (yet): look now
            self._probe_store()
        store, remediation, at = self._store_state
        now = time.monotonic()
        age, probing = now - at, self._probe_started
        if probing is not None and now - probing > PROBE_TIMEOUT_S:
            store = f"no answer from the history store for {now - probing:.1f}s"
        elif age > STALE_PROBE_S:
            store = f"no answer from the history store for {age:.0f}s"
        detail: dict[str, Any] = {"desired_loaded": self.c.desired.loaded, "stopping": self.stopping.is_set()}
        detail["store"] = store
        backlog = self.c.reconciler.backlog
        if store != "ok":
            remediation = "paused: the history store is unreachable (detection goes on)"
        elif backlog is not None and backlog.waiting:
            remediation = f"paused: writing the history of {backlog.pending} passes kept during a store outage"
        if backlog is not None and backlog.pending:
            detail["history_backlog"] = backlog.pending
        if remediation is not None:
            detail["remediation"] = remediation
        if self.c.desired.last_error is not None:
            detail["desired_error"] = str(self.c.desired.last_error).splitlines()[0]
        configured = self.c.settings.scheduler.workers
        alive = self.workers.alive()
        detail["workers"] = f"{alive}/{configured}"
        working = alive == configured  # all started, none dead
        detail["ready"] = store == "ok" and detail["desired_loaded"] and working and not self.stopping.is_set()
        return detail

    def _probe_store(self) -> None:
        """One look at the history store and the breaker kept in it, for /readyz. During an outage this is the
        one caller that tries the store again (every other use of it fails at once, store/availability.py);
        once it answers, the history kept meanwhile is written in the background."""
        self._probe_started = time.monotonic()
        try:
            with self.c.probing():
                self.c.store.ping()
                breaker = self.c.breaker.get()
            paused = breaker.is_open(datetime.now(UTC))
            self._store_state = ("ok", "paused: " + (breaker.reason or "") if paused else "on", time.monotonic())
        except ReconcilerError as exc:
            self._store_state = (str(exc), None, time.monotonic())
        finally:
            self._probe_started = None
        backlog = self.c.reconciler.backlog
        flushing = self._flusher is not None and self._flusher.is_alive()
        if self._store_state[0] == "ok" and backlog is not None and backlog.waiting and not flushing:
            self._flusher = threading.Thread(target=backlog.flush, name="history-flush", daemon=True)
            self._flusher.start()

    def _probe_forever(self) -> None:
        while not self.stopping.wait(PROBE_S):
            self._probe_store()

    def _pause(self) -> float:
        """A reload's (and the first load's) turn for answers: up to half its time (runtime/probes.py)."""
        return self.probes.wait_turn(RELOAD_SHARE)

    def _refresh_desired(self) -> None:
        """Pick up edits of the desired state; an invalid edit is refused and the last good one stays. Its loops over
        every target let a probe or a scrape being answered go first (domain/pacing.py)."""
        state = self.c.desired.current(self._pause)
        self.expiries.look(state)
        try:
            self.c.reconciler.gate.breaker_hold()  # the breaker gauge stays current in dry-run too
        except ReconcilerError as exc:
            log.warning("circuit breaker state unknown", error=str(exc))
        error = self.c.desired.last_error
        if error is not None and str(error) != self._reported_error:
            self._reported_error = str(error)
            self.c.metrics.desired_reload_errors.inc()
            log.error(
                "desired state edit refused; the last good version stays in force",
                error=str(error),
                version=str(state.version),
            )
        elif error is None:
            self._reported_error = None
        self._follow_rollout(state)
        if self._state is not None and state.version == self._state.version:
            return
        if self.c.parity is not None:  # here, pausing for answers, before a pass would in a worker that does not
            self.c.parity.load(state, self._pause)
        last, old = self._state, (self._state.targets if self._state else {})
        self._state = state
        added, removed = self.scheduler.sync(state)
        self.watches.sync(state, self._pause)
        self.api.forget(set(removed))
        self.c.reconciler.forget(old[name] for name in removed if name in old)
        changed = self._changed(last, state)
        # The series grouped by environment, app and adapter are made again only when a target came, went or moved
        # (at 100,000 targets: 0.5 s of a reload, while probes wait for the interpreter)
        moved = (n for n in changed if old.get(n) is not state.targets[n])  # a kept object has not moved
        if added or removed or any(_grouped(old.get(n)) != _grouped(state.targets[n]) for n in moved):
            self.c.metrics.init_targets(
                ((t.name, t.environment, t.metadata.app or "") for t in state.targets.values()),
                {(t.spec.source.adapter, t.environment) for t in state.targets.values()},
            )
        self.c.metrics.set_desired_version(state.version.digest, state.version.git_commit)
        # The names of the first LOGGED_NAMES added and removed, and how many in all: a start adds every target,
        # and 100,000 names made one log line of ~1 MB, past what log shippers take in a line.
        log.info(
            "desired state loaded",
            version=str(state.version),
            targets=len(state.targets),
            added=heapq.nsmallest(LOGGED_NAMES, added),
            added_count=len(added),
            removed=heapq.nsmallest(LOGGED_NAMES, removed),
            removed_count=len(removed),
        )
        for name in sorted(added | changed):
            self.queue.add(name)
        self._lease_tick()

    def _changed(self, last: DesiredState | None, state: DesiredState) -> set[str]:
        """The targets to pass at once under a new desired version: those whose manifest changed since `last`
        (the loader keeps an unchanged target's object, and says which it did not keep), or all of them when the
        policies changed or the passes feed a rollout; the others keep their memo and their time."""
        previous, self._previous_policies = self._previous_policies, state.policy_digest
        if last is None or not last.targets:
            return set()
        if previous != state.policy_digest or not self.c.reconciler.carries_memos():
            return set(state.targets)
        return set(state.changes_from(last, self._pause).replaced)

    def _follow_rollout(self, state: DesiredState) -> None:
        """In apply mode, follow the rollout of the version in force: start it when the version changes, and mark
        it complete once every wave has opened (from then on later drift is fixed without waves)."""
        rollout = self.c.reconciler.gate.rollout
        if rollout is None or self.c.settings.mode is not Mode.APPLY:
            return
        try:
            rollout.view(state)
        except ReconcilerError as exc:
            log.warning("rollout state unknown", error=str(exc))

    def _leases_moved(self, held: set[str], lost: set[str]) -> None:
        """This replica's leases changed: it forgets what it showed and kept of the targets it lost, and watches
        the targets it holds."""
        self.api.forget(lost)
        self.watches.hold(held)
        state = self._state
        if state is not None:
            self.c.reconciler.forget(state.targets[name] for name in lost if name in state.targets)

    def _lease_tick(self) -> None:
        state = self._state
        if state is None:
            return
        soon = self.replicas.tick(state.targets)  # the same mapping while the version stands: leases.py
        every = timedelta(seconds=self.c.settings.scheduler.lease_ttl_s / 3)
        if soon is not None and soon < datetime.now(UTC) + every:  # before the next regular tick
            self.scheduler.once("leases-soon", self._lease_tick, soon)

    def _departures(self) -> None:
        """Claim at once when another replica's session ended: its targets are taken in seconds, not a lease."""
        if self.replicas.departures():
            self._lease_tick()

    def _caught_up(self, policy: heap.Heap, since: float) -> None:
        """The first cycle is over once targets are queued and none is due: every pass due since the start has
        run. Then the collector's policy counts the heap as built (or at GROWTH_LIMIT_S, if the daemon never
        catches up: an overloaded daemon must still free the garbage cycles it froze)."""
        if (len(self.queue) and not self.queue.due()) or time.monotonic() - since > GROWTH_LIMIT_S:
            policy.grown()
            self.scheduler.add_job("gc", policy.settle, heap.SETTLE_S)  # what accumulates is walked while little
            log.info("first cycle done: the heap is built", seconds=round(time.monotonic() - since))
            return
        self.scheduler.once("caught-up", functools.partial(self._caught_up, policy, since), _soon())

    def _recover(self) -> None:
        """Settle the in-flight actions of this host's runs whose process is gone, each target under its lock
        (replicas: a target being passed waits for the next time; dead replicas are the housekeeper's)."""
        try:
            recovered = undo.recover(self.c.reconciler, lock=self.c.leases.exclusive)
        except ReconcilerError as exc:
            log.error("in-flight actions of interrupted runs not settled; trying again later", error=str(exc))
            return
        if recovered:
            log.warning("recovered in-flight actions of interrupted runs", actions=len(recovered))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal received; finishing passes in flight", signal=signal.Signals(signum).name)
        self.stopping.set()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        guard = self.c.reconciler.gate.guard
        signal.signal(signal.SIGUSR1, lambda *_: guard.force_dry_run(True))
        signal.signal(signal.SIGUSR2, lambda *_: guard.force_dry_run(False))
        lock = self.c.lock()
        lock.acquire()  # before anything else: a second daemon on the same SQLite file stops here
        self._lock = lock
        if not self.replicas.shared:
            self._recover()  # before any pass: settle what a crash left in flight
        self._probe_store()
        self._prober = threading.Thread(target=self._probe_forever, name="store-probe", daemon=True)
        self._prober.start()
        compose.start_pruner(self.c, self.stopping)  # history retention, in the background
        if self.c.settings.scheduler.desired_watch:
            self.c.desired.watch(self.stopping)
        policy = heap.installed()
        if policy is not None:  # the load and the first cycle build the working set: no thaw meanwhile
            policy.expect_growth()
        self._switch_interval = shorter_turns()  # answers wait for the lock less (runtime/probes.py)
        self.http.start()  # before the first load, which takes minutes with 100,000 targets: /readyz says so
        host, port = self.http.address
        try:
            with self.replicas.joining():  # replicas loaded meanwhile leave this one its share
                self.c.desired.current(self._pause)  # the load
            self._refresh_desired()  # takes it in, and queues a first pass for every target right away
        except ReconcilerError:  # no valid desired state at all: nothing to do
            self.replicas.leave()
            self.stopping.set()
            self.http.stop()
            lock.release()
            self._lock = None
            self._longer_turns()
            raise
        assert self._state is not None
        self.scheduler.add_job("desired", self._refresh_desired, self.c.settings.scheduler.desired_poll_s)
        if self.c.settings.adopt.propose_after is not None:  # escalations nobody reverted: proposal branches
            proposer = adoption.Proposer(self.c.settings, self.c.approvals, self.c.notifier, lambda: self._state)
            self.scheduler.add_job("proposals", proposer.tick, adoption.PROPOSE_EVERY_S)
        if self.replicas.shared:  # replicas: renew and claim a share of the targets every third of a lease
            self.scheduler.add_job("leases", self._lease_tick, self.c.settings.scheduler.lease_ttl_s / 3)
            self.scheduler.add_job("departures", self._departures, DEPARTURES_S)  # and at once when one is killed
        # A one-shot command of this host that died meanwhile: its writes in flight hold their targets. Every
        # replica settles its own host's (the housekeeper can tell only its own host's processes are gone).
        self.scheduler.add_job("recover", self._recover, RECOVER_EVERY_S)
        if policy is not None:
            self.scheduler.once("caught-up", functools.partial(self._caught_up, policy, time.monotonic()), _soon())
        self.scheduler.start()
        self.workers.start(self.c.settings.scheduler.workers)
        log.info(
            "daemon started",
            listen=f"http://{host}:{port}",
            mode=self.c.settings.mode.value,
            targets=len(self._state.targets),
            desired_dir=str(self.c.settings.desired_dir),
            compare_walk=compare.IMPLEMENTATION,  # "python" when the compiled walk is not built
        )
        self.stopping.wait()
        return self.stop()

    def _longer_turns(self) -> None:
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    def stop(self) -> int:
        self.scheduler.shutdown()
        self.watches.stop()
        in_flight = sorted(self.queue.working)
        self.queue.close()
        timeout = self.c.settings.scheduler.shutdown_timeout_s
        stuck = self.workers.join(timeout)
        if not stuck:
            self.replicas.leave()  # the other replicas take this one's targets at their next tick
        self.http.stop()
        self.c.notifier.stop()  # send what is queued, briefly
        self._longer_turns()
        if self._lock is not None:
            self._lock.release()
        if stuck:
            log.error("passes still running at shutdown timeout", workers=stuck, timeout_s=timeout)
            return 1
        log.info("daemon stopped", finished=in_flight)
        return 0


def _grouped(target: Target | None) -> tuple[str, str | None, str] | None:
    return None if target is None else (target.environment, target.metadata.app, target.spec.source.adapter)


def _soon() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=CAUGHT_UP_EVERY_S)
