"""Overlays: a target's spec deep-merged onto the chain of Bases it extends.

Maps merge key by key; any other value (lists included) in the child replaces the base's. `unset` removes a
key on purpose after that level's merge. ignore, secrets, environment_specific and normalize accumulate,
base first; list_keys merge like maps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reconciler.domain.compact import compact
from reconciler.domain.manifest import Base, Overlay, Target
from reconciler.domain.pacing import Pause, paced
from reconciler.domain.packed import Packed
from reconciler.domain.paths import MISSING, KeyPath, from_pointer, get_in, set_in

M = TypeVar("M", Target, Base)
Report = Callable[[Target | Base, str, str], None]  # (document, field, message)
_NO_BASE = Overlay()  # what a target that extends nothing (but unsets something) is merged onto


@dataclass
class Merged:
    """What the last good resolve merged, for the next one to reuse: a Base is merged again only when it, or
    what it extends, is another object now, and a target only when it or its Base's merge is (a file read
    again makes new objects; desired/files.py keeps the others). Only a load without problems commits, so a
    problem is never skipped for being remembered."""

    bases: dict[str, tuple[Base, Overlay | None, Overlay]] = field(default_factory=dict)  # (base, its parent, merged)
    targets: dict[str, tuple[Target, Overlay, Target]] = field(default_factory=dict)  # (target, its parent, merged)
    _bases: dict[str, tuple[Base, Overlay | None, Overlay]] = field(default_factory=dict)
    _targets: dict[str, tuple[Target, Overlay, Target]] = field(default_factory=dict)

    def commit(self, final: Mapping[str, Target]) -> None:
        """Keep the last resolve's merges for the next; `final`: the targets the state holds, which may be older
        objects that say the same."""
        self.bases, self._bases = self._bases, {}
        self.targets = {name: (raw, parent, final[name]) for name, (raw, parent, _) in self._targets.items()}
        self._targets = {}


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` merged onto `base`: new maps wherever the two meet, every other value shared, not copied.
    Copying everything cost each level of a chain of Bases the size of all the levels above it."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _owned(doc: dict[str, Any], path: KeyPath) -> None:
    """Give `doc` its own copy of every map along `path`, so that removing a key below them changes no base."""
    node = doc
    for segment in path:
        child = node.get(segment)
        if not isinstance(child, dict):
            return
        node[segment] = node = dict(child)


def _apply(base: Overlay, child: Overlay, owner: Target | Base, report: Report) -> dict[str, Any]:
    desired = deep_merge(base.desired, child.desired)
    for index, pointer in enumerate(child.unset):
        path = from_pointer(pointer)
        if get_in(desired, path) is MISSING:
            report(owner, f"spec.unset.{index}", f"{pointer} is not in the merged desired state")
        elif path:
            _owned(desired, path[:-1])
            set_in(desired, path, MISSING)
    return {
        "packed": Packed.of(desired),
        "unset": [],
        "ignore": [*base.ignore, *child.ignore],
        "secrets": [*base.secrets, *child.secrets],
        "list_keys": {**base.list_keys, **child.list_keys},
        "normalize": [*base.normalize, *child.normalize],
        "environment_specific": [*base.environment_specific, *child.environment_specific],
    }


def resolve(
    targets: dict[str, Target],
    bases: dict[str, Base],
    report: Report,
    memo: Merged | None = None,
    pause: Pause | None = None,
) -> dict[str, Target]:
    """Every target with its bases merged in; problems (missing base, cycle, bad unset) go to `report`. `memo`:
    the last good resolve's merges, reused where nothing they came from changed (commit it when this one was
    good). `pause`: called every so often (domain/pacing.py)."""
    memo = Merged() if memo is None else memo
    memo._bases, memo._targets = {}, {}
    merged_bases: dict[str, Overlay | None] = {}
    result: dict[str, Target] = {}
    for name, target in paced(targets.items(), pause):
        spec = target.spec
        if spec.extends is None and not spec.unset:
            result[name] = target
            continue
        parent = _merged(spec.extends, target, bases, merged_bases, report, memo) if spec.extends else _NO_BASE
        if parent is None:
            continue
        kept = memo.targets.get(name)
        if kept is not None and kept[0] is target and kept[1] is parent:
            result[name] = kept[2]
        else:
            result[name] = compact(target.with_spec(spec.model_copy(update=_apply(parent, spec, target, report))))
        memo._targets[name] = (target, parent, result[name])
    return result


def _merged(
    name: str,
    owner: Target | Base,
    bases: dict[str, Base],
    done: dict[str, Overlay | None],
    report: Report,
    memo: Merged,
) -> Overlay | None:
    """Base `name` with its own bases merged in (memoised in `done`; None when its chain is broken).

    Iterative: the chain is followed up to a root or a base already merged, then merged downwards, so a
    chain of thousands of Bases needs no deep stack."""
    chain: list[str] = []
    seen: set[str] = set()
    current, by = name, owner
    while current not in done:
        if current in seen:
            report(by, "spec.extends", "extends cycle: " + _shown([*chain, current]))
            _broken(chain, done)
            return None
        if current not in bases:
            known = ", ".join(sorted(bases)[:20]) or "none defined"
            report(by, "spec.extends", f"no Base named {current!r} (bases: {known})")
            _broken(chain, done)
            return None
        chain.append(current)
        seen.add(current)
        by = bases[current]
        if by.spec.extends is None:
            break
        current = by.spec.extends
    parent = done.get(current)  # what the top of the chain extends, when that was merged before
    for base_name in reversed(chain):
        base = bases[base_name]
        if base.spec.extends is not None and parent is None:
            done[base_name] = None
            continue
        kept = memo.bases.get(base_name)
        spec = kept[2] if kept is not None and kept[0] is base and kept[1] is parent else _own(base, parent, report)
        memo._bases[base_name] = (base, parent, spec)
        done[base_name] = parent = spec
    return done[name]


def _own(base: Base, parent: Overlay | None, report: Report) -> Overlay:
    """`base`'s spec merged onto `parent`, the merge of the Base it extends (None: it extends none)."""
    spec = base.spec
    if parent is not None:
        return spec.model_copy(update=_apply(parent, spec, base, report))
    if spec.unset:
        return spec.model_copy(update=_apply(Overlay(), spec, base, report))
    return spec


def _broken(chain: list[str], done: dict[str, Overlay | None]) -> None:
    for base_name in chain:
        done[base_name] = None


def _shown(names: list[str]) -> str:
    if len(names) > 12:
        names = [*names[:5], f"... {len(names) - 10} more ...", *names[-5:]]
    return " -> ".join(names)
