"""The desired state: every target and policy of a folder, validated, merged and versioned."""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from reconciler.domain.manifest import Base, DesiredVersion, DriftClass, Target
from reconciler.domain.pacing import Pause, paced
from reconciler.domain.policy import Policy, PolicyException, Rule
from reconciler.domain.values import canonical_json, sha256_hex

KINDS: dict[str, type[Target] | type[Policy] | type[Base]] = {"Target": Target, "Base": Base, "Policy": Policy}


def wave_order(target: Target) -> tuple[int, str, str]:
    """Where a target goes in apply order (DesiredState.ordered_targets): wave, environment, name."""
    return target.wave, target.environment, target.name


@dataclass(frozen=True, slots=True)
class Changes:
    """What a desired state changed from the one it was loaded after (desired/loader.py), found by the loader's
    one walk of the targets, which keeps an unchanged target's very object. Each part of the daemon that takes a
    new version in (its changed targets, the watches, parity's apps) reads it instead of comparing every target's
    object with the last version's again: three walks of 100,000 targets, each 10-40 ms of a reload. Kept with
    its state: two sets of names (the strings are the targets' own), as large as the edit."""

    previous: weakref.ref[DesiredState]  # not the state itself: its targets are let go with it
    replaced: frozenset[str]  # targets that came or changed: not the very object they were
    removed: frozenset[str]  # targets that went

    @classmethod
    def of(cls, previous: DesiredState, targets: Mapping[str, Target], replaced: Collection[str]) -> Changes:
        """From `previous` to `targets`, of which `replaced` came or changed (are not the very objects they
        were)."""
        last = previous.targets
        came = sum(1 for name in replaced if name not in last)
        removed = frozenset(last.keys() - targets.keys()) if len(targets) - came < len(last) else frozenset()
        return cls(weakref.ref(previous), frozenset(replaced), removed)


@dataclass(frozen=True)
class DesiredState:
    """All targets and policies of a desired-state folder, validated and versioned."""

    root: Path
    version: DesiredVersion
    targets: dict[str, Target]
    policies: tuple[Policy, ...] = ()
    changes: Changes | None = field(default=None, compare=False, repr=False)

    def changed_since(self, previous: DesiredState | None) -> Changes | None:
        """What this state changed from `previous`, if it was loaded after that very state; else None."""
        changes = self.changes
        if previous is None or changes is None or changes.previous() is not previous:
            return None
        return changes

    def changes_from(self, previous: DesiredState, pause: Pause | None = None) -> Changes:
        """What this state changed from `previous`: the loader's record when it was loaded after that very state
        (changed_since), else found by comparing each target's object with `previous`'s, a walk of every target.
        `pause`: called every so often by that walk (domain/pacing.py)."""
        told = self.changed_since(previous)
        if told is not None:
            return told
        last = previous.targets
        replaced = [name for name, target in paced(self.targets.items(), pause) if last.get(name) is not target]
        return Changes.of(previous, self.targets, replaced)

    @cached_property
    def policy_digest(self) -> str:
        """The policies' identity: what every target's classes depend on besides its own manifest."""
        return "policies:" + sha256_hex(canonical_json([p.model_dump(mode="json") for p in self.policies]))

    @cached_property
    def adapters(self) -> frozenset[str]:
        """The adapters its targets read through, found once per desired version: a daemon's worker asks of
        every batch whether its targets' adapters stay on this host, and most fleets have only such targets,
        or none."""
        return frozenset(target.spec.source.adapter for target in self.targets.values())

    def default_class(self) -> DriftClass:
        """The policies' default class; escalate when no policy names one (the safe choice)."""
        for policy in self.policies:
            if policy.spec.default is not None:
                return policy.spec.default
        return DriftClass.ESCALATE

    def rules(self) -> list[tuple[str, int, Rule]]:
        return [(p.metadata.name, i, r) for p in self.policies for i, r in enumerate(p.spec.rules)]

    def exceptions(self) -> list[tuple[str, int, PolicyException]]:
        return [(p.metadata.name, i, e) for p in self.policies for i, e in enumerate(p.spec.exceptions)]

    def ordered_targets(self, names: list[str] | None = None) -> list[Target]:
        """Targets in wave order. Sort key: wave (the target's own, else its environment's rank), then
        environment, then name."""
        chosen = self.targets.values() if names is None else [self.targets[n] for n in names]
        return sorted(chosen, key=wave_order)
