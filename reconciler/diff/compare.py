"""Compare a desired document with an observed one, with the semantics DESIGN.md fixes.

Paths are tuples of segments; types are strict (1, 1.0, "1" and true differ; null differs from missing);
lists are whole values unless keyed; ignored paths are skipped on both sides; secret paths are compared
in full but reported only as keyed hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.domain.drift import Comparison, DriftItem
from reconciler.domain.manifest import DriftOp, Target
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, any_match, key_segment
from reconciler.domain.values import Redacted, strict_equal


@dataclass(frozen=True, slots=True)
class CompareOptions:
    """How one target is compared. Defaults to: nothing ignored, no secrets, lists as whole values."""

    ignore: tuple[PathGlob, ...] = ()
    secrets: tuple[PathGlob, ...] = ()
    list_keys: Mapping[KeyPath, str] = field(default_factory=dict)
    hmac_key: bytes = b""

    @classmethod
    def for_target(cls, target: Target, hmac_key: bytes) -> CompareOptions:
        return cls(
            ignore=tuple(target.spec.ignore),
            secrets=tuple(target.spec.secrets),
            list_keys=target.list_keys(),
            hmac_key=hmac_key,
        )


def compare(desired: Any, observed: Any, options: CompareOptions | None = None) -> Comparison:
    """Every difference between `desired` and `observed`, in desired's key order then live-only keys."""
    walker = _Walker(options or CompareOptions())
    walker.walk((), desired, observed)
    return Comparison(tuple(walker.items), walker.leaves, walker.differing)


class _Walker:
    __slots__ = ("differing", "has_globs", "items", "leaves", "options")

    def __init__(self, options: CompareOptions) -> None:
        self.options = options
        self.has_globs = bool(options.ignore or options.secrets)
        self.items: list[DriftItem] = []
        self.leaves = 0
        self.differing = 0

    def _keyed(self, path: KeyPath, value: Any) -> Any:
        """A list named in list_keys becomes a map by its key, when every item has that key."""
        key = self.options.list_keys.get(path) if self.options.list_keys else None
        if key is None or not isinstance(value, list):
            return value
        if not all(isinstance(item, Mapping) and key in item for item in value):
            return value
        return {key_segment(item[key]): item for item in value}

    def walk(self, path: KeyPath, desired: Any, observed: Any) -> None:
        if self.has_globs and path:
            if any_match(self.options.ignore, path):
                return
            if any_match(self.options.secrets, path):
                self._leaf(path, desired, observed, secret=True)
                return
        if self.options.list_keys:
            desired, observed = self._keyed(path, desired), self._keyed(path, observed)
        d_map, o_map = type(desired) is dict, type(observed) is dict
        if d_map and o_map:
            if not desired and not observed:
                self.leaves += 1
                return
            for key, value in desired.items():
                self.walk((*path, key), value, observed.get(key, MISSING))
            for key, value in observed.items():
                if key not in desired:
                    self.walk((*path, key), MISSING, value)
            return
        if (d_map and observed is MISSING) or (o_map and desired is MISSING):
            present = desired if d_map else observed
            count, special = self._subtree(path, present)
            if special:  # something inside is ignored or secret: go key by key
                for key, value in present.items():
                    self.walk((*path, key), value if d_map else MISSING, MISSING if d_map else value)
                return
            self.leaves += count
            self.differing += count
            self.items.append(DriftItem(path, DriftOp.REMOVE if d_map else DriftOp.ADD, desired, observed))
            return
        self._leaf(path, desired, observed, secret=False)

    def _leaf(self, path: KeyPath, desired: Any, observed: Any, *, secret: bool) -> None:
        if desired is MISSING:
            op = DriftOp.ADD
        elif observed is MISSING:
            op = DriftOp.REMOVE
        elif strict_equal(desired, observed):
            self.leaves += 1
            return
        elif type(desired) is type(observed):
            op = DriftOp.CHANGE
        else:
            op = DriftOp.TYPE_CHANGE
        # The union of leaf paths here: a map contributes its leaves, anything else the path itself.
        if type(desired) is dict or type(observed) is dict:
            count = _count_leaves(desired) + _count_leaves(observed)
        else:
            count = 1
        self.leaves += count
        self.differing += count
        if secret:
            key = self.options.hmac_key
            desired, observed = Redacted.of(desired, key), Redacted.of(observed, key)
            if op is DriftOp.ADD:
                desired = MISSING
            elif op is DriftOp.REMOVE:
                observed = MISSING
        self.items.append(DriftItem(path, op, desired, observed, secret))

    def _subtree(self, path: KeyPath, value: Any) -> tuple[int, bool]:
        """Leaf count of a one-sided subtree, and whether any path inside is ignored or secret."""
        if not self.has_globs:
            return max(_count_leaves(value), 1), False
        count = 0
        stack: list[tuple[KeyPath, Any]] = [(path, value)]
        while stack:
            here, node = stack.pop()
            if here != path and (any_match(self.options.ignore, here) or any_match(self.options.secrets, here)):
                return 0, True
            if type(node) is dict and node:
                stack.extend(((*here, k), v) for k, v in node.items())
            else:
                count += 1
        return count, False


def _count_leaves(value: Any) -> int:
    if value is MISSING:
        return 0
    if type(value) is not dict or not value:
        return 1
    return sum(_count_leaves(v) for v in value.values())
