"""The report of what runs where: every chosen target read live and compared as a dry-run pass would, each key
with its effective value (secrets as keyed hashes), the layer that won, whether it matches, and since when it
drifts; the exceptions in force; what history says of the last passes. Nothing is written or recorded."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.domain.drift import Classified
from reconciler.domain.inventory import ExceptionInForce, Inventory, KeyState, TargetHistory, TargetInventory
from reconciler.domain.manifest import Target, reference_paths
from reconciler.domain.paths import MISSING, KeyPath, any_match, get_in, leaf_paths, to_pointer
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.domain.values import Redacted
from reconciler.engine.assess import Assessment, Assessor
from reconciler.errors import ReconcilerError
from reconciler.ports import Adapter

History = Callable[[str, Collection[str]], TargetHistory]  # a target's history, given its drifting pointers


def chosen(state: DesiredState, environments: Sequence[str], apps: Sequence[str]) -> list[Target]:
    """The targets of the given environments and apps (globs; none given: all), by app, environment, name."""

    def wanted(value: str, patterns: Sequence[str]) -> bool:
        return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)

    found = [
        t
        for t in state.targets.values()
        if wanted(t.environment, environments) and wanted(t.metadata.app or t.name, apps)
    ]
    return sorted(found, key=lambda t: (t.metadata.app or t.name, t.environment, t.name))


def build(
    state: DesiredState,
    targets: Sequence[Target],
    adapters: Callable[[str], Adapter],
    history: History,
    *,
    hmac_key: bytes,
    secret_file_roots: Sequence[Path],
    now: datetime,
) -> Inventory:
    assessor = Assessor(hmac_key, secret_file_roots)
    reports = [_target(state, t, adapters, history, assessor, hmac_key, now) for t in targets]
    v = state.version
    return Inventory(now, v.digest, v.git_commit, v.git_dirty, tuple(reports))


def _target(
    state: DesiredState,
    target: Target,
    adapters: Callable[[str], Adapter],
    history: History,
    assessor: Assessor,
    key: bytes,
    now: datetime,
) -> TargetInventory:
    in_force = _exceptions(state, target, now)
    app = target.metadata.app or target.name
    try:
        assessment = assessor.assess(state, target, adapters(target.spec.source.adapter), Mode.DRY_RUN, now)
    except ReconcilerError as exc:
        past = history(target.name, ())
        return TargetInventory(
            target.name, app, target.environment, None, (), in_force, *past[:4], error=str(exc).splitlines()[0]
        )
    drift = {c.item.pointer: c for c in assessment.classified}
    past = history(target.name, list(drift))
    keys = tuple(_keys(target, assessment, drift, past, key))
    return TargetInventory(
        target.name, app, target.environment, assessment.observed.location, keys, in_force, *past[:4]
    )


def _keys(
    target: Target, assessment: Assessment, drift: dict[str, Classified], past: TargetHistory, key: bytes
) -> Iterator[KeyState]:
    desired = assessment.desired if assessment.desired is not None else target.spec.desired
    live = assessment.observed.document
    layers = assessment.observed.layers or {}
    refs = set(reference_paths(target.spec.desired))
    paths = sorted({*leaf_paths(desired), *leaf_paths(live)} | {c.item.path for c in drift.values()})
    for path in paths:
        if any_match(target.spec.ignore, path):
            continue
        pointer = to_pointer(path)
        found = _covering(drift, path)
        secret = path in refs or any_match(target.spec.secrets, path) or (found is not None and found.item.secret)
        holders = layers.get(pointer)
        yield KeyState(
            pointer=pointer,
            live=_masked(get_in(live, path), secret, key),
            desired=_masked(get_in(desired, path), secret, key),
            matches=found is None,
            secret=secret,
            layer=holders[-1][0] if holders else None,
            drift_class=found.class_.value if found else None,
            decided_by=found.decided_by if found else None,
            drifting_since=past.drifting_since.get(found.item.pointer) if found else None,
        )


def _covering(drift: dict[str, Classified], path: KeyPath) -> Classified | None:
    """The drift at `path` or at a parent of it (a list compared whole, a type change of a map)."""
    for n in range(len(path), -1, -1):
        found = drift.get(to_pointer(path[:n]))
        if found is not None:
            return found
    return None


def _masked(value: Any, secret: bool, key: bytes) -> Any:
    if not secret or value is MISSING or isinstance(value, Redacted):
        return value
    return Redacted.of(value, key)


def _exceptions(state: DesiredState, target: Target, now: datetime) -> tuple[ExceptionInForce, ...]:
    return tuple(
        ExceptionInForce(
            f"{policy}/{index}", tuple(str(p) for p in exc.paths), exc.owner, exc.reason, exc.expires, exc.ticket
        )
        for policy, index, exc in state.exceptions()
        if exc.expires > now and any(fnmatch.fnmatchcase(target.name, p) for p in exc.targets)
    )
