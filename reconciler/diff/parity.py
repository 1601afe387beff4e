"""Environment parity: does staging match production? Pairwise and batch comparison of an app's targets.

Left out of every pair: both targets' ignore globs, secrets (and `${...}` references) and
environment_specific paths. Differences an active `expected_differences` entry covers are shown as
expected and do not count; an expired entry counts again. The drift percentage of a pair is DESIGN.md's:
differing leaf paths (unexpected ones) over the union of leaf paths after the left-out paths, times 100.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any

from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.normalize import normalize
from reconciler.domain.drift import DriftItem
from reconciler.domain.manifest import DriftOp, Target, environment_rank, reference_paths
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, any_match, to_pointer
from reconciler.domain.policy import ExpectedDifference
from reconciler.domain.state import DesiredState


@dataclass(frozen=True, slots=True)
class ParityItem:
    """One key that differs between the two environments of a pair."""

    path: KeyPath
    kind: str  # "differs", "type differs", "only in <a>", "only in <b>"
    a: Any  # MISSING when only in b
    b: Any  # MISSING when only in a
    expected: bool
    note: str = ""  # the allowlist entry's reason (or that it has expired)

    @property
    def pointer(self) -> str:
        return to_pointer(self.path)


@dataclass
class PairResult:
    """One app in two environments."""

    app: str
    a: Target
    b: Target
    items: list[ParityItem] = field(default_factory=list)
    leaves: int = 0
    differing: int = 0  # unexpected differing leaf paths
    threshold: float = 0.1

    @property
    def drift_percent(self) -> float:
        return 0.0 if self.leaves == 0 else self.differing * 100.0 / self.leaves

    @property
    def significant(self) -> bool:
        return self.drift_percent / 100.0 > self.threshold

    @property
    def unexpected(self) -> list[ParityItem]:
        return [i for i in self.items if not i.expected]


def pairs(
    state: DesiredState, environments: Sequence[str], apps: Sequence[str] = ()
) -> list[tuple[str, Target, Target]]:
    """(app, lower-ranked target, higher-ranked target) for every pair of the given environments, per app."""
    wanted = set(environments)
    by_app: dict[str, list[Target]] = {}
    for target in state.ordered_targets():
        app = target.metadata.app
        if app is None or target.environment not in wanted:
            continue
        if apps and not any(fnmatch.fnmatchcase(app, p) for p in apps):
            continue
        by_app.setdefault(app, []).append(target)
    result = []
    for app in sorted(by_app):
        ranked = sorted(by_app[app], key=lambda t: (environment_rank(t.environment), t.environment, t.name))
        result += [(app, a, b) for a, b in combinations(ranked, 2) if a.environment != b.environment]
    return result


def compare_pair(
    app: str,
    a: Target,
    a_doc: Mapping[str, Any],
    b: Target,
    b_doc: Mapping[str, Any],
    expected: Sequence[ExpectedDifference],
    *,
    now: datetime,
    threshold: float = 0.1,
) -> PairResult:
    """Compare one app's documents in two environments."""
    left_out = tuple(
        [*a.spec.ignore, *b.spec.ignore, *a.spec.secrets, *b.spec.secrets]
        + [*a.spec.environment_specific, *b.spec.environment_specific]
        + [PathGlob.parse(to_pointer(p)) for t in (a, b) for p in reference_paths(t.spec.desired)]
    )
    rules = [*a.spec.normalize, *b.spec.normalize]
    options = CompareOptions(ignore=left_out, list_keys={**a.list_keys(), **b.list_keys()})
    comparison = compare(normalize(dict(a_doc), rules), normalize(dict(b_doc), rules), options)
    entries = [
        e
        for e in expected
        if any(fnmatch.fnmatchcase(app, p) for p in e.apps)
        and (not e.environments or {a.environment, b.environment} <= set(e.environments))
    ]
    result = PairResult(app, a, b, leaves=comparison.leaves, threshold=threshold)
    for item in comparison.items:
        covering = [e for e in entries if any_match(e.paths, item.path)]
        active = [e for e in covering if e.expires > now]
        if active:
            note, is_expected = (
                f"{active[0].reason} (owner {active[0].owner}, until {active[0].expires:%Y-%m-%d})",
                True,
            )
        elif covering:
            note, is_expected = f"allowlist entry expired {_when(covering[0].expires)}: {covering[0].reason}", False
        else:
            note, is_expected = "", False
        result.items.append(ParityItem(item.path, _kind(item, a, b), item.desired, item.observed, is_expected, note))
        if not is_expected:
            result.differing += _leaves(item)
    return result


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _kind(item: DriftItem, a: Target, b: Target) -> str:
    if item.op is DriftOp.ADD:
        return f"only in {b.environment}"
    if item.op is DriftOp.REMOVE:
        return f"only in {a.environment}"
    return "differs" if item.op is DriftOp.CHANGE else "type differs"


def _leaves(item: DriftItem) -> int:
    def count(value: Any) -> int:
        if value is MISSING:
            return 0
        if type(value) is not dict or not value:
            return 1
        return sum(count(v) for v in value.values())

    if type(item.desired) is dict or type(item.observed) is dict:
        return count(item.desired) + count(item.observed)
    return 1


def compare_environments(
    state: DesiredState,
    environments: Sequence[str],
    *,
    documents: Mapping[str, Mapping[str, Any]] | None = None,
    apps: Sequence[str] = (),
    threshold: float = 0.1,
    now: datetime,
) -> list[PairResult]:
    """Every pair of `environments` for every app (or the `apps` given), on `documents` by target name
    (live documents, say) or on the desired state when None. A pair whose document is missing from
    `documents` (its target could not be read) is left out."""
    expected = [e for policy in state.policies for e in policy.spec.expected_differences]
    results = []
    for app, a, b in pairs(state, environments, apps):
        a_doc: Mapping[str, Any]
        b_doc: Mapping[str, Any]
        if documents is None:
            a_doc, b_doc = a.spec.desired, b.spec.desired
        elif a.name in documents and b.name in documents:
            a_doc, b_doc = documents[a.name], documents[b.name]
        else:
            continue
        results.append(compare_pair(app, a, a_doc, b, b_doc, expected, now=now, threshold=threshold))
    return results
