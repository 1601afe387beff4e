from __future__ import annotations

from typing import Any

import pytest

from reconciler.domain.selection import Selection, SelectionError

FLAGS: dict[str, Any] = {
    "flags": {
        "a": {"defaultVariant": "on", "state": "ENABLED", "variants": {"on": True, "off": False}},
        "b": {"defaultVariant": "off", "state": "DISABLED"},
        "c": {"state": "ENABLED"},
        "d*": {"defaultVariant": "on"},
    },
    "$schema": "https://flagd.dev/schema/v0/flags.json",
}


def test_projects_one_value_per_flag() -> None:
    """The issue's example: each flag's defaultVariant, keyed by flag; siblings and flags without one are left
    out (absent, not null)."""
    assert Selection.parse("/flags/*/defaultVariant").apply(FLAGS) == {"a": "on", "b": "off", "d*": "on"}


def test_new_upstream_fields_change_nothing() -> None:
    """A field the service adds next to the selected value does not change the projection."""
    grown = {"flags": {k: {**v, "metadata": {"owner": "x"}} for k, v in FLAGS["flags"].items()}}
    select = Selection.parse("/flags/*/defaultVariant")
    assert select.apply(grown) == select.apply(FLAGS)


def test_two_wildcards_nest_two_levels() -> None:
    """Each wildcard is one level of the result."""
    doc = {"projects": {"p1": {"flags": {"x": {"on": True}}}, "p2": {"flags": {"y": {"on": False}}}}}
    assert Selection.parse("/projects/*/flags/*/on").apply(doc) == {"p1": {"x": True}, "p2": {"y": False}}


def test_partial_glob_keys_by_the_whole_key() -> None:
    """A glob within a segment (`a*`) keeps the keys it matches, whole."""
    doc = {"alpha": 1, "abc": 2, "beta": 3}
    assert Selection.parse("/a*").apply(doc) == {"alpha": 1, "abc": 2}


def test_escaped_wildcard_names_one_key() -> None:
    """`[*]` is a literal `*`: `/flags/d[*]` selects the key `d*` only, as a plain pointer would."""
    assert Selection.parse("/flags/d[*]/defaultVariant").apply(FLAGS) == "on"
    assert Selection.parse("/flags/d[*]").levels == 0


def test_without_wildcards_it_is_a_pointer() -> None:
    """No wildcard: the value at the pointer, whatever its type."""
    assert Selection.parse("/flags/a/variants").apply(FLAGS) == {"on": True, "off": False}
    assert Selection.parse("").apply(FLAGS) is FLAGS


def test_the_fixed_part_must_exist() -> None:
    """A missing fixed part means the answer is not the shape the selection expects: an error, not `{}`."""
    with pytest.raises(SelectionError, match="nothing at /features"):
        Selection.parse("/features/*/enabled").apply(FLAGS)


def test_lists_are_named_by_a_key_field() -> None:
    """A wildcard over a list names its items by the given field; without one it is an error, not indexes."""
    doc = {"features": [{"name": "a", "enabled": True}, {"name": "b", "enabled": False}, {"name": "c"}]}
    select = Selection.parse("/features/*/enabled")
    assert select.apply(doc, "name") == {"a": True, "b": False}
    with pytest.raises(SelectionError, match="is a list"):
        select.apply(doc)
    with pytest.raises(SelectionError, match="no plain 'id' field"):
        select.apply(doc, "id")
    with pytest.raises(SelectionError, match="two items named 'a'"):
        select.apply({"features": [{"name": "a", "enabled": 1}, {"name": "a", "enabled": 2}]}, "name")


def test_wildcard_over_scalars_selects_nothing() -> None:
    """Values that are not containers have nothing below them: they are left out."""
    assert Selection.parse("/*/x").apply({"a": 1, "b": {"x": 2}}) == {"b": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [("flags/*", "must start with '/'"), ("/flags/**", r"`\*\*` is not allowed"), ("/flags/[a", "no `]` closes")],
)
def test_bad_selections_are_refused(text: str, message: str) -> None:
    """A selection that is not a pointer, uses `**`, or opens a `[` it never closes is an error."""
    with pytest.raises(ValueError, match=message):
        Selection.parse(text)
