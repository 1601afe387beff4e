"""Overlays: a target's spec deep-merged onto the chain of Bases it extends.

Maps merge key by key; any other value (lists included) in the child replaces the base's. `unset` removes a
key on purpose after that level's merge. ignore, secrets, environment_specific and normalize accumulate,
base first; list_keys merge like maps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from reconciler.domain.manifest import Base, Overlay, Target
from reconciler.domain.paths import MISSING, from_pointer, get_in, set_in

M = TypeVar("M", Target, Base)
Report = Callable[[Target | Base, str, str], None]  # (document, field, message)


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _apply(base: Overlay, child: Overlay, owner: Target | Base, report: Report) -> dict[str, Any]:
    desired = deep_merge(base.desired, child.desired)
    for index, pointer in enumerate(child.unset):
        path = from_pointer(pointer)
        if get_in(desired, path) is MISSING:
            report(owner, f"spec.unset.{index}", f"{pointer} is not in the merged desired state")
        elif path:
            set_in(desired, path, MISSING)
    return {
        "desired": desired,
        "unset": [],
        "ignore": [*base.ignore, *child.ignore],
        "secrets": [*base.secrets, *child.secrets],
        "list_keys": {**base.list_keys, **child.list_keys},
        "normalize": [*base.normalize, *child.normalize],
        "environment_specific": [*base.environment_specific, *child.environment_specific],
    }


def resolve(targets: dict[str, Target], bases: dict[str, Base], report: Report) -> dict[str, Target]:
    """Every target with its bases merged in; problems (missing base, cycle, bad unset) go to `report`."""
    merged_bases: dict[str, Overlay | None] = {}

    def merged(name: str, trail: tuple[str, ...], owner: Target | Base) -> Overlay | None:
        if name in trail:
            report(owner, "spec.extends", "extends cycle: " + " -> ".join((*trail, name)))
            return None
        if name not in bases:
            known = ", ".join(sorted(bases)) or "none defined"
            report(owner, "spec.extends", f"no Base named {name!r} (bases: {known})")
            return None
        if name not in merged_bases:
            base = bases[name]
            spec = base.spec
            if spec.extends is not None:
                parent = merged(spec.extends, (*trail, name), base)
                if parent is None:
                    merged_bases[name] = None
                    return None
                spec = spec.model_copy(update=_apply(parent, spec, base, report))
            elif spec.unset:
                spec = spec.model_copy(update=_apply(Overlay(), spec, base, report))
            merged_bases[name] = spec
        return merged_bases[name]

    result: dict[str, Target] = {}
    for name, target in targets.items():
        spec = target.spec
        if spec.extends is None and not spec.unset:
            result[name] = target
            continue
        parent = merged(spec.extends, (), target) if spec.extends else Overlay()
        if parent is None:
            continue
        result[name] = target.with_spec(spec.model_copy(update=_apply(parent, spec, target, report)))
    return result
