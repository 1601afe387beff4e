"""Compare configuration documents directly, without manifests: two of them, or many pairwise or against a
baseline. The library face of `reconciler diff`, with the comparison semantics DESIGN.md fixes (strict types,
JSON Pointer paths, null differs from missing); see docs/library.md."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from typing import Any, NamedTuple

from reconciler.diff import significance
from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.normalize import normalize as normalize_doc
from reconciler.domain.manifest import DriftOp, NormalizeAs, NormalizeRule, parse_glob
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, from_pointer, to_pointer
from reconciler.domain.values import Redacted
from reconciler.errors import ConfigurationError

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def type_name(value: Any) -> str:
    """A value's JSON type: null, boolean, integer, number, string, array, object; `absent` when missing."""
    if value is MISSING:
        return "absent"
    if value is None:
        return "null"
    if isinstance(value, Redacted):
        return "secret"
    return _JSON_TYPES.get(type(value), type(value).__name__)


class Difference(NamedTuple):
    """One path where `a` and `b` differ. `op`: add (only in b), remove (only in a), change (same type), or
    type_change. A missing side is reconciler.MISSING; a secret side is a Redacted keyed hash."""

    path: KeyPath
    op: DriftOp
    a: Any
    b: Any
    secret: bool = False

    @property
    def pointer(self) -> str:
        return to_pointer(self.path)

    @property
    def a_type(self) -> str:
        return type_name(self.a)

    @property
    def b_type(self) -> str:
        return type_name(self.b)


@dataclass(frozen=True)
class ConfigDiff:
    """The comparison of two documents: every difference, and the leaf counts behind the drift."""

    differences: tuple[Difference, ...]
    total_leaves: int  # the union of both documents' leaf paths, after the ignored ones
    differing_leaves: int  # leaf paths that differ (a map on one side only: each of its leaves)
    threshold: Fraction | None = None  # significance is judged only when a threshold was given
    a_name: str = "a"
    b_name: str = "b"

    @property
    def equal(self) -> bool:
        return not self.differences

    @property
    def drift_fraction(self) -> Fraction:
        return significance.fraction(self.differing_leaves, self.total_leaves)

    @property
    def drift_percent(self) -> float:
        """Differing over total leaves times 100, unrounded (0.0 when both documents are empty)."""
        return float(self.drift_fraction * 100)

    @property
    def significant(self) -> bool:
        """Drift strictly above the threshold, compared exactly; without a threshold, any difference."""
        if self.threshold is None:
            return not self.equal
        return significance.exceeds(self.differing_leaves, self.total_leaves, self.threshold)


@dataclass(frozen=True)
class DiffOptions:
    """How documents are compared. Defaults to: everything compared, nothing secret, lists as whole values."""

    ignore: Sequence[str] = ()  # JSON-Pointer globs (`*` one segment, `**` any depth) left out on both sides
    ignore_keys: Sequence[str] = ()  # key names left out at any depth, taken literally (`a*` is not a glob)
    secrets: Sequence[str] = ()  # globs compared by keyed hash and never shown
    normalize: Mapping[str, str] = field(default_factory=dict)  # glob -> bytes, duration, bool, number, lower
    list_keys: Mapping[str, str] = field(default_factory=dict)  # pointer of a list -> the key of its items
    threshold: significance.Threshold | None = None  # drift above which a difference is significant
    hmac_key: bytes = b""  # key of the secrets' hashes; a random one per process when empty

    def compiled(self) -> tuple[CompareOptions, list[NormalizeRule], Fraction | None]:
        """The options as the comparison takes them; ConfigurationError naming the option that is wrong."""
        ignore = [_glob(g, "ignore") for g in self.ignore] + [key_glob(k) for k in self.ignore_keys]
        secrets = [_glob(g, "secrets") for g in self.secrets]
        rules = []
        for glob, kind in self.normalize.items():
            if kind not in NormalizeAs._value2member_map_:
                known = ", ".join(a.value for a in NormalizeAs)
                raise ConfigurationError(f"normalize {glob}: {kind!r} is not one of {known}")
            rules.append(NormalizeRule.model_validate({"paths": [_glob(glob, "normalize")], "as": kind}))
        list_keys: dict[KeyPath, str] = {}
        for pointer, key in self.list_keys.items():
            try:
                list_keys[from_pointer(pointer)] = key
            except ValueError as exc:
                raise ConfigurationError(f"list_keys: {exc}") from None
        try:
            limit = None if self.threshold is None else significance.parse(self.threshold)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        hmac_key = self.hmac_key or _PROCESS_KEY
        return CompareOptions(tuple(ignore), tuple(secrets), list_keys, hmac_key), rules, limit


_PROCESS_KEY = os.urandom(32)


def _glob(text: str, option: str) -> PathGlob:
    try:
        return parse_glob(text)
    except ValueError as exc:
        raise ConfigurationError(f"{option}: {exc}") from None


def key_glob(name: str) -> PathGlob:
    """The glob of a key name at any depth, the name taken literally: `*`, `?` and `[` in it are escaped."""
    if not name:
        raise ConfigurationError("ignore_keys: a key name must not be empty")
    literal = "".join(f"[{c}]" if c in "*?[" else c for c in name)
    return PathGlob.parse(to_pointer(("**", literal)))


def compare_configs(
    a: Mapping[str, Any], b: Mapping[str, Any], options: DiffOptions | None = None, **given: Any
) -> ConfigDiff:
    """Every difference between two configuration documents, a's key order first, then keys only in b.

    Options come as a DiffOptions or as its fields by name: `compare_configs(a, b, ignore_keys=["updated_at"],
    threshold="5%")`."""
    chosen = _options(options, given)
    compare_options, rules, limit = chosen.compiled()
    left, right = (normalize_doc(dict(a), rules), normalize_doc(dict(b), rules)) if rules else (a, b)
    found = compare(left, right, compare_options)
    differences = tuple(Difference(i.path, i.op, i.desired, i.observed, i.secret) for i in found.items)
    return ConfigDiff(differences, found.leaves, found.differing, limit)


def _options(options: DiffOptions | None, given: Mapping[str, Any]) -> DiffOptions:
    if options is not None and given:
        raise TypeError("give either a DiffOptions or its fields by name, not both")
    try:
        return options or DiffOptions(**given)
    except TypeError as exc:
        raise TypeError(f"{exc}; DiffOptions has {', '.join(DiffOptions.__dataclass_fields__)}") from None


def compare_many(
    configs: Mapping[str, Mapping[str, Any]],
    *,
    baseline: str | None = None,
    names: Iterable[str] = (),
    options: DiffOptions | None = None,
    **given: Any,
) -> list[ConfigDiff]:
    """Many documents by name: every pair (in the order given), or each against `baseline` only; `names`
    (globs) limits which documents take part besides the baseline. Each result's a_name and b_name say
    which pair it is (a is the baseline)."""
    chosen = _options(options, given)
    patterns = list(names)
    wanted = [n for n in configs if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if baseline is not None:
        if baseline not in configs:
            raise ConfigurationError(f"baseline {baseline!r} is not among the configurations: {', '.join(configs)}")
        pairs = [(baseline, n) for n in wanted if n != baseline]
    else:
        pairs = list(combinations(wanted, 2))
    results = []
    for a, b in pairs:
        found = compare_configs(configs[a], configs[b], chosen)
        results.append(ConfigDiff(found.differences, found.total_leaves, found.differing_leaves, found.threshold, a, b))
    return results
