"""Edit a live file's text so that it holds a new document and keeps everything else: comments, key order,
quoting, indentation. A fix changes the values it fixes and nothing else.

`edit` compares the document the file holds with the one it should hold, as a list of edits (set, delete,
add, each at a path), and hands them to the format's editor: YAML by splicing the text at the parsed
nodes' positions (round-trip editing through ruamel.yaml where a splice cannot be made: anchors, merge keys,
flow mappings), TOML through tomlkit, `.env` and INI line by line, JSON re-rendered with the file's own
indentation. Every result is parsed back by the caller; an editor that cannot keep the shape raises
Unshaped, and the caller renders the whole file instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import tomlkit
import tomlkit.exceptions
import tomlkit.items

from reconciler.domain.paths import MISSING, KeyPath
from reconciler.domain.values import strict_equal


class Unshaped(Exception):  # not an error to report: a signal to render the whole file instead
    """This editor cannot make the change while keeping the file's shape."""


class Edit(NamedTuple):
    """Set `path` to `value` (replacing what is there), or delete it (`value` is MISSING), or add it (`new`)."""

    path: KeyPath
    value: Any
    new: bool = False


def edits(current: Any, updated: Any, path: KeyPath = (), *, into_lists: bool = True) -> list[Edit]:
    """The smallest edits that turn `current` into `updated`: mappings key by key (deleted keys first, then
    changed ones in the file's order, then new ones in the new document's order), lists of one length item by
    item (when `into_lists`), anything else replaced whole."""
    if type(current) is dict and type(updated) is dict:
        out = [Edit((*path, k), MISSING) for k in current if k not in updated]
        for key, value in current.items():
            if key in updated and not strict_equal(value, updated[key]):
                out.extend(edits(value, updated[key], (*path, key), into_lists=into_lists))
        out.extend(Edit((*path, k), v, new=True) for k, v in updated.items() if k not in current)
        return out
    if into_lists and type(current) is list and type(updated) is list and len(current) == len(updated):
        out = []
        for index, (old, new) in enumerate(zip(current, updated, strict=True)):
            if not strict_equal(old, new):
                out.extend(edits(old, new, (*path, str(index)), into_lists=into_lists))
        return out
    return [] if strict_equal(current, updated) else [Edit(path, updated)]


# -- JSON: no comments to keep; key order is the documents', indentation and escaping the file's -----------


_INDENT = re.compile(r"[\[{]\s*?\n([ \t]+)\S")


def edit_json(text: str, current: dict[str, Any], updated: dict[str, Any]) -> str:
    """`updated` rendered as the file renders JSON: its indentation, its escaping, its final newline."""
    found = _INDENT.search(text)
    indent: str | None = found.group(1) if found else None
    compact = found is None and ", " not in text and ": " not in text
    separators = (",", ":") if compact else ((",", ": ") if indent is not None else (", ", ": "))
    ensure_ascii = "\\u" in text and text.isascii()
    body = json.dumps(updated, indent=indent, ensure_ascii=ensure_ascii, separators=separators)
    return body + ("\n" if text.endswith("\n") else "")


# -- TOML: tomlkit keeps comments, order, whitespace and string styles ---------------------------------------


def edit_toml(text: str, current: dict[str, Any], updated: dict[str, Any]) -> str:
    try:
        document = tomlkit.parse(text)
    except (tomlkit.exceptions.TOMLKitError, RecursionError, ValueError):
        raise Unshaped("tomlkit cannot read it") from None
    try:
        for change in edits(current, updated, into_lists=False):
            parent: Any = document
            for segment in change.path[:-1]:
                parent = parent[segment]
            key = change.path[-1]
            if change.value is MISSING:
                del parent[key]
            elif change.new:
                parent[key] = change.value
            else:
                parent[key] = _toml_like(parent[key], change.value)
        return tomlkit.dumps(document)
    except tomlkit.exceptions.TOMLKitError:
        raise Unshaped("tomlkit cannot make the change") from None


def _toml_like(old: Any, value: Any) -> Any:
    """`value` in the string style of the item it replaces (a literal 'string' stays literal where it can);
    tomlkit keeps the item's place and comment itself."""
    if not (isinstance(old, tomlkit.items.String) and isinstance(value, str)):
        return value
    kind = tomlkit.items.StringType
    literal = old.type in (kind.SLL, kind.MLL)
    multiline = old.type in (kind.MLB, kind.MLL)
    controls = any(c < " " and c not in "\t\n" for c in value)
    if literal and (controls or "'''" in value or (not multiline and ("'" in value or "\n" in value))):
        literal = False  # a literal string cannot hold it
    return tomlkit.string(value, literal=literal, multiline=multiline)


Editor = Callable[[str, dict[str, Any], dict[str, Any]], str]
