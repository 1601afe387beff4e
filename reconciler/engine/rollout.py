"""Progressive rollout in the daemon: a desired version's writes go in waves (environment rank, or a target's
own `wave`); a later wave is written only when every target of the earlier ones has nothing left to write
under the version and the bake time has passed since their last verified write. A failed or rolled-back
write holds every later wave until an operator releases the version or a new version replaces it.

Progress lives in the history database, so every replica sees the same rollout; each replica reads it at most
every `check_s` seconds, and only while it has a write to gate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.domain.manifest import Target
from reconciler.domain.rollout import Hold, Progress, TargetProgress, WaveState
from reconciler.domain.state import DesiredState
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.observe.notify import Event, EventKind
from reconciler.ports import Clock, RolloutStore

log = logs.get_logger("reconciler.rollout")
SETTLED = (Progress.DONE, Progress.RELEASED)


@dataclass(frozen=True, slots=True)
class _View:
    """One read of a version's rollout: why each wave may not be written yet (absent: it may), and whether
    the rollout is complete (every wave has opened: later drift is fixed without waves)."""

    at: datetime
    closed: dict[int, str]
    complete: bool


class Rollout:
    """Decides whether a target's wave may be written under a desired version, and records its progress."""

    def __init__(
        self,
        store: RolloutStore,
        clock: Clock,
        metrics: Metrics,
        notify: Callable[[Event], None],
        *,
        bake_s: float = 300.0,
        check_s: float = 5.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.notify = notify
        self.bake = timedelta(seconds=bake_s)
        self.check = timedelta(seconds=check_s)
        self._views: dict[str, _View] = {}
        self._recorded: dict[tuple[str, str], Progress] = {}  # what this process last wrote, to write changes only
        self._current: str | None = None  # the version whose rollout this process follows
        self._lock = threading.Lock()

    def _begin(self, state: DesiredState) -> None:
        """`state`'s version is in force here now: its rollout starts, unless it is the one already going on
        (another replica started it, or this daemon restarted). The lock is held."""
        version = state.version.digest
        if self.store.begin(version, self.clock.now()):
            log.info("rollout started", version=version[:12], waves=len({t.wave for t in state.targets.values()}))
        self._views.pop(version, None)
        self._recorded = {k: v for k, v in self._recorded.items() if k[0] != version}
        self._current = version

    def hold(self, state: DesiredState, target: Target) -> str | None:
        """Why `target`'s wave may not be written yet under `state`'s version, or None."""
        return self.view(state).closed.get(target.wave)

    def view(self, state: DesiredState, *, follow: bool = True) -> _View:
        """The rollout of `state`'s version as last read (at most `check_s` ago); a rollout whose waves have all
        opened is marked complete, once, and never read again. A version this process has not followed yet
        starts its rollout first (`follow`; an operator's look from the CLI never does)."""
        now = self.clock.now()
        version = state.version.digest
        with self._lock:
            if follow and version != self._current:
                self._begin(state)
            view = self._views.get(version)
            if view is None or (not view.complete and now - view.at >= self.check):
                view = self._read(state, now)
                self._views = {version: view}  # one version in force at a time
        return view

    def _read(self, state: DesiredState, now: datetime) -> _View:
        version = state.version.digest
        if self.store.completed(version):
            self.metrics.waves_held.set(0)
            return _View(now, {}, True)
        closed = self.waves(state, now)
        if closed:
            return _View(now, closed, False)
        self.store.complete(version, now)
        log.info("rollout complete: every wave is open", version=version[:12])
        return _View(now, {}, True)

    def waves(self, state: DesiredState, now: datetime) -> dict[int, str]:
        """Every wave of `state` that may not be written now, with why."""
        version = state.version.digest
        hold = self.store.hold(version)
        self.metrics.waves_held.set(1 if hold is not None else 0)
        progress = {p.target: p for p in self.store.progress(version)}
        closed: dict[int, str] = {}
        waiting: list[str] = []  # targets of the waves passed so far with something left to write
        last: datetime | None = None  # the last verified write in the waves passed so far
        targets = sorted(state.targets.values(), key=lambda t: (t.wave, t.name))
        for i, target in enumerate(targets):
            if i and target.wave != targets[i - 1].wave:
                why = _closed(version, target.wave, hold, waiting, last, self.bake, now)
                if why is not None:
                    closed[target.wave] = why
            found = progress.get(target.name)
            if found is None or found.state not in SETTLED:
                waiting.append(target.name)
            elif found.at is not None and (last is None or found.at > last):
                last = found.at
        return closed

    def record(
        self, state: DesiredState, target: Target, progress: Progress, *, wrote: bool = False, error: str | None = None
    ) -> None:
        """Record where `target` is in the rollout of `state`'s version (`wrote`: it was just written, which
        starts the bake time again); a failure holds the later waves. Only changes reach the database, and
        nothing once the rollout is complete."""
        version = state.version.digest
        key = (version, target.name)
        if self._recorded.get(key) is progress and not wrote and progress is not Progress.FAILED:
            return
        if self.view(state).complete:
            return
        now = self.clock.now()
        at = now if (wrote or progress is Progress.FAILED) else None
        self.store.mark(version, [TargetProgress(target.name, target.wave, progress, at, error)])
        self._recorded[key] = progress
        if len(self._recorded) > 4 * max(len(state.targets), 1):
            self._recorded = {k: v for k, v in self._recorded.items() if k[0] == version}
        if progress is Progress.FAILED:
            with self._lock:
                self._views.pop(version, None)  # the later waves are held from the next write on
            self._hold(state, target, error or "write failed", now)

    def _hold(self, state: DesiredState, target: Target, error: str, now: datetime) -> None:
        version = state.version.digest
        reason = f"{target.name} ({target.environment}, wave {target.wave}) failed: {error}"
        if not self.store.set_hold(Hold(version, target.wave, reason, now)):
            return
        self.metrics.waves_held.set(1)
        self.metrics.rollout_holds.labels(target.environment).inc()
        log.error("rollout held: later waves run dry-run until released", version=version[:12], reason=reason)
        self.notify(
            Event(
                EventKind.WAVE_HELD,
                f"rollout:{version}",
                f"rollout of {version[:12]} held after wave {target.wave}: {target.name} failed",
                {"version": version, "wave": target.wave, "target": target.name, "environment": target.environment},
            )
        )

    def release(self, state: DesiredState, version: str, actor: str, reason: str) -> int:
        """Lift a version's hold and count the targets of its earliest unsettled wave (failed, pending, never
        passed) as released, so that they no longer hold the next wave; how many were released."""
        targets = [(t.name, t.wave) for t in state.targets.values()]
        released = self.store.release(version, targets, actor, reason, self.clock.now())
        with self._lock:
            self._views.pop(version, None)
        self.metrics.waves_held.set(0)
        log.warning("rollout released", version=version[:12], actor=actor, reason=reason, targets=released)
        return released

    def status(self, state: DesiredState) -> list[WaveState]:
        """Each wave of `state`'s version: its targets by progress, and why it is not open yet."""
        closed = self.view(state, follow=False).closed
        progress = {p.target: p.state for p in self.store.progress(state.version.digest)}
        by_wave: dict[int, list[Progress | None]] = {}
        for target in state.targets.values():
            by_wave.setdefault(target.wave, []).append(progress.get(target.name))
        return [
            WaveState(
                wave,
                len(found),
                sum(1 for p in found if p in SETTLED),
                sum(1 for p in found if p is Progress.PENDING),
                sum(1 for p in found if p is Progress.FAILED),
                wave not in closed,
                closed.get(wave),
            )
            for wave, found in sorted(by_wave.items())
        ]


def _closed(
    version: str,
    wave: int,
    hold: Hold | None,
    waiting: list[str],
    last: datetime | None,
    bake: timedelta,
    now: datetime,
) -> str | None:
    """Why `wave` may not be written, given the waves before it, or None."""
    if hold is not None and wave > hold.wave:
        return f"wave held: {hold.reason} (`reconciler rollout release {version[:12]}` releases it)"
    if waiting:
        return (
            f"wave {wave} waits: {len(waiting)} target(s) of earlier waves not yet verified under version "
            f"{version[:12]} ({', '.join(waiting[:3])}{', …' if len(waiting) > 3 else ''})"
        )
    if last is not None and now < last + bake:
        return (
            f"wave {wave} bakes until {last + bake:%Y-%m-%d %H:%M:%S} UTC (earlier waves last written {last:%H:%M:%S})"
        )
    return None
