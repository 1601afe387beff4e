"""The walk behind compare(): two documents side by side, with the semantics DESIGN.md fixes.

Paths are tuples of segments; types are strict (1, 1.0, "1" and true differ; null differs from missing);
lists are whole values unless keyed; ignored paths are skipped on both sides; secret paths are compared
in full but reported only as keyed hashes.

Speed matters here (hundreds of targets, documents of up to a million leaves), so the walk makes one call
per map, not per leaf, builds a path tuple only per map and per difference, and tracks ignore and secret
globs as a small automaton: a subtree that no glob can reach is walked on the plain path with no glob
checks at all. This module is plain Python that mypyc can compile (`make install` does, see
reconciler/diff/native.py); reconciler.diff.compare uses the compiled build when it matches this source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import isnan
from typing import Any

from reconciler.diff.options import CompareOptions
from reconciler.domain.drift import DriftItem
from reconciler.domain.manifest import DriftOp
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, key_segment, segment_matches
from reconciler.domain.values import Redacted, strict_equal

# A glob automaton state: (index of the glob, how many of its segments are matched so far).
States = frozenset[tuple[int, int]]
_NONE: States = frozenset()
_ADD, _REMOVE, _CHANGE, _TYPE_CHANGE = DriftOp.ADD, DriftOp.REMOVE, DriftOp.CHANGE, DriftOp.TYPE_CHANGE


class _Globs:
    """A set of JSON-Pointer globs run as an automaton over path segments."""

    __slots__ = ("_patterns",)

    def __init__(self, globs: tuple[PathGlob, ...]) -> None:
        self._patterns = [g.segments for g in globs]

    def start(self) -> States:
        return self._closure({(i, 0) for i in range(len(self._patterns))})

    def _closure(self, states: set[tuple[int, int]]) -> States:
        # `**` may match no segment at all: a state before it is also a state after it.
        todo = list(states)
        while todo:
            g, i = todo.pop()
            pattern = self._patterns[g]
            if i < len(pattern) and pattern[i] == "**" and (g, i + 1) not in states:
                states.add((g, i + 1))
                todo.append((g, i + 1))
        return frozenset(states)

    def step(self, states: States, segment: str) -> States:
        if not states:
            return _NONE
        after: set[tuple[int, int]] = set()
        for g, i in states:
            pattern = self._patterns[g]
            if i == len(pattern):
                continue
            head = pattern[i]
            if head == "**":
                after.add((g, i))
            elif segment_matches(head, segment):
                after.add((g, i + 1))
        return self._closure(after) if after else _NONE

    def matched(self, states: States) -> bool:
        return any(i == len(self._patterns[g]) for g, i in states)


class Walker:
    __slots__ = ("_plain", "differing", "ignore", "items", "leaves", "list_keys", "options", "record", "secrets")

    def __init__(self, options: CompareOptions, record: bool = True) -> None:
        self.options = options
        self.record = record  # False: the leaf counts alone, no item per difference
        self.ignore = _Globs(options.ignore)
        self.secrets = _Globs(options.secrets)
        self.list_keys = options.list_keys
        self.items: list[DriftItem] = []
        self.leaves = 0
        self.differing = 0
        self._plain = self._make_plain()

    def start(self) -> tuple[States, States]:
        return self.ignore.start(), self.secrets.start()

    # -- the plain path: no glob can match anywhere below --------------------------------------------------

    def plain(self, path: KeyPath, desired: dict[str, Any], observed: dict[str, Any]) -> None:
        equal = self._plain(path, desired, observed)  # differences add to self.leaves during the call
        self.leaves += equal

    def _make_plain(self) -> Callable[[KeyPath, dict[str, Any], dict[str, Any]], int]:
        """The walk of a subtree no glob reaches, as a closure over locals: the hot loop of every pass."""
        keyed = self.list_keys
        differ = self.differ
        one_sided = self.one_sided
        keyed_list = self.keyed_list

        def plain(path: KeyPath, desired: dict[str, Any], observed: dict[str, Any]) -> int:
            """Compare two maps; returns the leaves found equal (differences count themselves)."""
            if not desired and not observed:
                return 1
            leaves = 0
            missing = 0
            for key, d in desired.items():
                try:
                    o = observed[key]
                except KeyError:
                    missing += 1
                    one_sided((*path, key), d, MISSING, _NONE, _NONE)
                    continue
                kind = type(d)
                if kind is type(o):
                    if kind is dict:
                        leaves += plain((*path, key), d, o)
                        continue
                    if kind is not list:
                        if d == o or (kind is float and isnan(d) and isnan(o)):  # NaN equals NaN here
                            leaves += 1
                            continue
                    elif keyed and (*path, key) in keyed:
                        keyed_list((*path, key), d, o, _NONE, _NONE)
                        continue
                    elif strict_equal(d, o):
                        leaves += 1
                        continue
                    differ((*path, key), d, o, _CHANGE)
                else:
                    differ((*path, key), d, o, _TYPE_CHANGE)
            if len(desired) - missing != len(observed):
                for key, o in observed.items():
                    if key not in desired:
                        one_sided((*path, key), MISSING, o, _NONE, _NONE)
            return leaves

        return plain

    # -- the globbed path: some ignore or secret glob may still match below --------------------------------

    def globbed(
        self, path: KeyPath, desired: dict[str, Any], observed: dict[str, Any], ign: States, sec: States
    ) -> None:
        if not desired and not observed:
            self.leaves += 1
            return
        for key, d in desired.items():
            self.child(path, key, d, observed.get(key, MISSING), ign, sec)
        for key, o in observed.items():
            if key not in desired:
                self.child(path, key, MISSING, o, ign, sec)

    def child(self, path: KeyPath, key: str, d: Any, o: Any, ign: States, sec: States) -> None:
        here = (*path, key)
        ign = self.ignore.step(ign, key)
        if ign and self.ignore.matched(ign):
            return
        sec = self.secrets.step(sec, key)
        if sec and self.secrets.matched(sec):
            self.secret_node(here, d, o, ign)
            return
        self.node(here, d, o, ign, sec)

    def secret_node(self, here: KeyPath, d: Any, o: Any, ign: States) -> None:
        """Below a secret glob every leaf is secret, and is compared on the path it has without the glob: a
        secret glob marks values, it never changes the granularity of comparison, so rules, exceptions, prune
        and approvals see the same paths as for plain values (maps by key, keyed lists by item, a key on one
        side only as one item)."""
        if d is MISSING or o is MISSING:
            self.leaf(here, d, o, secret=True)
            return
        kind = type(d)
        if kind is list and type(o) is list and self.list_keys and here in self.list_keys:
            key = self.list_keys[here]
            keyed = all(isinstance(i, Mapping) and key in i for i in d) and all(
                isinstance(i, Mapping) and key in i for i in o
            )
            if keyed:
                d = {key_segment(i[key]): i for i in d}
                o = {key_segment(i[key]): i for i in o}
                kind = dict
        if kind is not dict or type(o) is not dict or (not d and not o):
            self.leaf(here, d, o, secret=True)
            return
        for key in [*d, *(k for k in o if k not in d)]:
            step = self.ignore.step(ign, key)
            if step and self.ignore.matched(step):
                continue
            self.secret_node((*here, key), d.get(key, MISSING), o.get(key, MISSING), step)

    def node(self, here: KeyPath, d: Any, o: Any, ign: States, sec: States) -> None:
        if d is MISSING or o is MISSING:
            self.one_sided(here, d, o, ign, sec)
            return
        kind = type(d)
        if kind is dict and type(o) is dict:
            if ign or sec:
                self.globbed(here, d, o, ign, sec)
            else:
                self.plain(here, d, o)
        elif kind is list and type(o) is list and self.list_keys and here in self.list_keys:
            self.keyed_list(here, d, o, ign, sec)
        else:
            self.leaf(here, d, o, secret=False)

    # -- the rest ------------------------------------------------------------------------------------------

    def keyed_list(self, here: KeyPath, d: list[Any], o: list[Any], ign: States, sec: States) -> None:
        """A list named in list_keys compares as a map by its key, when every item has that key."""
        key = self.list_keys[here]
        if not all(isinstance(i, Mapping) and key in i for i in d) or not all(
            isinstance(i, Mapping) and key in i for i in o
        ):
            if strict_equal(d, o):
                self.leaves += 1
            else:
                self.leaf(here, d, o, secret=False)
            return
        dm = {key_segment(i[key]): i for i in d}
        om = {key_segment(i[key]): i for i in o}
        if ign or sec:
            self.globbed(here, dm, om, ign, sec)
        else:
            self.plain(here, dm, om)

    def one_sided(self, here: KeyPath, d: Any, o: Any, ign: States, sec: States) -> None:
        """A key on one side only: one item for the whole subtree, unless a glob reaches inside it."""
        present = o if d is MISSING else d
        if type(present) is dict and present and (ign or sec) and self.reaches_inside(present, ign, sec):
            for key, value in present.items():
                if d is MISSING:
                    self.child(here, key, MISSING, value, ign, sec)
                else:
                    self.child(here, key, value, MISSING, ign, sec)
            return
        self.leaf(here, d, o, secret=False)

    def reaches_inside(self, node: dict[str, Any], ign: States, sec: States) -> bool:
        """Whether an ignore or secret glob matches anything inside a one-sided map."""
        stack = [(node, ign, sec)]
        while stack:
            here, i_states, s_states = stack.pop()
            for key, value in here.items():
                i_next, s_next = self.ignore.step(i_states, key), self.secrets.step(s_states, key)
                if (i_next and self.ignore.matched(i_next)) or (s_next and self.secrets.matched(s_next)):
                    return True
                if type(value) is dict and value and (i_next or s_next):
                    stack.append((value, i_next, s_next))
        return False

    def leaf(self, path: KeyPath, desired: Any, observed: Any, *, secret: bool) -> None:
        if desired is MISSING:
            op = _ADD
        elif observed is MISSING:
            op = _REMOVE
        elif strict_equal(desired, observed):
            self.leaves += 1
            return
        elif type(desired) is type(observed):
            op = _CHANGE
        else:
            op = _TYPE_CHANGE
        if secret:
            # Counted as the plain values would be (a map: its leaves), then redacted.
            nested = type(desired) is dict or type(observed) is dict
            count = count_leaves(desired) + count_leaves(observed) if nested else 1
            self.leaves += count
            self.differing += count
            if self.record:
                key = self.options.hmac_key
                desired = MISSING if desired is MISSING else Redacted.of(desired, key)
                observed = MISSING if observed is MISSING else Redacted.of(observed, key)
                self.items.append(DriftItem(path, op, desired, observed, True))
            return
        self.differ(path, desired, observed, op, secret)

    def differ(self, path: KeyPath, desired: Any, observed: Any, op: DriftOp, secret: bool = False) -> None:
        """Record a difference already known to be one."""
        # The union of leaf paths here: a map contributes its leaves, anything else the path itself.
        nested = type(desired) is dict or type(observed) is dict
        count = count_leaves(desired) + count_leaves(observed) if nested else 1
        self.leaves += count
        self.differing += count
        if self.record:
            self.items.append(DriftItem(path, op, desired, observed, secret))


def count_leaves(value: Any) -> int:
    if value is MISSING:
        return 0
    if type(value) is not dict or not value:
        return 1
    return sum(count_leaves(v) for v in value.values())
