"""Key paths: tuples of segments inside, JSON Pointers (RFC 6901) outside, and globs over them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

KeyPath = tuple[str, ...]


class _Missing:
    """The value of a key that is not there (distinct from null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def to_pointer(path: KeyPath) -> str:
    """Render a key path as a JSON Pointer; the root is the empty string."""
    joined = "/".join(path)
    # No segment holds "~" or "/" (then the join has exactly one "/" between segments): nothing to escape.
    # The common case, and several times faster than escaping segment by segment (a pass with 100,000
    # drifted keys renders each pointer a few times).
    if "~" not in joined and joined.count("/") == len(path) - 1:
        return "/" + joined if path else ""
    return "".join("/" + seg.replace("~", "~0").replace("/", "~1") for seg in path)


def from_pointer(pointer: str) -> KeyPath:
    """Parse a JSON Pointer; raises ValueError when it is not one."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON Pointer {pointer!r} must start with '/'")
    if re.search(r"~[^01]|~$", pointer):
        raise ValueError(f"JSON Pointer {pointer!r} has a '~' not followed by 0 or 1")
    return tuple(seg.replace("~1", "/").replace("~0", "~") for seg in pointer[1:].split("/"))


@dataclass(frozen=True, slots=True)
class PathGlob:
    """A JSON-Pointer glob: `*` is one segment, `**` any number (zero included); other wildcards
    (`log_*`, `?`) match within one segment."""

    pattern: str
    segments: KeyPath

    @classmethod
    def parse(cls, pattern: str) -> PathGlob:
        return cls(pattern, from_pointer(pattern))

    @classmethod
    def literal(cls, path: KeyPath) -> PathGlob:
        """The glob that matches exactly `path`, whatever characters its keys hold."""
        return cls.parse(to_pointer(tuple(escape_segment(s) for s in path)))

    def matches(self, path: KeyPath) -> bool:
        return _match(self.segments, path)

    def __str__(self) -> str:
        return self.pattern


def _match(pattern: KeyPath, path: KeyPath) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    return segment_matches(head, path[0]) and _match(rest, path[1:])


@lru_cache(maxsize=4096)
def segment_matches(pattern: str, segment: str) -> bool:
    if pattern == "*":
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(segment, pattern)
    return pattern == segment


_GLOB_CHARS = frozenset("*?[")


def escape_segment(segment: str) -> str:
    """A glob segment that matches exactly the key `segment`: `*`, `?` and `[` in it become `[*]`, `[?]`, `[[]`.
    Every glob built from a literal path goes through this, so that a key named `a*` never stands for `abc`."""
    if not any(c in _GLOB_CHARS for c in segment):
        return segment
    return "".join(f"[{c}]" if c in _GLOB_CHARS else c for c in segment)


def literal_key(segment: str) -> str | None:
    """The one key a glob segment matches, when it matches only one (`a[*]b` → `a*b`, `name` → `name`);
    None for a real wildcard (`*`, `a*`, `v?`, `[ab]`)."""
    if not any(c in _GLOB_CHARS for c in segment):
        return segment
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c in "*?":
            return None
        if c == "[":
            # a one-character class `[x]` (not a negation `[!…]`) is an escape of x
            if i + 2 < len(segment) and segment[i + 2] == "]" and segment[i + 1] not in "!]":
                out.append(segment[i + 1])
                i += 3
                continue
            return None
        out.append(c)
        i += 1
    return "".join(out)


def open_class(segment: str) -> bool:
    """Whether a glob segment has a '[' that no ']' closes. fnmatch would quietly match such a '[' literally, so
    '/[' meant as a pattern matches nothing the author expected; globs that people write refuse it."""
    i = 0
    while (i := segment.find("[", i)) >= 0:
        j = i + 1
        if segment[j : j + 1] == "!":
            j += 1
        if segment[j : j + 1] == "]":  # a leading ']' is a member of the class, not its end
            j += 1
        end = segment.find("]", j)
        if end < 0:
            return True
        i = end + 1
    return False


def any_match(globs: Iterable[PathGlob], path: KeyPath) -> bool:
    return any(g.matches(path) for g in globs)


def list_item_index(items: list[Any], key: str, segment: str) -> int | None:
    """Index of the item of a keyed list whose `key` renders as `segment`."""
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and key in item and key_segment(item[key]) == segment:
            return i
    return None


def key_segment(value: Any) -> str:
    """How a list item's key value appears as a path segment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def get_in(doc: Any, path: KeyPath, list_keys: Mapping[KeyPath, str] | None = None) -> Any:
    """The value at `path`, or MISSING; keyed lists are addressed by their key."""
    node = doc
    for depth, seg in enumerate(path):
        if type(node) is dict or isinstance(node, Mapping):  # dict first: the ABC check costs several times more
            node = node.get(seg, MISSING)
            if node is MISSING:
                return MISSING
        elif isinstance(node, list) and list_keys and (key := list_keys.get(path[:depth])) is not None:
            index = list_item_index(node, key, seg)
            if index is None:
                return MISSING
            node = node[index]
        else:
            return MISSING
    return node


def set_in(doc: dict[str, Any], path: KeyPath, value: Any, list_keys: Mapping[KeyPath, str] | None = None) -> None:
    """Set (or, with MISSING, delete) the value at `path` in place, creating mappings on the way."""
    if not path:
        raise ValueError("cannot replace the whole document")
    node: Any = doc
    for depth, seg in enumerate(path[:-1]):
        key = list_keys.get(path[:depth]) if list_keys else None
        if isinstance(node, list) and key is not None:
            index = list_item_index(node, key, seg)
            if index is None:
                if value is MISSING:
                    return
                node.append({key: seg})
                index = len(node) - 1
            node = node[index]
        elif isinstance(node, dict):
            if not isinstance(node.get(seg), dict | list):
                if value is MISSING:
                    return
                node[seg] = {}
            node = node[seg]
        else:
            raise ValueError(f"cannot descend into a {type(node).__name__} at {to_pointer(path[: depth + 1])}")
    last = path[-1]
    key = list_keys.get(path[:-1]) if list_keys else None
    if isinstance(node, list) and key is not None:
        index = list_item_index(node, key, last)
        if value is MISSING:
            if index is not None:
                del node[index]
        elif index is None:
            node.append(value)
        else:
            node[index] = value
    elif isinstance(node, dict):
        if value is MISSING:
            node.pop(last, None)
        else:
            node[last] = value
    else:
        raise ValueError(f"cannot set a key inside a {type(node).__name__} at {to_pointer(path[:-1])}")


def leaf_paths(doc: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Every leaf path of a document; lists are leaves (values), as the comparison takes them by default."""
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            yield from leaf_paths(value, (*path, str(key)))
    elif path:
        yield path
