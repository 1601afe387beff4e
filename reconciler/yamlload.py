"""Load YAML that may be hostile, for manifests and live files alike.

Each document is composed first (libyaml's C parser when PyYAML has it, so aliases stay shared nodes), then
its node graph is checked, then constructed. The check counts nodes as if every alias were expanded, bounds
the nesting depth and the length of integers, refuses circular aliases and lone surrogates and, when asked
(manifests), duplicate keys and keys that are not strings: an alias bomb is refused in milliseconds, before
anything is built. The walk is iterative and visits each distinct node once, so neither a deep document nor
a wide one can exhaust the stack or the clock. Errors say where (document, line, key path), never what.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import yaml

# libyaml's C parser when PyYAML has it (its wheels do): ~10x the pure-Python speed, the same safe subset.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_SURROGATE = re.compile("[\ud800-\udfff]")
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
            return _STR
        return base.resolve(self, kind, value, implicit)

    # Without path resolvers, the two calls libyaml's composer makes around every node do nothing; C builtins
    # that take the same arguments (not descriptors, so not bound) cost less than a Python call: ~8% of a load.
    nothing = {"descend_resolver": operator.is_, "ascend_resolver": staticmethod(tuple)}
    return type(f"Fast{base.__name__}", (base,), {"resolve": resolve, **nothing})


@dataclass(frozen=True)
class Limits:
    """How much one YAML text may hold. Every bound is far above what a configuration file needs."""

    max_chars: int = 4 * 1024 * 1024  # of the whole text
    max_nodes: int = 1_000_000  # per document, every alias counted as the nodes it stands for
    max_depth: int = 100  # nesting of mappings and lists, aliases followed
    max_int_chars: int = 1000  # an integer literal's length (Python refuses to convert > 4300 digits)
    max_documents: int = 10_000  # in one text: each costs a validation and, in a manifest, a problem or an object
    unique_keys: bool = False  # refuse a mapping that names one key twice (otherwise the last one wins)
    string_keys: bool = False  # refuse keys that are not strings (`1:`, `on:`, `2026-01-01:`, `[a]:`)


MANIFESTS = Limits(unique_keys=True, string_keys=True)
LIVE = Limits(max_chars=32 * 1024 * 1024, max_nodes=2_000_000)


class YamlError(ValueError):
    """The text is not YAML, or is refused by the limits; the message says where (line, column), never what
    the text holds there, because a live file may hold secrets."""

    def __init__(
        self, message: str, *, document: int | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.document = document  # 1-based
        self.line = line  # 1-based
        self.field = field  # dotted path of the key, when known


def load_all(text: str, limits: Limits = MANIFESTS, keys: dict[str, str] | None = None) -> Iterator[Any]:
    """Every document of `text`, checked against `limits` before it is built; raises YamlError. `keys`: mapping
    keys met before (in other texts of one load), shared instead of kept once per mapping; new ones are added."""
    if len(text) > limits.max_chars:
        raise YamlError(f"holds {len(text)} characters; at most {limits.max_chars} are read")
    loader = _fast(SAFE_LOADER)(text)
    index = 0
    try:
        while True:
            index += 1
            if index > limits.max_documents:
                raise YamlError(f"holds more than {limits.max_documents} documents", document=index)
            try:
                if not loader.check_node():
                    return
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
    """The single document of `text` (None when empty); raises YamlError, also for more than one document."""
    simple = _simple(text, limits)
    if simple is not _NOT_SIMPLE:
        return simple
    documents = load_all(text, limits)
    first = next(documents, None)
    if next(documents, None) is not None:
        raise YamlError("expected a single document, found more", document=2)
    return first


# The common configuration file, read without libyaml: a block mapping (nested by indentation) of plain keys
# and one-line scalars. libyaml's composer builds a Python node, two marks and a tag resolution for every
# scalar, and that was a third of a first pass over a 100-key file; read line by line with one regex, such a
# file takes a third of the time on its own (70-90 against 200-220 us), a fifth within a daemon's first cycle.
# Anything beyond that shape (lists, flow collections, anchors, tags, block or multi-line scalars, escapes,
# tabs, non-ASCII text, a second document, a bound of `limits` passed, a value that PyYAML would build as
# something other than a string, number, boolean, null or date) goes to libyaml, which gives the same
# document or the error. tests/test_yamlload.py compares the two on generated texts.
_NOT_SIMPLE: Any = object()
_SIMPLE_MAX_CHARS = 1024 * 1024
_OUTSIDE = re.compile(r"[^\x20-\x7e\n]")  # tabs, carriage returns, controls, non-ASCII: libyaml's way
_PLAIN = r"(?:[A-Za-z0-9_./+=~<$^();\\]|-(?=[^ \n]))(?:[^ :#\n]++|:(?=[^ \n])|(?<! )#| +(?=[^ #\n]))*+"
# Each line: an entry (indentation, key, then a plain or quoted scalar or nothing, then maybe a comment), or
# blank, or a comment, or the document's start marker. A line that is none of these is missing from findall's
# rows, and the text is not simple.
_LINES = re.compile(
    r"^(?:( *)([A-Za-z0-9_][A-Za-z0-9_./-]{0,1023}+):"  # libyaml refuses a key of more than 1,024 characters
    rf"(?: +(?:({_PLAIN})|('[^'\n]*+'|\"[^\"\\\n]*+\")))?(?: +#.*)? *| *(?:#.*)?|(---) *)$",
    re.MULTILINE,
)
_RESOLVER: Any = yaml.resolver.Resolver()
_CONSTRUCTOR: Any = yaml.constructor.SafeConstructor()
_SCALARS = {  # the implicit types a plain scalar may resolve to, and how PyYAML's safe loader builds them
    f"tag:yaml.org,2002:{kind}": yaml.constructor.SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{kind}"]
    for kind in ("int", "float", "bool", "null", "timestamp")
}
_MAY_RESOLVE = frozenset(k for k in _RESOLVER.yaml_implicit_resolvers if k)
_STRING_KEYS: dict[str, bool] = {}  # plain keys that might resolve to something else: whether they stay strings


def _simple(text: str, limits: Limits) -> Any:
    """`text`'s document if it has the simple shape above, else _NOT_SIMPLE."""
    if limits.unique_keys or limits.string_keys:  # manifests: their keys are checked on the nodes
        return _NOT_SIMPLE
    if len(text) > min(limits.max_chars, _SIMPLE_MAX_CHARS) or _OUTSIDE.search(text) is not None:
        return _NOT_SIMPLE
    rows = _LINES.findall(text)
    if len(rows) != text.count("\n") + 1:
        return _NOT_SIMPLE
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]  # the open mappings and their indentation
    mapping, level = root, 0
    open_key: str | None = None  # a key of `mapping` with nothing after it on its line
    nodes = 1
    may_resolve = _MAY_RESOLVE
    started = False
    for spaces, key, plain, quoted, marker in rows:
        if not key:
            if marker:  # the start marker: once, before the first entry
                if started or root:
                    return _NOT_SIMPLE
                started = True
            continue  # blank, or a comment
        indent = len(spaces)
        if open_key is not None:
            if indent > level:  # the open key's value is the mapping that starts here
                child: dict[str, Any] = {}
                mapping[open_key] = child
                mapping, level = child, indent
                stack.append((indent, child))
                if len(stack) > limits.max_depth:
                    return _NOT_SIMPLE
            open_key = None
        if indent != level:
            while indent < stack[-1][0]:
                stack.pop()
            level, mapping = stack[-1]
            if indent != level:
                return _NOT_SIMPLE  # deeper than its mapping, or between two levels: libyaml says what is wrong
        if key[0] in may_resolve and not _string_key(key):
            return _NOT_SIMPLE
        value: Any
        if plain:
            value = plain if plain[0] not in may_resolve else _scalar(plain, limits)
            if value is _NOT_SIMPLE:
                return _NOT_SIMPLE
        elif quoted:
            value = quoted[1:-1]
        else:
            value = None  # null, or the mapping on the lines below
            open_key = key
        mapping[key] = value
        nodes += 2
    if not root or nodes > limits.max_nodes:
        return _NOT_SIMPLE
    return root


def scalar_spans(text: str) -> dict[tuple[str, ...], tuple[int, int, str | None]] | None:
    """Where each one-line scalar of a text of the simple shape lies, by key path: (start, end, style), the
    style None for a plain scalar, a quote for a quoted one (the quotes are in the span). None when the text
    is not of that shape: an editor then composes it. Positions only: the text is read (and checked) apart."""
    if _OUTSIDE.search(text) is not None:
        return None
    spans: dict[tuple[str, ...], tuple[int, int, str | None]] = {}
    seen: set[tuple[str, ...]] = set()
    path: list[tuple[int, str, bool]] = []  # the entries open above this line: indentation, key, value or not
    at = 0
    for line in text.split("\n"):
        found = _LINES.match(line)
        if found is None:
            return None
        spaces, key, plain, quoted = found.group(1, 2, 3, 4)
        if key:
            indent = len(spaces)
            while path and path[-1][0] >= indent:
                path.pop()
            if (path and path[-1][2]) or (key[0] in _MAY_RESOLVE and not _string_key(key)):
                return None  # below a key that has a value on its line, or a key that may not be a string
            here = (*(k for _, k, _ in path), key)
            if here in seen:
                return None  # a key named twice in a mapping: an editor composes the file, and refuses it
            seen.add(here)
            if plain:
                spans[here] = (at + found.start(3), at + found.end(3), None)
            elif quoted:
                spans[here] = (at + found.start(4), at + found.end(4), quoted[0])
            path.append((indent, key, bool(plain or quoted)))
        at += len(line) + 1
    return spans


def _string_key(key: str) -> bool:
    known = _STRING_KEYS.get(key)
    if known is None:
        known = _RESOLVER.resolve(yaml.ScalarNode, key, (True, False)) == _STR
        if len(_STRING_KEYS) >= 10_000:
            _STRING_KEYS.clear()
        _STRING_KEYS[key] = known
    return known


def _scalar(plain: str, limits: Limits) -> Any:
    """A plain scalar as PyYAML's safe loader builds it, or _NOT_SIMPLE for what only libyaml's way handles."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, plain, (True, False))
    if tag == _STR:
        return plain
    build = _SCALARS.get(tag)
    if build is None or (tag == _INT and len(plain) > limits.max_int_chars):
        return _NOT_SIMPLE
    try:
        return build(_CONSTRUCTOR, yaml.ScalarNode(tag, plain))
    except (ValueError, OverflowError, LookupError, yaml.YAMLError):  # an impossible date: libyaml's way says so
        return _NOT_SIMPLE


def _build(loader: Any, node: yaml.Node, index: int, limits: Limits, keys: dict[str, str] | None) -> Any:
    _check(node, index, limits)
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
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    known = built.get(id(node))
    if known is not None:
        return known
    if kind is yaml.MappingNode and node.tag == _MAP:
        pairs = node.value
        if any(type(k) is not yaml.ScalarNode or k.tag != _STR for k, _ in pairs):  # merge keys, odd keys
            return loader.construct_object(node, deep=True)
        mapping: dict[str, Any] = {}
        built[id(node)] = mapping
        for k, v in pairs:
            name = k.value
            mapping[keys.setdefault(name, name)] = _construct(loader, v, built, keys)
        return mapping
    if kind is yaml.SequenceNode and node.tag == _SEQ:
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


def _check(root: yaml.Node, index: int, limits: Limits) -> None:
    """Walk the node graph once per distinct collection node (post-order, iteratively), computing each one's
    expanded size and height; refuse as soon as a bound is passed. Paths are worked out only for an error.
    Scalars are checked and counted inside their parent's step, never as steps of their own."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    opened: dict[int, tuple[int, list[yaml.Node]]] = {}  # open collections: their scalars, their collections
    if type(root) is yaml.ScalarNode:
        _check_scalar(root, root, index, limits)
        return
    stack = [root]
    while stack:
        node = stack[-1]
        key = id(node)
        if key in size:
            stack.pop()
            continue
        if key not in opened:
            opened[key] = (0, [])  # open from here: a kid that is this node is a circular alias
            _check_keys(root, node, index, limits)
            kids = chain.from_iterable(node.value) if type(node) is yaml.MappingNode else node.value
            scalars, nested = 0, []
            for kid in kids:
                if type(kid) is yaml.ScalarNode:
                    scalars += 1
                    if kid.tag == _INT or not kid.value.isascii():
                        _check_scalar(root, kid, index, limits)
                    continue
                if id(kid) in opened:
                    raise _refuse(root, kid, index, "a circular alias: a node that contains itself")
                nested.append(kid)
                if id(kid) not in size:
                    stack.append(kid)
            opened[key] = (scalars, nested)
            continue
        stack.pop()
        scalars, nested = opened.pop(key)
        total = 1 + scalars + sum(size[id(kid)] for kid in nested)
        deepest = max((height[id(kid)] for kid in nested), default=0)
        size[key], height[key] = total, deepest + 1
        if total > limits.max_nodes:
            message = f"expands to more than {limits.max_nodes} nodes (aliases counted expanded)"
            raise _refuse(root, node, index, message)
        if deepest + 1 > limits.max_depth:
            raise _refuse(root, node, index, f"nested deeper than {limits.max_depth} levels")


def _check_scalar(root: yaml.Node, node: yaml.Node, index: int, limits: Limits) -> None:
    if node.tag == _INT and len(node.value) > limits.max_int_chars:
        raise _refuse(root, node, index, f"an integer of {len(node.value)} characters; at most {limits.max_int_chars}")
    if not node.value.isascii() and _SURROGATE.search(node.value):  # a "\ud800" escape: no encoding can hold it
        raise _refuse(
            root, node, index, "a string holds a lone surrogate (a \\uD800-\\uDFFF escape): not valid Unicode"
        )


def _check_keys(root: yaml.Node, node: yaml.Node, index: int, limits: Limits) -> None:
    if type(node) is not yaml.MappingNode or not (limits.unique_keys or limits.string_keys):
        return
    pairs = node.value
    if all(type(k) is yaml.ScalarNode and k.tag == _STR for k, _ in pairs) and len({k.value for k, _ in pairs}) == len(
        pairs
    ):
        return  # string keys, each once: the usual mapping, checked in two passes at C speed
    seen: set[tuple[str, str]] = set()
    for key, value in pairs:
        if type(key) is yaml.ScalarNode and key.tag == _MERGE:
            continue
        if limits.string_keys and (type(key) is not yaml.ScalarNode or key.tag != _STR):
            kind = key.tag.rsplit(":", 1)[-1] if type(key) is yaml.ScalarNode else "a collection"
            raise _refuse(root, value, index, f"a key must be a string, not {kind}; quote it")
        if limits.unique_keys and type(key) is yaml.ScalarNode:
            if (key.tag, key.value) in seen:
                raise _refuse(root, value, index, f"duplicate key {key.value!r}; a key may appear once in a mapping")
            seen.add((key.tag, key.value))


def _refuse(root: yaml.Node, culprit: yaml.Node, index: int, message: str) -> YamlError:
    path = _path_to(root, culprit)
    shown = ".".join(path[:12]) + (".…" if len(path) > 12 else "")
    line = culprit.start_mark.line + 1
    return YamlError(f"line {line}: {message}", document=index, line=line, field=shown or None)


def _path_to(root: yaml.Node, culprit: yaml.Node) -> tuple[str, ...]:
    """The shortest key path from `root` to `culprit` (breadth first, each distinct node once)."""
    parents: dict[int, tuple[yaml.Node, str] | None] = {id(root): None}
    queue = [root]
    for node in queue:
        if node is culprit:
            break
        pairs: list[tuple[str, yaml.Node]] = []
        if type(node) is yaml.MappingNode:
            pairs = [(str(k.value) if type(k) is yaml.ScalarNode else "?", v) for k, v in node.value]
        elif type(node) is yaml.SequenceNode:
            pairs = [(str(i), v) for i, v in enumerate(node.value)]
        for name, child in pairs:
            if id(child) not in parents:
                parents[id(child)] = (node, name)
                queue.append(child)
    path: list[str] = []
    step = parents.get(id(culprit))
    while step is not None:
        path.append(step[1])
        step = parents[id(step[0])]
    return tuple(reversed(path))
