"""Safety limits: how much one run, one wave of it, or a rolling window of passes may change (blast radius),
and when to stop fixing a path that another writer keeps changing (flapping). A run's limits, once reached,
hold the rest of the run in dry-run; a wave's hold the rest of that wave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.domain.drift import Classified
from reconciler.domain.manifest import DriftClass
from reconciler.domain.window import Spend


@dataclass(frozen=True, slots=True)
class Limits:
    """Defaults match the settings' (RECONCILER_SAFETY__*)."""

    max_actions_per_run: int = 1000
    max_targets_per_run: int = 100
    max_actions_per_wave: int = 1000
    max_targets_per_wave: int = 100
    max_fleet_fraction: float = 1.0
    flap_threshold: int = 3
    flap_window_s: float = 3600.0
    window_s: float = 600.0  # the daemon's rolling window, over which the per-run limits hold across passes


def over(limits: Limits, spent: Spend, writes: int, wave: int, fleet: int, scope: str = "") -> tuple[str, bool] | None:
    """Why `writes` more writes to one target of `wave` would pass a limit, given what is `spent` (in a run, or
    in the window `scope` names), and whether the limit is a wave's (False) or the whole scope's (True)."""
    more = 0 if spent.counted else 1
    if spent.wave_actions + writes > limits.max_actions_per_wave:
        why = f"wave {wave} made {spent.wave_actions} writes{scope}, {writes} more would pass max_actions_per_wave"
        return f"blast radius: {why} {limits.max_actions_per_wave}", False
    if spent.wave_targets + more > limits.max_targets_per_wave:
        why = f"wave {wave} wrote {spent.wave_targets} targets{scope}, max_targets_per_wave"
        return f"blast radius: {why} {limits.max_targets_per_wave}", False
    if spent.actions + writes > limits.max_actions_per_run:
        why = f"{spent.actions} writes made{scope}, {writes} more would pass max_actions_per_run"
        return f"blast radius: {why} {limits.max_actions_per_run}", True
    if spent.targets + more > limits.max_targets_per_run:
        why = f"{spent.targets} targets written{scope}, max_targets_per_run {limits.max_targets_per_run}"
        return f"blast radius: {why}", True
    if (spent.targets + more) / max(fleet, 1) > limits.max_fleet_fraction:
        why = f"one more target would pass max_fleet_fraction {limits.max_fleet_fraction:g} of {fleet} targets{scope}"
        return f"blast radius: {why}", True
    return None


@dataclass
class Budget:
    """What one run has written so far, against its limits. Once refused, the rest of the run is dry-run;
    a wave's limit holds the rest of that wave. A failed wave stops every later wave of the run."""

    limits: Limits
    fleet: int  # targets in the desired state
    actions: int = 0
    targets: int = 0
    exhausted: str | None = None
    wave: int | None = None  # the wave being written, and what it has written
    wave_actions: int = 0
    wave_targets: int = 0
    stopped: tuple[int, str] | None = None  # the failed wave's rank, and why

    def refuse(self, writes: int, wave: int = 0) -> str | None:
        """Why `writes` more writes to one more target of `wave` would pass a limit, or None if they fit."""
        if wave != self.wave:
            self.wave, self.wave_actions, self.wave_targets = wave, 0, 0
        if self.exhausted is None:
            spent = Spend(self.actions, self.targets, self.wave_actions, self.wave_targets)
            found = over(self.limits, spent, writes, wave, self.fleet)
            if found is not None:
                why, whole = found
                if not whole:
                    return why
                self.exhausted = why
        return self.exhausted

    def spend(self, writes: int) -> None:
        self.actions += writes
        self.targets += 1
        self.wave_actions += writes
        self.wave_targets += 1

    def stop_after(self, wave: int, why: str) -> None:
        """A write of `wave` failed: every later wave of the run runs dry-run."""
        if self.stopped is None:
            self.stopped = (wave, why)

    def stop(self, wave: int) -> str | None:
        """Why `wave` may not write because an earlier wave of this run failed, or None."""
        if self.stopped is not None and wave > self.stopped[0]:
            return self.stopped[1]
        return None


def flapping(
    classified: Sequence[Classified], fixes: Mapping[str, Sequence[datetime]], limits: Limits
) -> tuple[list[Classified], list[str]]:
    """Reversible drift already fixed flap_threshold times within the window becomes an escalation that
    carries the history of the fight; returns the new list and the pointers that flap."""
    result: list[Classified] = []
    flapped: list[str] = []
    for c in classified:
        times = sorted(fixes.get(c.item.pointer, ()))
        if c.class_ is DriftClass.REVERSIBLE and len(times) >= limits.flap_threshold:
            history = ", ".join(f"{t:%H:%M:%S}" for t in times[-5:])
            reason = (
                f"flapping: written {len(times)} times in the last {limits.flap_window_s:g}s (at {history} UTC) and "
                "changed again each time; another writer is fighting reconciler, so a person must decide"
            )
            result.append(replace(c, class_=DriftClass.ESCALATE, reason=reason, decided_by="flapping"))
            flapped.append(c.item.pointer)
        else:
            result.append(c)
    return result, flapped
