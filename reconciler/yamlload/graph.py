"""The check of a composed document's node graph, before anything is built: its expanded size (every alias
counted as the nodes it stands for), its depth, its integers' lengths, lone surrogates, circular aliases and,
when asked (manifests), duplicate keys and keys that are not strings. The walk is iterative and visits each
distinct node once, so neither a deep document nor a wide one can exhaust the stack or the clock. An error
says where (line, key path), never what the text holds there."""

from __future__ import annotations

import re
from itertools import chain

import yaml

from reconciler.yamlload.bounds import INT, MERGE, STR, Limits, YamlError

_SURROGATE = re.compile("[\ud800-\udfff]")


def check(root: yaml.Node, index: int, limits: Limits) -> None:
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
                    if kid.tag == INT or not kid.value.isascii():
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
    if node.tag == INT and len(node.value) > limits.max_int_chars:
        raise _refuse(root, node, index, f"an integer of {len(node.value)} characters; at most {limits.max_int_chars}")
    if not node.value.isascii() and _SURROGATE.search(node.value):  # a "\ud800" escape: no encoding can hold it
        raise _refuse(
            root, node, index, "a string holds a lone surrogate (a \\uD800-\\uDFFF escape): not valid Unicode"
        )


def _check_keys(root: yaml.Node, node: yaml.Node, index: int, limits: Limits) -> None:
    if type(node) is not yaml.MappingNode or not (limits.unique_keys or limits.string_keys):
        return
    pairs = node.value
    if all(type(k) is yaml.ScalarNode and k.tag == STR for k, _ in pairs) and len({k.value for k, _ in pairs}) == len(
        pairs
    ):
        return  # string keys, each once: the usual mapping, checked in two passes at C speed
    seen: set[tuple[str, str]] = set()
    for key, value in pairs:
        if type(key) is yaml.ScalarNode and key.tag == MERGE:
            continue
        if limits.string_keys and (type(key) is not yaml.ScalarNode or key.tag != STR):
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
