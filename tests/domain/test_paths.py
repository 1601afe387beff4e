from __future__ import annotations

import pytest

from reconciler.domain.paths import MISSING, PathGlob, from_pointer, get_in, set_in, to_pointer


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
