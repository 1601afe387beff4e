"""Normalisers: read values the way the system means them, on both sides, before comparison.

`10mb` and `10485760`, `60s` and `60`, `True` and `true` are the same setting written differently; a
normaliser declared on the target (`normalize: [{paths: [...], as: bytes}]`) turns both sides into one form.
A value a normaliser cannot read is left as it is, so it still shows as drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.domain import durations
from reconciler.domain.manifest import NormalizeAs, NormalizeRule
from reconciler.domain.paths import KeyPath, PathGlob, any_match

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


def _whole(value: float) -> int | float:
    if isinstance(value, int):  # float() of a huge integer would overflow
        return value
    return int(value) if value.is_integer() else value


def as_bytes(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return _whole(float(m.group(1)) * 1024 ** _POWERS[m.group(2).lower()])
    return value


def as_duration(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _whole(value)
    # Live systems write units in either case ('30S'); manifests only in lower case.
    if isinstance(value, str) and (seconds := durations.parse(value.lower())) is not None:
        return _whole(round(seconds, 6))
    return value


def as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return value


def as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _whole(float(value)) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def as_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


CONVERTERS: dict[NormalizeAs, Callable[[Any], Any]] = {
    NormalizeAs.BYTES: as_bytes,
    NormalizeAs.DURATION: as_duration,
    NormalizeAs.BOOL: as_bool,
    NormalizeAs.NUMBER: as_number,
    NormalizeAs.LOWER: as_lower,
}


def normalize(doc: dict[str, Any], rules: Sequence[NormalizeRule]) -> dict[str, Any]:
    """A copy of `doc` with every leaf that a rule's paths match converted (first matching rule wins)."""
    if not rules:
        return doc
    compiled: list[tuple[tuple[PathGlob, ...], Callable[[Any], Any]]] = [
        (tuple(r.paths), CONVERTERS[r.as_]) for r in rules
    ]

    def walk(path: KeyPath, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk((*path, k), v) for k, v in node.items()}
        for globs, convert in compiled:
            if any_match(globs, path):
                return convert(node)
        return node

    return dict(walk((), doc))
