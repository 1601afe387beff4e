from __future__ import annotations

import pytest

from reconciler.domain.paths import (
    MISSING,
    PathGlob,
    escape_segment,
    from_pointer,
    get_in,
    literal_key,
    set_in,
    to_pointer,
)


@pytest.mark.parametrize(
    ("path", "pointer"),
    [((), ""), (("a",), "/a"), (("a.b",), "/a.b"), (("a", "b"), "/a/b"), (("a/b", "~c"), "/a~1b/~0c"), (("",), "/")],
)
def test_pointer_round_trip(path: tuple[str, ...], pointer: str) -> None:
    """Key paths render as RFC 6901 pointers, with ~ and / escaped, and parse back unchanged."""
    assert to_pointer(path) == pointer
    assert from_pointer(pointer) == path


@pytest.mark.parametrize("bad", ["a/b", "/a~2", "/a~"])
def test_bad_pointer_is_refused(bad: str) -> None:
    """A pointer without a leading slash, or with a bad escape, is an error, not a guess."""
    with pytest.raises(ValueError):
        from_pointer(bad)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/database/*", ("database", "timeout"), True),
        ("/database/*", ("database", "pool", "size"), False),
        ("/database/**", ("database",), True),
        ("/database/**", ("database", "pool", "size"), True),
        ("/**/password", ("a", "b", "password"), True),
        ("/**/password", ("password",), True),
        ("/log_*", ("log_level",), True),
        ("/log_*", ("level",), False),
        ("/a", ("a", "b"), False),
    ],
)
def test_globs(pattern: str, path: tuple[str, ...], expected: bool) -> None:
    """`*` is one segment, `**` any number including none, other wildcards match within a segment."""
    assert PathGlob.parse(pattern).matches(path) is expected


def test_get_and_set_through_keyed_lists() -> None:
    """A keyed list is addressed by its items' key, for reading, replacing, adding and deleting."""
    doc = {"servers": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}
    keys = {("servers",): "name"}
    assert get_in(doc, ("servers", "b", "port"), keys) == 2
    assert get_in(doc, ("servers", "c"), keys) is MISSING
    set_in(doc, ("servers", "b", "port"), 3, keys)
    set_in(doc, ("servers", "c"), {"name": "c", "port": 4}, keys)
    set_in(doc, ("servers", "a"), MISSING, keys)
    assert doc == {"servers": [{"name": "b", "port": 3}, {"name": "c", "port": 4}]}


def test_set_creates_maps_and_delete_is_quiet_when_absent() -> None:
    """Setting a deep path creates the maps on the way; deleting a path that is not there changes nothing."""
    doc: dict[str, object] = {}
    set_in(doc, ("a", "b", "c"), 1)
    set_in(doc, ("x", "y"), MISSING)
    assert doc == {"a": {"b": {"c": 1}}}
    assert get_in(doc, ("a", "b", "c", "d")) is MISSING


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("/a[*]", "a*", True),
        ("/a[*]", "abc", False),
        ("/a*", "abc", True),
        ("/v[?]", "v?", True),
        ("/v[?]", "v1", False),
        ("/[[]x]", "[x]", True),
        ("/[[]x]", "x", False),
        ("/[*][*]", "**", True),
        ("/[*][*]", "a", False),
    ],
)
def test_bracket_escapes_match_one_key(pattern: str, key: str, expected: bool) -> None:
    """`[*]`, `[?]` and `[[]` stand for the characters themselves, so a key that holds them can be named alone."""
    assert PathGlob.parse(pattern).matches((key,)) is expected


@pytest.mark.parametrize("key", ["a*", "a?", "[x]", "**", "*", "x[!a]", "plain", "a~b/c"])
def test_a_literal_glob_matches_its_path_and_nothing_else(key: str) -> None:
    """A glob built from a literal path (secrets, references) matches that path only: a key `a*` never hides
    `abc`, `**` never stands for any depth."""
    glob = PathGlob.literal(("top", key))
    assert glob.matches(("top", key))
    for other in ("abc", "a", "ab", "x", "top"):
        if other != key:
            assert not glob.matches(("top", other))
    assert not glob.matches(("top", "x", key))


@pytest.mark.parametrize(
    ("segment", "key"),
    [("name", "name"), ("a[*]b", "a*b"), ("[[]", "["), ("[?]", "?"), ("*", None), ("a*", None), ("[ab]", None)],
)
def test_literal_key_of_a_segment(segment: str, key: str | None) -> None:
    """A segment that matches one key only (escapes included) says which; a real wildcard says None."""
    assert literal_key(segment) == key
    if key is not None:
        assert literal_key(escape_segment(key)) == key
