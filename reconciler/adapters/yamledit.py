"""Edit live YAML in place: each edit is spliced into the text at the parsed node's position, so that every
byte an edit does not touch stays as it was (comments, order, quotes, indentation, blank lines).

Where a splice cannot keep the document's meaning (an anchored node shared by aliases, a merge key, a
mapping that would be left empty, a value that changes between scalar and collection), the edits go
through ruamel.yaml's round-trip instead, which keeps comments, order and quotes but may re-indent.
The text was checked by yamlload's bounds when it was read; both paths compose it again only to edit it.
"""

from __future__ import annotations

import io
import itertools
from typing import Any, NamedTuple

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.util import load_yaml_guess_indent

from reconciler import yamlload
from reconciler.adapters.shape import Edit, Unshaped, edits
from reconciler.domain.paths import MISSING
from reconciler.domain.values import strict_equal

_WIDE = 1 << 30  # never fold a rendered value across lines
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"


class _Splice(NamedTuple):
    start: int
    end: int
    text: str


def edit_yaml(text: str, current: dict[str, Any], updated: dict[str, Any]) -> str:
    """`text` changed to hold `updated`, touching only what differs from `current`."""
    changes = edits(current, updated)
    for splice in (_splice_lines, _splice):
        try:
            spliced = splice(text, changes)
            if spliced is not None and strict_equal(yamlload.load(spliced, yamlload.LIVE), updated):
                return spliced
        except (Unshaped, yamlload.YamlError, yaml.YAMLError):
            pass
    try:
        return _round_trip(text, changes)
    except (RuamelError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise Unshaped(f"round-trip editing failed: {type(exc).__name__}") from None


def _splice_lines(text: str, changes: list[Edit]) -> str | None:
    """The edits spliced without composing the text, when each one replaces a one-line scalar of a text of
    yamlload's simple shape (the usual configuration file, and the usual fix); None otherwise."""
    if not all(not c.new and c.value is not MISSING and not isinstance(c.value, dict | list) for c in changes):
        return None
    spans = yamlload.scalar_spans(text)
    if spans is None or not all(c.path in spans for c in changes):
        return None
    return _joined(text, [_Splice(*spans[c.path][:2], _scalar(c.value, spans[c.path][2])) for c in changes])


def _splice(text: str, changes: list[Edit]) -> str:
    root = yamlload.compose(text)  # the scalar tags found at once (yamlload._fast): a third of a dry-run's staging
    if type(root) is not yaml.MappingNode:
        raise Unshaped("not a mapping")
    shared = _shared(root)
    return _joined(text, [_one(text, root, shared, change) for change in changes])


def _joined(text: str, splices: list[_Splice]) -> str:
    splices.sort(key=lambda s: (s.start, s.end))
    for first, second in itertools.pairwise(splices):
        if first.end > second.start:
            raise Unshaped("overlapping edits")
    out: list[str] = []
    at = 0
    for splice in splices:
        out.append(text[at : splice.start])
        out.append(splice.text)
        at = splice.end
    out.append(text[at:])
    return "".join(out)


def _shared(root: yaml.Node) -> set[int]:
    """Nodes reached more than once (anchored and aliased), and mappings with a merge key: not spliced."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        if type(node) is yaml.MappingNode:
            if any(type(k) is yaml.ScalarNode and k.tag == _MERGE for k, _ in node.value):
                shared.add(id(node))
            stack.extend(child for pair in node.value for child in pair)
        elif type(node) is yaml.SequenceNode:
            stack.extend(node.value)
    return shared


def _walk(root: yaml.Node, path: tuple[str, ...], shared: set[int]) -> tuple[yaml.Node, yaml.Node | None, yaml.Node]:
    """The parent of `path`'s last segment, that segment's key node (None in a sequence), and its value."""
    parent: yaml.Node = root
    key: yaml.Node | None = None
    node: yaml.Node = root
    for segment in path:
        if id(node) in shared:
            raise Unshaped("shared node")
        parent = node
        if type(node) is yaml.MappingNode:
            pair = next((p for p in node.value if p[0].tag == _STR and p[0].value == segment), None)
            if pair is None:
                raise Unshaped("key not found")
            key, node = pair
        elif type(node) is yaml.SequenceNode:
            key, node = None, node.value[int(segment)]
        else:
            raise Unshaped("not a collection")
    if id(node) in shared:
        raise Unshaped("shared node")
    return parent, key, node


def _one(text: str, root: yaml.Node, shared: set[int], change: Edit) -> _Splice:
    if change.new:
        _, _, parent = _walk(root, change.path[:-1], shared)
        return _add(text, parent, change.path[-1], change.value)
    parent, key, node = _walk(root, change.path, shared)
    if change.value is MISSING:
        return _delete(text, parent, key, node)
    return _replace(text, node, change.value)


def _span_end(node: Any, text: str) -> int:
    """Where a node's text ends: a block collection ends with its last value, not at the next token; a block
    scalar with its last line, not after the blank lines that follow (unless it keeps them: `|+`)."""
    while type(node) is not yaml.ScalarNode and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if type(node) is yaml.MappingNode else last
    start, end = int(node.start_mark.index), int(node.end_mark.index)
    if type(node) is yaml.ScalarNode and node.style in ("|", ">") and "+" not in text[start : text.find("\n", start)]:
        content = len(text[start:end].rstrip(" \n"))
        return min(start + content + 1, end)
    return end


def _line_end(text: str, end: int) -> int:
    """The index of the newline that ends the line `end` is on (a block scalar's text ends after it)."""
    if end > 0 and text[end - 1] == "\n":
        return end - 1
    found = text.find("\n", end)
    return len(text) if found < 0 else found


def _delete(text: str, parent: yaml.Node, key: yaml.Node | None, node: yaml.Node) -> _Splice:
    if key is not None and type(parent) is yaml.MappingNode and parent.flow_style:
        index = next(i for i, (k, _) in enumerate(parent.value) if k is key)
        if index > 0:  # `, key: value` goes
            return _Splice(_span_end(parent.value[index - 1][1], text), _span_end(node, text), "")
        following = parent.value[1][0].start_mark.index if len(parent.value) > 1 else _span_end(node, text)
        return _Splice(key.start_mark.index, following, "")  # `key: value, ` goes
    if key is None or type(parent) is not yaml.MappingNode or parent.flow_style or len(parent.value) < 2:
        raise Unshaped("only a key of a block mapping that keeps others is deleted in place")
    start = text.rfind("\n", 0, key.start_mark.index) + 1
    end = _line_end(text, _span_end(node, text))
    rest = text[_span_end(node, text) : end].strip()
    if text[start : key.start_mark.index].strip() or (rest and not rest.startswith("#")):
        raise Unshaped("the key shares its lines with others")
    return _Splice(start, min(end + 1, len(text)), "")


def _add(text: str, parent: yaml.Node, name: str, value: Any) -> _Splice:
    if type(parent) is not yaml.MappingNode or not parent.value:
        raise Unshaped("not a mapping to add to")
    if parent.flow_style:
        at = _span_end(parent.value[-1][1], text)
        return _Splice(at, at, f", {_flow({name: value})[1:-1]}")
    column = parent.value[0][0].start_mark.column
    end = _line_end(text, _span_end(parent.value[-1][1], text))
    lines = _block({name: value}).splitlines()
    entry = "".join(" " * column + line + "\n" for line in lines)
    if end == len(text):
        return _Splice(end, end, "\n" + entry)
    return _Splice(end + 1, end + 1, entry)


def _replace(text: str, node: Any, value: Any) -> _Splice:
    start, end = int(node.start_mark.index), _span_end(node, text)
    if type(node) is yaml.ScalarNode:
        if isinstance(value, dict | list):
            return _Splice(start, end, _flow(value))
        if node.style in ("|", ">"):
            return _Splice(start, end, _block_scalar(text, node, value))
        return _Splice(start, end, _scalar(value, node.style))
    if not isinstance(value, dict | list):
        raise Unshaped("a collection becomes a scalar")
    if node.flow_style:
        return _Splice(start, end, _flow(value))
    lines = _block(value).splitlines()
    column = node.start_mark.column
    return _Splice(start, end, lines[0] + "".join("\n" + " " * column + line for line in lines[1:]))


def _scalar(value: Any, style: str | None) -> str:
    """One scalar as YAML text on one line: a string in its old quote style where one was used."""
    wanted = style if isinstance(value, str) and style in ("'", '"') else None
    rendered = yaml.safe_dump(value, default_style=wanted, width=_WIDE, allow_unicode=True)
    rendered = rendered.removesuffix("\n").removesuffix("\n...").rstrip("\n")
    if "\n" in rendered:
        rendered = yaml.safe_dump(value, default_style='"', width=_WIDE, allow_unicode=True).rstrip("\n")
    return rendered


def _block_scalar(text: str, node: yaml.Node, value: Any) -> str:
    """A literal block scalar (`|`) replacing a block scalar, at the indentation of the old one's lines."""
    if not isinstance(value, str) or value[:1] in (" ", "\t") or "\r" in value:
        raise Unshaped("not a string a block scalar can hold as it is")
    header_end = text.index("\n", node.start_mark.index) + 1
    body = text[header_end : node.end_mark.index]
    indent = len(body) - len(body.lstrip(" ")) if body.strip() else node.start_mark.column + 2
    stripped = value.rstrip("\n")
    chomp = "-" if stripped == value else ("" if value.count("\n") - stripped.count("\n") == 1 else "+")
    lines = stripped.split("\n") if stripped else []
    tail = "\n" * (len(value) - len(stripped) - 1) if chomp == "+" else ""
    return f"|{chomp}\n" + "".join((" " * indent + line if line else "") + "\n" for line in lines) + tail


def _flow(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, width=_WIDE, allow_unicode=True, sort_keys=False)).strip()


def _block(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=False, width=_WIDE, allow_unicode=True, sort_keys=False))


def _round_trip(text: str, changes: list[Edit]) -> str:
    """The edits made through ruamel.yaml's round-trip, indented as the file is indented."""
    _, indent, offset = load_yaml_guess_indent(text)
    editor = YAML()
    editor.preserve_quotes = True
    editor.width = 4096
    editor.indent(mapping=indent or 2, sequence=(indent or 2) + (offset or 0), offset=offset or 0)
    editor.explicit_start = text.lstrip().startswith("---")
    document = editor.load(text)
    for change in changes:
        parent: Any = document
        for segment in change.path[:-1]:
            parent = parent[int(segment) if isinstance(parent, list) else segment]
        last: Any = int(change.path[-1]) if isinstance(parent, list) else change.path[-1]
        if change.value is MISSING:
            del parent[last]
        else:
            parent[last] = change.value
    out = io.StringIO()
    editor.dump(document, out)
    return out.getvalue()
