from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.diff.compare import CompareOptions, compare
from reconciler.domain.manifest import DriftOp
from reconciler.domain.paths import MISSING, PathGlob, set_in, to_pointer
from reconciler.domain.values import Redacted, canonical_json, strict_equal


def ops(desired: Any, observed: Any, **options: Any) -> dict[str, str]:
    return {i.pointer: i.op.value for i in compare(desired, observed, CompareOptions(**options)).items}


def test_the_four_ops() -> None:
    """Live-only keys are add, desired-only remove, same type change, other type type_change."""
    desired = {"keep": 1, "gone": 1, "val": 1, "typ": 1}
    observed = {"keep": 1, "new": 1, "val": 2, "typ": "1"}
    assert ops(desired, observed) == {"/gone": "remove", "/val": "change", "/typ": "type_change", "/new": "add"}


def test_types_are_strict() -> None:
    """1, 1.0, "1" and true all differ; null differs from a missing key."""
    for live in (1.0, "1", True):
        assert ops({"x": 1}, {"x": live}) == {"/x": "type_change"}
    assert ops({"x": None}, {}) == {"/x": "remove"}
    assert ops({}, {"x": None}) == {"/x": "add"}
    assert ops({"x": None}, {"x": None}) == {}


def test_dotted_keys_are_not_nested_keys() -> None:
    """{"a.b": 1} and {"a": {"b": 1}} are different paths."""
    assert ops({"a.b": 1}, {"a": {"b": 1}}) == {"/a.b": "remove", "/a": "add"}


def test_map_against_scalar_is_one_type_change() -> None:
    """A map where live has a scalar is one type_change at that path, with both whole values."""
    result = compare({"a": {"b": 1, "c": 2}}, {"a": 5})
    assert [(i.pointer, i.op, i.desired, i.observed) for i in result.items] == [
        ("/a", DriftOp.TYPE_CHANGE, {"b": 1, "c": 2}, 5)
    ]


def test_missing_subtree_is_one_item() -> None:
    """A whole section missing from live is one remove item carrying the section."""
    result = compare({"db": {"a": 1, "b": 2}}, {})
    assert [(i.pointer, i.op, i.desired, i.observed) for i in result.items] == [
        ("/db", DriftOp.REMOVE, {"a": 1, "b": 2}, MISSING)
    ]
    assert (result.leaves, result.differing) == (2, 2)


def test_lists_are_whole_values_unless_keyed() -> None:
    """Without list_keys a list is one value; with a key its items are compared by that key."""
    desired = {"servers": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}
    observed = {"servers": [{"name": "b", "port": 2}, {"name": "a", "port": 9}]}
    assert ops(desired, observed) == {"/servers": "change"}
    assert ops(desired, observed, list_keys={("servers",): "name"}) == {"/servers/a/port": "change"}
    assert ops({"l": [1]}, {"l": [1.0]}) == {"/l": "change"}


def test_ignore_globs_skip_both_sides() -> None:
    """Ignored paths are never drift, whichever side has them, at any depth."""
    ignore = (PathGlob.parse("/metadata/**"), PathGlob.parse("/*/cache"))
    desired = {"a": {"cache": 1, "x": 1}, "metadata": {"v": 1}}
    observed = {"a": {"cache": 2, "x": 1}, "metadata": {"v": 2, "w": 3}}
    assert ops(desired, observed, ignore=ignore) == {}
    assert ops({}, {"metadata": {"x": 1}, "b": {"cache": 1, "y": 2}}, ignore=ignore) == {"/b/y": "add"}


def test_secrets_are_compared_but_never_shown() -> None:
    """A secret path differs when the values differ, and the drift item carries only keyed hashes."""
    options = CompareOptions(secrets=(PathGlob.parse("/db/password"),), hmac_key=b"k")
    same = compare({"db": {"password": "hunter2"}}, {"db": {"password": "hunter2"}}, options)
    assert same.items == ()
    differ = compare({"db": {"password": "hunter2"}}, {"db": {"password": "letmein"}}, options)
    (item,) = differ.items
    assert item.secret and item.op is DriftOp.CHANGE
    assert isinstance(item.desired, Redacted) and isinstance(item.observed, Redacted)
    assert "hunter2" not in repr(differ) and "letmein" not in repr(differ)
    missing = compare({"db": {"user": "u", "password": "hunter2"}}, {}, options)
    assert {i.pointer: i.secret for i in missing.items} == {"/db/user": False, "/db/password": True}
    assert "hunter2" not in repr(missing)


def test_a_secret_glob_over_a_mapping_compares_each_leaf_on_its_own_path() -> None:
    """A secret glob marks the leaves below it secret; it never turns the mapping into one opaque value."""
    for glob in ("/creds/**", "/creds"):
        options = CompareOptions(secrets=(PathGlob.parse(glob),), hmac_key=b"k")
        desired = {"creds": {"token": "t0ken", "user": "app", "tls": {"key": "k1"}}}
        live = {"creds": {"token": "stolen", "user": "app", "extra": "x1", "tls": {"key": "k2"}}}
        result = compare(desired, live, options)
        assert {i.pointer: (i.op.value, i.secret) for i in result.items} == {
            "/creds/token": ("change", True),
            "/creds/tls/key": ("change", True),
            "/creds/extra": ("add", True),
        }, glob
        assert (result.leaves, result.differing) == (4, 3)
        assert all(isinstance(i.desired, Redacted) or i.desired is MISSING for i in result.items)
        assert "stolen" not in repr(result) and "x1" not in repr(result)
    ignored = CompareOptions(secrets=(PathGlob.parse("/creds/**"),), ignore=(PathGlob.parse("/creds/extra"),))
    assert [i.pointer for i in compare(desired, live, ignored).items] == ["/creds/token", "/creds/tls/key"]


def test_a_secret_glob_keeps_keyed_lists_and_one_sided_keys_as_plain_paths_have_them() -> None:
    """Under a secret glob a keyed list compares item by item, and a key on one side only is one item, as
    without the glob: a live-only user is an add of its own (prune decides), never a change of the list."""
    users = {("creds", "users"): "name"}
    desired = {"creds": {"users": [{"name": "alice", "pw": "alice-old"}]}}
    live = {
        "creds": {"users": [{"name": "alice", "pw": "alice-new"}, {"name": "bob", "pw": "bob-pw"}], "tls": {"k": 1}}
    }
    plain = compare(desired, live, CompareOptions(list_keys=users))
    secret = compare(
        desired, live, CompareOptions(secrets=(PathGlob.parse("/creds/**"),), hmac_key=b"k", list_keys=users)
    )
    assert [(i.pointer, i.op.value) for i in secret.items] == [(i.pointer, i.op.value) for i in plain.items]
    assert [i.pointer for i in secret.items] == ["/creds/users/alice/pw", "/creds/users/bob", "/creds/tls"]
    assert all(i.secret for i in secret.items) and "bob-pw" not in repr(secret) and "alice-" not in repr(secret)
    assert (secret.leaves, secret.differing) == (plain.leaves, plain.differing)


def test_drift_percentage() -> None:
    """Differing leaf paths over the union of leaf paths, times 100; 0.0 when both are empty."""
    assert compare({}, {}).drift_percent == 0.0
    result = compare({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4})
    assert (result.leaves, result.differing) == (4, 3)
    assert result.drift_percent == 75.0


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=16), st.text(max_size=3)
)
documents = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text("ab./~", max_size=2), children, max_size=3)
    ),
    max_leaves=12,
).filter(lambda d: isinstance(d, dict)) | st.dictionaries(st.text("abc", max_size=2), json_scalars, max_size=4)


@given(documents)
def test_compare_with_itself_is_empty(doc: dict[str, Any]) -> None:
    """compare(a, a) finds nothing."""
    assert compare(doc, copy.deepcopy(doc)).items == ()


@given(documents, documents)
def test_applying_the_fix_turns_live_into_desired(desired: dict[str, Any], observed: dict[str, Any]) -> None:
    """Setting every drift item's desired value on live (deleting where desired is missing) gives desired."""
    fixed = copy.deepcopy(observed)
    for item in compare(desired, observed).items:
        if item.path:
            set_in(fixed, item.path, item.desired)
        else:
            fixed = copy.deepcopy(item.desired)
    assert strict_equal(fixed, desired), (canonical_json(fixed), canonical_json(desired))


@given(documents, documents)
def test_no_two_paths_render_the_same(desired: dict[str, Any], observed: dict[str, Any]) -> None:
    """Different paths never share a JSON Pointer."""
    items = compare(desired, observed).items
    assert len({to_pointer(i.path) for i in items}) == len({i.path for i in items}) == len(items)


@given(documents, documents, st.sampled_from([(), ("/a",), ("/a/*",), ("/*/b",)]), st.sampled_from([(), ("/b",)]))
def test_counting_alone_gives_the_same_figures(
    desired: dict[str, Any], observed: dict[str, Any], ignore: tuple[str, ...], secrets: tuple[str, ...]
) -> None:
    """Without items (what parity's figures use), the leaf counts are those of the full comparison, ignored
    and secret paths included, and nothing is built."""
    options = CompareOptions(ignore=tuple(map(PathGlob.parse, ignore)), secrets=tuple(map(PathGlob.parse, secrets)))
    full = compare(desired, observed, options)
    counted = compare(desired, observed, options, items=False)
    assert (counted.leaves, counted.differing, counted.items) == (full.leaves, full.differing, ())
