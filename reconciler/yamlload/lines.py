"""The common configuration file, read without libyaml: a block mapping (nested by indentation) of plain keys
and one-line scalars. libyaml's composer builds a Python node, two marks and a tag resolution for every
scalar, and that was a third of a first pass over a 100-key file; read line by line with one regex, such a
file takes a third of the time on its own (70-90 against 200-220 us), a fifth within a daemon's first cycle.
A text of several such documents (a manifest file) is read as well, document by document. Anything beyond that
shape (lists, flow collections, anchors, tags, block or multi-line scalars, escapes, tabs, non-ASCII text, a
bound of `limits` passed, a key that `limits` refuse, a value that PyYAML would build as something other than
a string, number, boolean, null or date) goes to libyaml, the whole text, which gives the same documents or the
error. tests/test_yamlload.py compares the two on generated texts.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from reconciler.yamlload.bounds import INT, STR, Limits

NOT_SIMPLE: Any = object()
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
_MARKER = re.compile(r"^--- *$", re.MULTILINE)  # a document's start, as _LINES reads it
# A list's entry on a line after the first (no line of the simple shape starts so); searched for the newline
# first, which is five times faster than a search for a line's start.
_SEQUENCE = re.compile(r"\n *-(?: |\n)")
_BLANK = re.compile(r"(?: *(?:#[^\n]*)?\n)*")  # blank lines and comments, nothing else
_RESOLVER: Any = yaml.resolver.Resolver()
_CONSTRUCTOR: Any = yaml.constructor.SafeConstructor()
_SCALARS = {  # the implicit types a plain scalar may resolve to, and how PyYAML's safe loader builds them
    f"tag:yaml.org,2002:{kind}": yaml.constructor.SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{kind}"]
    for kind in ("int", "float", "bool", "null", "timestamp")
}
_MAY_RESOLVE = frozenset(k for k in _RESOLVER.yaml_implicit_resolvers if k)
_STRING_KEYS: dict[str, bool] = {}  # plain keys that might resolve to something else: whether they stay strings


def documents(text: str, limits: Limits, keys: dict[str, str] | None = None) -> list[Any] | None:
    """The documents of a text of several, each of the simple shape and each after its own start marker (a
    line `---`; the first may have none), as libyaml's load_all gives them; None if the text or one of its
    documents is not of that shape. A `---` line cannot be content here: a block or multi-line scalar, the one
    place it could hide, is not the simple shape, and the whole text then goes to libyaml."""
    if _SEQUENCE.search(text) is not None:
        return None  # at once, for libyaml reads the text anyway: a list is the usual reason
    starts = [found.start() for found in _MARKER.finditer(text)]
    if not starts:
        one = simple(text, limits, keys)
        return None if one is NOT_SIMPLE else [one]
    chunks = [text[start:end] for start, end in zip(starts, [*starts[1:], len(text)], strict=True)]
    head = text[: starts[0]]
    if _BLANK.fullmatch(head) is None:  # the first document, with no marker of its own
        chunks.insert(0, head)
    elif _OUTSIDE.search(head) is not None:
        return None
    if len(chunks) > limits.max_documents:
        return None  # libyaml's way says so
    found = []
    for chunk in chunks:
        document = simple(chunk, limits, keys)
        if document is NOT_SIMPLE:
            return None
        found.append(document)
    return found


def simple(text: str, limits: Limits, keys: dict[str, str] | None = None) -> Any:
    """`text`'s document if it has the simple shape (this module's docstring), else NOT_SIMPLE. A key that names
    an entry twice in a mapping is the later one's (as PyYAML builds it), or NOT_SIMPLE under limits that
    refuse it; `keys`: mapping keys met before, shared (load_all's)."""
    if len(text) > min(limits.max_chars, _SIMPLE_MAX_CHARS) or _OUTSIDE.search(text) is not None:
        return NOT_SIMPLE
    rows = _LINES.findall(text)
    if len(rows) != text.count("\n") + 1:
        return NOT_SIMPLE
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]  # the open mappings and their indentation
    mapping, level = root, 0
    open_key: str | None = None  # a key of `mapping` with nothing after it on its line
    nodes = 1
    may_resolve = _MAY_RESOLVE
    unique = limits.unique_keys
    started = False
    for spaces, key, plain, quoted, marker in rows:
        if not key:
            if marker:  # the start marker: once, before the first entry
                if started or root:
                    return NOT_SIMPLE
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
                    return NOT_SIMPLE
            open_key = None
        if indent != level:
            while indent < stack[-1][0]:
                stack.pop()
            level, mapping = stack[-1]
            if indent != level:
                return NOT_SIMPLE  # deeper than its mapping, or between two levels: libyaml says what is wrong
        if key[0] in may_resolve and not _string_key(key):
            return NOT_SIMPLE
        if unique and key in mapping:
            return NOT_SIMPLE  # libyaml's way names the duplicate
        if keys is not None:
            key = keys.setdefault(key, key)  # noqa: PLW2901  # the shared one from here on
        value: Any
        if plain:
            value = plain if plain[0] not in may_resolve else _scalar(plain, limits)
            if value is NOT_SIMPLE:
                return NOT_SIMPLE
        elif quoted:
            value = quoted[1:-1]
        else:
            value = None  # null, or the mapping on the lines below
            open_key = key
        mapping[key] = value
        nodes += 2
    if not root or nodes > limits.max_nodes:
        return NOT_SIMPLE
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
        known = _RESOLVER.resolve(yaml.ScalarNode, key, (True, False)) == STR
        if len(_STRING_KEYS) >= 10_000:
            _STRING_KEYS.clear()
        _STRING_KEYS[key] = known
    return known


def _scalar(plain: str, limits: Limits) -> Any:
    """A plain scalar as PyYAML's safe loader builds it, or NOT_SIMPLE for what only libyaml's way handles."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, plain, (True, False))
    if tag == STR:
        return plain
    build = _SCALARS.get(tag)
    if build is None or (tag == INT and len(plain) > limits.max_int_chars):
        return NOT_SIMPLE
    try:
        return build(_CONSTRUCTOR, yaml.ScalarNode(tag, plain))
    except (ValueError, OverflowError, LookupError, yaml.YAMLError):  # an impossible date: libyaml's way says so
        return NOT_SIMPLE
