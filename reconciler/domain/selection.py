"""Projections of a nested document onto the values that matter: `select: "/flags/*/defaultVariant"` turns
`{"flags": {"a": {"defaultVariant": "on", "state": "ENABLED"}}}` into `{"a": "on"}`.

A selection is a JSON Pointer whose segments may be globs (as in `ignore`): each wildcard segment (`*`,
`flag_*`, `v?`) becomes one level of the result, keyed by the key it matched, and the segments after the last
wildcard pick the value under it. So siblings of the selected values (new fields a service adds upstream) are
never compared, and no ignore list of them is needed. A selection without wildcards is a plain pointer.

Keys that hold `*`, `?` or `[` are written with a bracket escape: `[*]`, `[?]`, `[[]` (`/flags/a[*]b` selects
the key `a*b` only); `~0` and `~1` stand for `~` and `/` as in any JSON Pointer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.domain.paths import MISSING, KeyPath, from_pointer, literal_key, open_class, segment_matches, to_pointer


class SelectionError(ValueError):
    """The document does not have the shape a selection expects (its fixed part is missing, or a list
    holds items that cannot be named)."""


def wild(segment: str) -> bool:
    """Whether a selection segment is a real wildcard (one level of the result), not one key, escaped or not."""
    return literal_key(segment) is None


@dataclass(frozen=True, slots=True)
class Selection:
    """A parsed selection: the fixed pointer before the first wildcard, then the rest."""

    text: str
    segments: KeyPath

    @classmethod
    def parse(cls, text: str) -> Selection:
        """Parse `text`; a ValueError says what is wrong with it."""
        segments = from_pointer(text)
        for segment in segments:
            if segment == "**":
                raise ValueError(f"selection {text!r}: `**` is not allowed; name each level with `*`")
            if open_class(segment):
                raise ValueError(f"selection {text!r}: {segment!r} opens a `[` that no `]` closes (a `[` is `[[]`)")
        return cls(text, segments)

    @property
    def levels(self) -> int:
        """How many levels the result has (the number of wildcard segments)."""
        return sum(1 for s in self.segments if wild(s))

    def apply(self, document: Any, list_key: str | None = None) -> Any:
        """The projection of `document`. Without wildcards it is the value at the pointer; with them, a mapping
        nested one level per wildcard. The fixed part before the first wildcard must exist; below it, entries
        that lack the selected value are left out (so they read as absent, not null). A wildcard that meets a
        list names its items by their `list_key` field, which every item must have."""
        first = next((i for i, s in enumerate(self.segments) if wild(s)), len(self.segments))
        fixed = tuple(_key(s) for s in self.segments[:first])
        node = document
        for depth, segment in enumerate(fixed):
            node = _child(node, segment)
            if node is MISSING:
                raise SelectionError(f"the document has nothing at {to_pointer(fixed[: depth + 1])}")
        if first == len(self.segments):
            return node
        return _project(node, self.segments[first:], fixed, list_key)

    def __str__(self) -> str:
        return self.text


def _key(segment: str) -> str:
    """The key a segment that is not a wildcard names (escapes resolved)."""
    key = literal_key(segment)
    return segment if key is None else key


def _child(node: Any, segment: str) -> Any:
    """The value under one key, addressed as a pointer does (a list by its index), or MISSING."""
    if isinstance(node, Mapping):
        return node.get(segment, MISSING)
    if isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
        return node[int(segment)]
    return MISSING


def _entries(node: Any, where: KeyPath, list_key: str | None) -> list[tuple[str, Any]]:
    """The (key, value) pairs a wildcard ranges over at `where`."""
    if isinstance(node, Mapping):
        return [(str(k), v) for k, v in node.items()]
    if not isinstance(node, list):
        return []
    if list_key is None:
        raise SelectionError(
            f"{to_pointer(where) or '/'} is a list: name the field that identifies its items (select_key)"
        )
    entries: list[tuple[str, Any]] = []
    for index, item in enumerate(node):
        if not isinstance(item, Mapping) or list_key not in item or isinstance(item[list_key], (dict, list)):
            raise SelectionError(f"{to_pointer((*where, str(index)))} has no plain {list_key!r} field to name it by")
        name = item[list_key]
        entries.append(("true" if name is True else "false" if name is False else str(name), item))
    return entries


def _project(node: Any, rest: KeyPath, where: KeyPath, list_key: str | None) -> Any:
    """`rest` starts with a wildcard: one mapping level of what matches it, or MISSING when nothing is below."""
    head, tail = rest[0], rest[1:]
    out: dict[str, Any] = {}
    for key, value in _entries(node, where, list_key):
        if not segment_matches(head, key):
            continue
        found = _descend(value, tail, (*where, key), list_key)
        if found is not MISSING:
            if key in out:
                raise SelectionError(f"{to_pointer(where) or '/'} has two items named {key!r}")
            out[key] = found
    return out


def _descend(node: Any, rest: KeyPath, where: KeyPath, list_key: str | None) -> Any:
    for depth, segment in enumerate(rest):
        if wild(segment):
            inner = _project(node, rest[depth:], where, list_key)
            return inner if inner else MISSING
        key = _key(segment)
        node = _child(node, key)
        where = (*where, key)
        if node is MISSING:
            return MISSING
    return node
