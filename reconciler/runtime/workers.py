"""The daemon's workers: each takes the passes that fell due together as one batch, finds the unchanged ones
by one bulk read per adapter, ends those at once, and runs the others one by one (a local adapter's reads of
them made in one go, ahead of their passes: Reconciler.reading_ahead). What happens after a pass
(its next one, a retry with backoff) is decided here, from its outcome alone.

The lane: a batch's targets whose adapter stays on this host (ports.Capabilities.local: files, this host's
processes) are worked as a batch of their own, and that batch holds the lane, one worker at a time, from its bulk
read to its history write (its passes' reads, history and, in apply mode, writes and journal included). Their
work is mostly Python under one interpreter lock, which cannot run side by side anyway, and four workers taking
that lock by turns spent over a third more CPU on the same passes (bench.daemon_scale, 20,000 file targets: a
first cycle of 36 s of CPU against 26 s with whole batches in the lane). A worker waiting for the lane waits on
it, not on the interpreter lock, so it costs nothing meanwhile. The other targets' batches (network reads to
overlap) never take the lane, so they never wait for a local batch (in a batch of both, they are worked first):
more workers still help remote targets. A target's adapter is looked up when its batch is taken; a reload that
changes it meanwhile takes effect from its next batch.
"""

from __future__ import annotations

import threading
import time

from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.runtime.api import Api
from reconciler.runtime.compose import Components
from reconciler.runtime.probes import Probes
from reconciler.runtime.queue import WorkQueue
from reconciler.runtime.replicas import BatchAccess, Replicas
from reconciler.runtime.scheduler import Scheduler
from reconciler.runtime.watch import WatchSupervisor

log = logs.get_logger("reconciler.daemon")
# Passes that fell due together, taken by one worker at once: its share of those ready, at least BATCH and at
# most BATCH_MAX (runtime/queue.py, take_ready). A batch's own costs (its bulk read handed to the adapter's
# reading thread, the run's decision, its locks, the history's lookups) are paid once for the lot: at 20,000 file
# targets, batches of up to 256 instead of 64 cut a steady pass's CPU by a fifth (bench.steady_passes). The
# share keeps a bunch of remote targets spread over the workers, whose network reads overlap; when every target
# takes the lane, batches run one at a time anyway, and each takes up to BATCH_MAX (Workers.sharing).
BATCH = 64
BATCH_MAX = 256


class Workers:
    """The pool of worker threads and what each does with a batch of passes."""

    def __init__(
        self,
        components: Components,
        queue: WorkQueue,
        scheduler: Scheduler,
        replicas: Replicas,
        api: Api,
        watches: WatchSupervisor,
        probes: Probes | None = None,
    ) -> None:
        self.c = components
        self.probes = probes or Probes()
        self.queue = queue
        self.scheduler = scheduler
        self.replicas = replicas
        self.api = api
        self.watches = watches
        self.threads: list[threading.Thread] = []
        # Held by the one worker working a batch of local targets (the module's docstring).
        self.lane = threading.Lock()
        self._lanes: tuple[str, dict[str, bool]] | None = None  # a desired version's digest, Workers.lanes

    def start(self, count: int) -> None:
        for i in range(count):
            worker = threading.Thread(target=self.supervised, name=f"worker-{i}", daemon=True)
            worker.start()
            self.threads.append(worker)

    def alive(self) -> int:
        return sum(1 for w in self.threads if w.is_alive())

    def join(self, timeout_s: float) -> list[str]:
        """Wait for every worker to end (the queue is closed); the names of those still running."""
        for worker in self.threads:
            worker.join(timeout_s)
        return [w.name for w in self.threads if w.is_alive()]

    def supervised(self) -> None:
        """A worker that outlives its own bugs: a crash is logged and counted, and the worker starts again, so
        one bad target can never stop the passes of the others."""
        while True:
            try:
                self.work()
                return  # the queue was closed: stopping
            except Exception:
                self.c.metrics.worker_crashes.inc()
                log.exception("worker crashed; it starts again", worker=threading.current_thread().name)

    def work(self) -> None:
        while (name := self.queue.get()) is not None:
            self.batch(name)

    def batch(self, first: str) -> None:
        """`first`, taken from the queue, and the passes that fell due with it (a scheduler tick), as one batch:
        one bulk read per adapter finds the unchanged targets, whose passes then take their memo without a
        read each."""
        self.probes.wait_turn()  # a probe or a scrape being answered goes first
        batch = self.held([first, *self.queue.take_ready(BATCH_MAX - 1, among=self.sharing(), least=BATCH - 1)])
        local = self.local(batch)
        if not local:
            self.passes_of(batch)
        elif len(local) == len(batch):
            with self.lane:  # the module's docstring
                self.passes_of(batch)
        else:  # the remote targets first: they never wait for the lane
            try:
                self.passes_of([name for name in batch if name not in local])
            except BaseException:  # a bug: the local targets, not started, may not be left marked as worked
                for name in batch:
                    if name in local:
                        self.queue.done(name)
                        self.queue.add(name)
                raise
            with self.lane:
                self.passes_of([name for name in batch if name in local])

    def passes_of(self, batch: list[str]) -> None:
        # Every read of the batch is made from here on (its bulk read, its reads ahead): a change a watch saw
        # after this was not necessarily seen by the batch's passes, and waits for the next one's.
        read_by = time.monotonic()
        unchanged: dict[str, Mode] = {}
        if len(batch) > 1:
            try:
                unchanged = self.c.reconciler.unchanged(batch)
            except Exception:  # the passes still run, each reading on its own
                log.exception("bulk check of a batch of passes failed", targets=len(batch))
        rest = self.unchanged_passes(batch, unchanged, read_by) if unchanged else batch
        reconciler = self.c.reconciler
        # Its dry-run history in one transaction; a local adapter's reads in one go, ahead of the passes; the
        # passes' locks taken together (inside the lane, for local targets: one order), each given back as its
        # pass ends.
        with reconciler.gathering(rest), reconciler.reading_ahead(rest), self.replicas.exclusive_all(rest) as locks:
            self.passes(rest, unchanged, read_by, locks)

    def held(self, batch: list[str]) -> list[str]:
        """The batch's targets this replica holds. The others leave its queue unread: the replica holding each
        passes it, and a target this one takes later is queued when taken (replicas.py)."""
        ours = [name for name in batch if self.replicas.owns(name)]
        if len(ours) < len(batch):
            theirs = set(batch).difference(ours)
            self.watches.not_ours(theirs)
            for name in theirs:
                self.queue.forget(name)
                self.queue.done(name)
        return ours

    def unchanged_passes(self, batch: list[str], unchanged: dict[str, Mode], read_by: float | None = None) -> list[str]:
        """The batch's passes whose memo stands, all at once (no read, no write, no lock: nothing to guard);
        returns the names left for a pass of their own. Most passes of a steady state end here."""
        quiet = [name for name in batch if name in unchanged and self.replicas.may_look(name)]
        if not quiet:
            return batch
        started = time.monotonic() if read_by is None else read_by
        try:
            run, _ = self.c.reconciler.unchanged_passes(quiet, unchanged)
        except Exception:  # a bug: the passes still run, each on its own
            log.exception("unchanged passes of a batch failed", targets=len(quiet))
            return batch
        done = [outcome.target.name for outcome in run.targets]
        try:
            self.api.record_each(zip(done, run.targets, strict=True))
            self.watches.passes_done(done, started)
        finally:  # whatever happens, none of them is left marked as worked
            self.queue.finish(self.next_delays(done))
        finished = set(done)
        return [name for name in batch if name not in finished]

    def passes(self, batch: list[str], unchanged: dict[str, Mode], read_by: float | None, locks: BatchAccess) -> None:
        for i, name in enumerate(batch):
            self.probes.wait_turn()  # a probe or a scrape being answered goes first
            if self.queue.closed:  # stopping: the rest of the batch is not started
                for rest in batch[i:]:
                    self.queue.done(rest)
                break
            try:
                self.pass_(name, unchanged, read_by, locks)
            except BaseException:  # a bug: no target of the batch may be left marked as worked
                self.queue.done(name)
                self.queue.add_rate_limited(name)
                for rest in batch[i + 1 :]:
                    self.queue.done(rest)
                    self.queue.add(rest)
                raise

    def pass_(self, name: str, unchanged: dict[str, Mode], read_by: float | None, locks: BatchAccess) -> None:
        """One pass of its own; `read_by`: the earliest its read may have been made (a batch's read ahead);
        `locks`: what its batch's locks allow (Replicas.exclusive_all), asked as it starts."""
        started = time.monotonic() if read_by is None else read_by
        try:
            try:
                access = locks.start(name)
                if not access.run:  # another replica holds this target
                    self.queue.forget(name)
                    return
                run = self.c.reconciler.reconcile(
                    [name], trigger="schedule", unchanged=unchanged, cut_off=access.cut_off
                )
            finally:
                locks.done(name)
            outcome = run.targets[0]
            self.api.record(name, outcome)
            # What happens next is decided here, from the outcome alone: a temporary error is retried with
            # backoff (or when it said), anything else waits for its interval.
            if outcome.retry:
                delay = self.queue.add_rate_limited(name, outcome.requeue_after_s)
                log.info("pass will be retried", target=name, delay_s=round(delay, 2))
            else:
                self.queue.forget(name)
        except ConfigurationError as exc:  # the target went away between trigger and pass
            self.queue.forget(name)  # nothing is kept of it: its backoff goes too
            log.info("target skipped", target=name, reason=str(exc))
        except ReconcilerError as exc:  # for example, the store is unreachable: try again later
            delay = self.queue.add_rate_limited(name, getattr(exc, "delay_s", None))
            log.error("pass could not run", target=name, error=str(exc), delay_s=round(delay, 2))
        except Exception:
            delay = self.queue.add_rate_limited(name)
            log.exception("pass crashed", target=name, delay_s=round(delay, 2))
        finally:
            self.watches.pass_done(name, started)
            self.queue.done(name)
            self.schedule_next(name)

    def sharing(self) -> int:
        """How many workers split the passes ready together: all of them, unless every adapter of the desired
        state takes the lane, where batches run one at a time anyway and each takes as many as it may."""
        lanes = self.lanes(self.c.reconciler.desired())
        return 1 if lanes and all(lanes.values()) else len(self.threads)

    def local(self, names: list[str]) -> set[str]:
        """Those of `names` that are targets whose adapter stays on this host (an unknown target or adapter is
        not: its pass says what is wrong)."""
        state = self.c.reconciler.desired()
        targets = state.targets
        local_of = self.lanes(state)
        kinds = set(local_of.values())
        if len(kinds) == 1:  # every adapter of the desired state is local, or none is: no target to look at
            return {name for name in names if name in targets} if kinds.pop() else set()
        found: set[str] = set()
        for name in names:
            target = targets.get(name)
            if target is not None and local_of.get(target.spec.source.adapter, False):
                found.add(name)
        return found

    def lanes(self, state: DesiredState) -> dict[str, bool]:
        """Whether each adapter of `state` takes the lane, found once per desired version: an adapter that cannot
        be built does not (its passes say what is wrong), and is tried again with the next version."""
        kept = self._lanes
        if kept is not None and kept[0] == state.version.digest:  # its digest, not the state: nothing kept alive
            return kept[1]
        lanes = {}
        for adapter in state.adapters:
            try:
                lanes[adapter] = bool(self.c.adapters(adapter).capabilities.local)
            except Exception:  # an adapter that cannot be built: its pass says what is wrong
                lanes[adapter] = False
        self._lanes = (state.version.digest, lanes)
        return lanes

    def schedule_next(self, name: str) -> None:
        """The next pass at its interval (a sooner one, if queued, stands)."""
        due = self.next_delay(name)
        if due is not None:
            self.queue.add(name, due)

    def next_delays(self, names: list[str]) -> dict[str, float | None]:
        """next_delay() of each of `names` (a batch of passes that ended together), at one reading of the clock;
        one by one if an interval cannot be scheduled, so that only its own target takes the default."""
        try:
            return self.scheduler.next_delays(names)
        except (ArithmeticError, ValueError):
            return {name: self.next_delay(name) for name in names}

    def next_delay(self, name: str) -> float | None:
        """When `name`'s next pass is due (None: it is no target any more); a target whose interval cannot be
        scheduled still gets its next pass, at the default interval, and the log says why."""
        try:
            return self.scheduler.next_delay(name)
        except (ArithmeticError, ValueError) as exc:
            log.error("interval cannot be scheduled; the default interval is used", target=name, error=str(exc))
            return self.c.settings.scheduler.default_interval_s
