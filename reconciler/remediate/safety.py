"""Safety limits: how much one run, and one wave of it, may change (blast radius), and when to stop fixing a
path that another writer keeps changing (flapping). A run's limits, once reached, hold the rest of the run in
dry-run; a wave's hold the rest of that wave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.domain.drift import Classified
from reconciler.domain.manifest import DriftClass


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


@dataclass
class Budget:
    """What one run has written so far, against its limits. Once refused, the rest of the run is dry-run."""

    limits: Limits
    fleet: int  # targets in the desired state
    actions: int = 0
    targets: int = 0
    exhausted: str | None = None
    wave: int | None = None  # the wave being written, and what it has written
    wave_actions: int = 0
    wave_targets: int = 0

    def refuse(self, writes: int, wave: int = 0) -> str | None:
        """Why `writes` more writes to one more target of `wave` would pass a limit, or None if they fit."""
        if wave != self.wave:
            self.wave, self.wave_actions, self.wave_targets = wave, 0, 0
        if self.exhausted is None:
            limits = self.limits
            if self.wave_actions + writes > limits.max_actions_per_wave:
                return (
                    f"blast radius: wave {wave} made {self.wave_actions} writes, {writes} more would pass "
                    f"max_actions_per_wave {limits.max_actions_per_wave}"
                )
            if self.wave_targets + 1 > limits.max_targets_per_wave:
                return (
                    f"blast radius: wave {wave} wrote {self.wave_targets} targets, "
                    f"max_targets_per_wave {limits.max_targets_per_wave}"
                )
            if self.actions + writes > limits.max_actions_per_run:
                self.exhausted = (
                    f"blast radius: {self.actions} writes made, {writes} more would pass "
                    f"max_actions_per_run {limits.max_actions_per_run}"
                )
            elif self.targets + 1 > limits.max_targets_per_run:
                self.exhausted = (
                    f"blast radius: {self.targets} targets written, max_targets_per_run {limits.max_targets_per_run}"
                )
            elif (self.targets + 1) / max(self.fleet, 1) > limits.max_fleet_fraction:
                self.exhausted = (
                    f"blast radius: one more target would pass max_fleet_fraction {limits.max_fleet_fraction:g} "
                    f"of {self.fleet} targets"
                )
        return self.exhausted

    def spend(self, writes: int) -> None:
        self.actions += writes
        self.targets += 1
        self.wave_actions += writes
        self.wave_targets += 1


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
                f"flapping: fixed {len(times)} times in the last {limits.flap_window_s:g}s (at {history} UTC) and "
                "changed again each time; another writer is fighting reconciler, so a person must decide"
            )
            result.append(replace(c, class_=DriftClass.ESCALATE, reason=reason, decided_by="flapping"))
            flapped.append(c.item.pointer)
        else:
            result.append(c)
    return result, flapped
