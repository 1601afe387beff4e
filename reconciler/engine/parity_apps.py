"""The apps of a desired version as environment parity keeps them (engine/parity_watch.py): each app's targets,
its baseline and pairs, and the figures of each pair; and which apps a new version changed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.domain.manifest import Target
from reconciler.domain.pacing import Pause, paced
from reconciler.domain.state import DesiredState


@dataclass(frozen=True, slots=True)
class Figures:
    """What the series need of one pair's comparison: its leaf counts and the allowlist entries it used."""

    environment: str  # the other target's (not the baseline's)
    leaves: int
    differing: int  # unexpected differing leaves
    entries: tuple[tuple[str, int], ...]  # (allowlist entry id, leaves it covers, active or expired)


@dataclass
class Totals:
    """One environment's figures summed over its pairs, kept as pairs change (a pass costs its own pairs, not
    its app's: an app of 200 targets summed again on every pass was a tenth of a 100,000-target first cycle)."""

    leaves: int = 0
    differing: int = 0
    entries: Counter[str] = field(default_factory=Counter)

    def add(self, figures: Figures, sign: int) -> None:
        self.leaves += sign * figures.leaves
        self.differing += sign * figures.differing
        for entry_id, count in figures.entries:
            self.entries[entry_id] += sign * count


@dataclass
class App:
    targets: list[Target]
    baseline: str | None
    pairs: list[tuple[str, Target, Target]]
    environments: list[str]  # of its targets, in rank order
    diverged: bool = False
    results: dict[str, Figures] = field(default_factory=dict)  # by the other target's name
    totals: dict[str, Totals] = field(default_factory=dict)  # by environment
    differing_pairs: int = 0
    by_target: dict[str, list[tuple[str, Target, Target]]] = field(default_factory=dict)  # the pairs a target is in

    def __post_init__(self) -> None:
        for pair in self.pairs:
            for target in pair[1:]:
                self.by_target.setdefault(target.name, []).append(pair)

    def put(self, name: str, figures: Figures) -> None:
        """The figures of the pair whose other target is `name`, in place of its last ones."""
        totals = self.totals.setdefault(figures.environment, Totals())
        old = self.results.get(name)
        if old is not None:
            totals.add(old, -1)
            self.differing_pairs -= old.differing > 0
        totals.add(figures, 1)
        self.differing_pairs += figures.differing > 0
        self.results[name] = figures


def grouped(
    state: DesiredState, previous: DesiredState | None, apps: Mapping[str, App], pause: Pause | None
) -> tuple[dict[str, list[Target]], set[str] | None, bool]:
    """The apps whose targets are not the very objects they were in `previous` (a target came, went, changed, or
    moved to another app), or None when every app is to be looked at (no previous version, or other policies:
    baselines and the allowlist come from them); the targets of each of those apps (`apps`: `previous`'s); and
    whether a target went. The apps come from what changed (DesiredState.changes_from: the loader's record, or
    a comparison of objects per target when `state` was not loaded after `previous`); their targets come from
    what they were and what changed: at 100,000 targets, grouping every target by app and sorting each
    app's took 0.3 s of a 1% edit."""
    last, targets = (previous.targets if previous is not None else {}), state.targets
    if previous is None or previous.policy_digest != state.policy_digest:
        every: dict[str, list[Target]] = {}
        for target in paced(targets.values(), pause):
            if (app := target.metadata.app) is not None:
                every.setdefault(app, []).append(target)
        return every, None, any(name not in targets for name in last)
    changes = state.changes_from(previous, pause)
    replaced = [targets[n] for n in changes.replaced]  # came or changed
    gone = [last[n] for n in changes.removed]
    was = [old for t in replaced if (old := last.get(t.name)) is not None]
    moved = {app for t in (*replaced, *gone, *was) if (app := t.metadata.app) is not None}
    members: dict[str, dict[str, Target]] = {app: {} for app in moved}
    for app in moved:
        known = apps.get(app)
        for old in known.targets if known is not None else ():
            now = targets.get(old.name)
            if now is not None and now.metadata.app == app:
                members[app][old.name] = now
    for target in replaced:
        if (app := target.metadata.app) is not None:
            members[app][target.name] = target
    return {app: list(found.values()) for app, found in members.items()}, moved, bool(gone)


def same_objects(old: Sequence[Target], new: Sequence[Target]) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))
