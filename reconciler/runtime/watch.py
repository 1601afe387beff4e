"""Watches: adapters that can see live changes wake their targets at once instead of at the next interval.

One thread per watching adapter runs its watch over all of that adapter's targets. A change queues the
target after a short debounce, so a burst of changes is one pass (the queue keeps one entry per target). A
watch that breaks is re-established with exponential backoff and jitter; the interval keeps every target
reconciled meanwhile. Once a watch is established its targets are queued once, since a change made between
their last pass and that moment reached no watch. When the desired state changes which targets an adapter
watches, its watch restarts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from reconciler.domain.manifest import Target
from reconciler.domain.pacing import Pause, paced
from reconciler.domain.state import Changes, DesiredState
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.ports import Watcher
from reconciler.runtime.queue import WorkQueue

log = logs.get_logger("reconciler.watch")


@dataclass
class _Running:
    covered: dict[str, Target]  # every target watched, by name: the watch restarts when one's source changes
    stop: threading.Event
    thread: threading.Thread


@dataclass
class WatchSupervisor:
    """Keeps one watch per watching adapter running, for the targets of the current desired state."""

    queue: WorkQueue
    watcher: Callable[[str], Watcher | None]  # adapter name -> its watcher, None when it cannot watch
    metrics: Metrics
    debounce_s: float = 0.1
    backoff_max_s: float = 60.0
    _running: dict[str, _Running] = field(default_factory=dict)
    _changed_at: dict[str, float] = field(default_factory=dict)  # target -> when a watch first saw a change
    _adapter_of: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _held: frozenset[str] | None = None  # a replica's leased targets: the only ones it watches; None: all
    _state: DesiredState | None = None

    def hold(self, names: set[str]) -> None:
        """Watch only `names` of the desired state (a replica's leased targets): each replica watched every
        target, kept its files' layout, and was woken by every change of every file, to drop all but a third of
        them."""
        self._held = frozenset(names)
        if self._state is not None:
            self.sync(self._state)

    def sync(self, state: DesiredState, pause: Pause | None = None) -> None:
        """Start, restart or stop watches so that they cover exactly the watchable targets of `state` (of those
        held, in a replica). `pause`: called every so often (domain/pacing.py)."""
        changes = state.changed_since(self._state)
        if changes is not None and self._carry(state, changes, pause):
            self._state = state
            return
        self._state = state
        held = self._held
        wanted: dict[str, list[Target]] = {}
        watching: dict[str, bool] = {}  # adapter -> whether it watches, asked once per adapter, not per target
        for target in paced(state.targets.values(), pause):
            if held is not None and target.name not in held:
                continue
            adapter = target.spec.source.adapter
            if (watches := watching.get(adapter)) is None:
                watches = watching[adapter] = self.watcher(adapter) is not None
            if watches:
                wanted.setdefault(adapter, []).append(target)
        for adapter in sorted(set(self._running) - set(wanted)):
            self._stop(adapter)
        for adapter, targets in sorted(wanted.items()):
            running = self._running.get(adapter)
            if running is not None and _carries_over(running.covered, targets, pause):
                continue
            if running is not None:
                self._stop(adapter)
            self._start(adapter, targets)

    def _carry(self, state: DesiredState, changes: Changes, pause: Pause | None = None) -> bool:
        """Whether every watch carries over to `state` from the state last synced, judged from the targets that
        came, changed or went alone (`changes`, the loader's): none of them starts, stops or moves a watch, or
        changes what a watch is given of a target it covers (its source's options). If so, each watch now covers
        the new objects. The others are the very objects they were: no walk of every target (sync)."""
        assert self._state is not None  # `changes` are relative to it
        last, held = self._state.targets, self._held
        if any(name in running.covered for name in changes.removed for running in self._running.values()):
            return False
        carried: list[tuple[dict[str, Target], Target]] = []
        watching: dict[str, bool] = {}  # adapter -> whether it watches, asked once per adapter (sync)
        for name in paced(changes.replaced, pause):
            old, new = last.get(name), state.targets[name]
            adapter = new.spec.source.adapter
            if old is not None and old.spec.source.adapter != adapter:
                return False
            mine = held is None or name in held
            running = self._running.get(adapter)
            if running is None:  # unless its adapter cannot watch or it is another replica's, a watch must start
                if mine and adapter not in watching:
                    watching[adapter] = self.watcher(adapter) is not None
                if mine and watching[adapter]:
                    return False
                continue
            covered = running.covered.get(name)
            if covered is None:
                if mine:  # a target a running watch is to cover
                    return False
                continue
            if _options(covered) != _options(new):
                return False
            carried.append((running.covered, new))
        for watched, target in carried:
            watched[target.name] = target
        return True

    def covered(self) -> dict[str, int]:
        """Adapter -> how many targets its watch covers (the watches asked for; see reconciler_watches for
        whether each is up right now)."""
        return {adapter: len(running.covered) for adapter, running in sorted(self._running.items())}

    def stop(self) -> None:
        for adapter in list(self._running):
            self._stop(adapter)

    def _start(self, adapter: str, targets: Sequence[Target]) -> None:
        stop = threading.Event()
        with self._lock:
            for target in targets:
                self._adapter_of[target.name] = adapter
        thread = threading.Thread(
            target=self._run, args=(adapter, list(targets), stop), name=f"watch-{adapter}", daemon=True
        )
        self._running[adapter] = _Running({t.name: t for t in targets}, stop, thread)
        thread.start()
        log.info("watch started", adapter=adapter, targets=len(targets))

    def _stop(self, adapter: str) -> None:
        running = self._running.pop(adapter)
        with self._lock:
            for name in running.covered:  # a target that moved to another adapter, started before, stays its
                if self._adapter_of.get(name) == adapter:
                    del self._adapter_of[name]
        running.stop.set()
        running.thread.join(10)
        self.metrics.watches.labels(adapter).set(0)

    def _run(self, adapter: str, targets: list[Target], stop: threading.Event) -> None:
        watcher = self.watcher(adapter)
        assert watcher is not None
        failures = 0
        names = {t.name for t in targets}

        def changed(name: str) -> None:
            if name not in names:
                return
            with self._lock:
                self._changed_at.setdefault(name, time.monotonic())
            self.metrics.watch_events.labels(adapter).inc()
            self.queue.add(name, self.debounce_s)

        def ready() -> None:
            # From now on no change is missed; one that came between a target's last pass and this moment
            # would be, so every target is looked at once (the queue merges this with a pass already due).
            self.metrics.watches.labels(adapter).set(len(targets))
            log.info("watch established", adapter=adapter, targets=len(targets))
            for target in targets:
                self.queue.add(target.name, self.debounce_s)

        while not stop.is_set():
            started = time.monotonic()
            try:
                watcher.watch(targets, changed, ready, stop)
                if stop.is_set():
                    return
                error = "the watch ended"
            except Exception as exc:  # any failure of a watch: re-establish it, never take the daemon down
                error = f"{type(exc).__name__}: {exc}"
            self.metrics.watches.labels(adapter).set(0)
            self.metrics.watch_errors.labels(adapter).inc()
            failures = 1 if time.monotonic() - started > self.backoff_max_s else failures + 1
            delay = min(2 ** (failures - 1), self.backoff_max_s) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
            log.warning("watch broke; re-establishing", adapter=adapter, error=error, retry_in_s=round(delay, 2))
            # Whatever changed while the watch was down is found by a pass: queue the targets once.
            for target in targets:
                self.queue.add(target.name, delay)
            stop.wait(delay)

    def pass_done(self, target: str, started: float) -> None:
        """A pass of `target` that began at `started` (time.monotonic) ended: if a watch saw a change before it
        began, observe the time from that change to now. A change seen during the pass waits for the next."""
        self.passes_done((target,), started)

    def not_ours(self, targets: Iterable[str]) -> None:
        """Forget the changes seen of targets another replica holds: their passes, and latencies, are its own."""
        with self._lock:
            for target in targets:
                self._changed_at.pop(target, None)

    def passes_done(self, targets: Iterable[str], started: float) -> None:
        """pass_done() for passes that began together (a batch), under one lock."""
        seen: list[tuple[str, float]] = []
        with self._lock:
            if not self._changed_at:
                return
            for target in targets:
                at = self._changed_at.get(target)
                if at is None or at > started:
                    continue
                del self._changed_at[target]
                adapter = self._adapter_of.get(target)
                if adapter is not None:
                    seen.append((adapter, at))
        now = time.monotonic()
        for adapter, at in seen:
            self.metrics.detection_latency.labels(adapter).observe(now - at)


def _carries_over(covered: dict[str, Target], targets: Sequence[Target], pause: Pause | None = None) -> bool:
    """Whether a watch over `covered` covers exactly `targets` (the same names, each with the same source options);
    if so, `covered` now holds `targets`' objects, and lets the replaced ones go. A target the desired state kept is
    the very object (desired/loader.py), so after an edit only the targets it changed are compared: a digest of
    every target's options took 0.5 s of a reload at 100,000 targets. When not, the watch is started again over
    `targets` and `covered` is dropped."""
    if len(covered) != len(targets):
        return False
    for target in paced(targets, pause):
        old = covered.get(target.name)
        if old is target:
            continue
        if old is None or _options(old) != _options(target):
            return False
        covered[target.name] = target
    return True


def _options(target: Target) -> str:
    return repr(sorted(target.spec.source.options().items()))  # repr: 1, 1.0 and True are different options
