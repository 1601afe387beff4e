"""Load YAML that may be hostile, for manifests and live files alike.

Each document is composed first (libyaml's C parser when PyYAML has it, so aliases stay shared nodes), then
its node graph is checked, then constructed. The check counts nodes as if every alias were expanded, bounds
the nesting depth and the length of integers, refuses circular aliases and lone surrogates and, when asked
(manifests), duplicate keys and keys that are not strings: an alias bomb is refused in milliseconds, before
anything is built. The walk is iterative and visits each distinct node once, so neither a deep document nor
a wide one can exhaust the stack or the clock (graph.py). Errors say where (document, line, key path), never
what. The usual configuration file (a block mapping of plain keys and one-line scalars) is read line by line
instead, to the same document (lines.py). The bounds and the error are in bounds.py.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterator
from typing import Any

import yaml

from reconciler.yamlload.bounds import LIVE, MANIFESTS, MAP, SEQ, STR, Limits, YamlError
from reconciler.yamlload.graph import check
from reconciler.yamlload.lines import NOT_SIMPLE, documents, scalar_spans, simple

__all__ = [
    "LIVE",
    "MANIFESTS",
    "NOT_SIMPLE",
    "SAFE_LOADER",
    "Limits",
    "YamlError",
    "compose",
    "load",
    "load_all",
    "load_composed",
    "scalar_spans",
    "simple",
]

# libyaml's C parser when PyYAML has it (its wheels do): ~10x the pure-Python speed, the same safe subset.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


@functools.cache
def _fast(base: Any) -> Any:
    """`base` (a PyYAML loader class) with the tag of the common scalar found at once: libyaml's composer asks
    Python for every scalar's tag, and PyYAML's answer (a list built, regexes tried) was an eighth of a
    manifest's load. Every quoted scalar, and every plain one whose first character no implicit resolver
    starts with (a number, a boolean, null, a date, a merge key), is a string."""
    may_resolve = frozenset(k for k in base.yaml_implicit_resolvers if k)
    if None in base.yaml_implicit_resolvers or base.yaml_path_resolvers:
        return base  # resolvers that look at every scalar: PyYAML's own way

    def resolve(self: Any, kind: Any, value: str, implicit: tuple[bool, bool]) -> Any:
        if kind is yaml.ScalarNode and (not implicit[0] or (value and value[0] not in may_resolve)):
            return STR
        return base.resolve(self, kind, value, implicit)

    # Without path resolvers, the two calls libyaml's composer makes around every node do nothing; C builtins
    # that take the same arguments (not descriptors, so not bound) cost less than a Python call: ~8% of a load.
    nothing = {"descend_resolver": operator.is_, "ascend_resolver": staticmethod(tuple)}
    return type(f"Fast{base.__name__}", (base,), {"resolve": resolve, **nothing})


def load_all(text: str, limits: Limits = MANIFESTS, keys: dict[str, str] | None = None) -> Iterator[Any]:
    """Every document of `text`, checked against `limits` before it is built; raises YamlError. `keys`: mapping
    keys met before (in other texts of one load), shared instead of kept once per mapping; new ones are added."""
    _bounded(text, limits)
    found = documents(text, limits, keys)  # the usual manifest file, line by line: a third of libyaml's time
    if found is not None:
        yield from found
        return
    yield from _composed_all(text, limits, keys)


def _bounded(text: str, limits: Limits) -> None:
    if len(text) > limits.max_chars:
        raise YamlError(f"holds {len(text)} characters; at most {limits.max_chars} are read")


def _composed_all(text: str, limits: Limits, keys: dict[str, str] | None) -> Iterator[Any]:
    """load_all() through libyaml alone."""
    loader = _fast(SAFE_LOADER)(text)
    index = 0
    try:
        while True:
            index += 1
            try:
                if not loader.check_node():
                    return
                if index > limits.max_documents:  # a document past the bound is there: refused (the bound's own is not)
                    raise YamlError(f"holds more than {limits.max_documents} documents", document=index)
                node = loader.get_node()
            except yaml.YAMLError as exc:
                raise _malformed(exc, index) from None
            except RecursionError:  # the pure-Python composer, on a deeply nested document
                raise YamlError(f"nested deeper than {limits.max_depth} levels", document=index) from None
            yield None if node is None else _build(loader, node, index, limits, keys)
    finally:
        loader.dispose()


def compose(text: str) -> yaml.Node | None:
    """The node graph of `text`'s single document, composed as load_all composes it, for an editor that needs
    the nodes' positions; the caller checked the text's bounds when it was read (raises yaml.YAMLError)."""
    loader = _fast(SAFE_LOADER)(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def load(text: str, limits: Limits = LIVE) -> Any:
    """The single document of `text` (None when empty); raises YamlError, also for more than one document. The
    usual configuration file is read line by line (lines.py); anything else goes through libyaml."""
    found = simple(text, limits)
    if found is not NOT_SIMPLE:
        return found
    return load_composed(text, limits)


def load_composed(text: str, limits: Limits = LIVE) -> Any:
    """load() through libyaml alone, for a caller that has had simple()'s answer already (NOT_SIMPLE): that line
    reader gives up at the first line it does not take, which can be the last."""
    _bounded(text, limits)
    found = _composed_all(text, limits, None)
    first = next(found, None)
    if next(found, None) is not None:
        raise YamlError("expected a single document, found more", document=2)
    return first


def _build(loader: Any, node: yaml.Node, index: int, limits: Limits, keys: dict[str, str] | None) -> Any:
    check(node, index, limits)
    try:
        return _construct(loader, node, {}, {} if keys is None else keys)
    except yaml.YAMLError as exc:
        raise _malformed(exc, index) from None
    except (ValueError, OverflowError):  # a timestamp such as 2026-13-45; the message would quote the text
        message = "a value cannot be read as its type (a date that does not exist, say)"
        raise YamlError(message, document=index) from None
    finally:  # what PyYAML's construct_document forgets after each document
        loader.constructed_objects, loader.recursive_objects = {}, {}


def _construct(loader: Any, node: yaml.Node, built: dict[int, Any], keys: dict[str, str]) -> Any:
    """What PyYAML's safe constructor builds from `node` (checked: its depth is bounded), in a few Python
    operations per node instead of PyYAML's generator-driven dozens: plain maps, lists and strings are built
    here, anything else (numbers, booleans, dates, merge keys, sets) by PyYAML. A 100-key manifest was about
    60% of its load time in construction. Aliased nodes are built once; mapping keys go through `keys`, so
    that the same key in a thousand manifests is one string."""
    kind = type(node)
    if kind is yaml.ScalarNode:
        return node.value if node.tag == STR else loader.construct_object(node, deep=True)
    known = built.get(id(node))
    if known is not None:
        return known
    if kind is yaml.MappingNode and node.tag == MAP:
        pairs = node.value
        if any(type(k) is not yaml.ScalarNode or k.tag != STR for k, _ in pairs):  # merge keys, odd keys
            return loader.construct_object(node, deep=True)
        mapping: dict[str, Any] = {}
        built[id(node)] = mapping
        for k, v in pairs:
            name = k.value
            mapping[keys.setdefault(name, name)] = _construct(loader, v, built, keys)
        return mapping
    if kind is yaml.SequenceNode and node.tag == SEQ:
        items: list[Any] = []
        built[id(node)] = items
        items.extend(_construct(loader, v, built, keys) for v in node.value)
        return items
    return loader.construct_object(node, deep=True)  # a set, an ordered map, pairs: PyYAML's rules


def _malformed(exc: yaml.YAMLError, index: int) -> YamlError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    where = f"line {line}, column {mark.column + 1}: " if mark is not None else ""
    detail = _QUOTED.sub("'…'", getattr(exc, "problem", None) or "cannot be parsed")  # quotes are the text's
    return YamlError(f"malformed YAML: {where}{detail}", document=index, line=line)
