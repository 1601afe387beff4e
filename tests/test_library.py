"""The library API (docs/library.md): what `from reconciler import ...` promises, pinned."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

import reconciler
from reconciler import ConfigDiff, DiffOptions, compare_configs, compare_many
from tests.conftest import REPO


def blocks() -> list[tuple[str, str]]:
    """Each Python example of docs/library.md with the output shown after it."""
    text = (REPO / "docs" / "library.md").read_text()
    return re.findall(r"```python\n(.*?)```\n\nprints[^\n]*\n\n```\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(3))
def test_docs_examples_print_what_the_page_says(
    index: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every example of docs/library.md runs as written and prints exactly the output shown under it."""
    found = blocks()
    assert len(found) == 3
    code, shown = found[index]
    monkeypatch.chdir(REPO)
    exec(compile(code, "docs/library.md", "exec"), {})
    assert capsys.readouterr().out == shown


def test_strict_types_null_and_pointer_paths() -> None:
    """1, 1.0, "1" and true differ; null differs from missing; dotted keys are not nested paths."""
    diff = compare_configs({"a": 1, "b": None, "c.d": 1, "t": True}, {"a": 1.0, "c": {"d": 1}, "t": 1})
    assert [(d.pointer, d.op.value, d.a_type, d.b_type) for d in diff.differences] == [
        ("/a", "type_change", "integer", "number"),
        ("/b", "remove", "null", "absent"),
        ("/c.d", "remove", "integer", "absent"),
        ("/t", "type_change", "boolean", "integer"),
        ("/c", "add", "absent", "object"),
    ]
    assert diff.differences[1].b is reconciler.MISSING and diff.differences[1].a is None


def test_options_by_name_or_dataclass_and_secrets() -> None:
    """Options come as fields or as a DiffOptions; secrets are compared by keyed hash and never returned."""
    a = {"db": {"password": "one", "pool": "10mb"}, "servers": [{"name": "x", "w": 1}, {"name": "y", "w": 2}]}
    b = {"db": {"password": "two", "pool": 10485760}, "servers": [{"name": "y", "w": 2}, {"name": "x", "w": 3}]}
    options = DiffOptions(secrets=["/db/password"], normalize={"/db/pool": "bytes"}, list_keys={"/servers": "name"})
    by_class = compare_configs(a, b, options)
    by_name = compare_configs(
        a, b, secrets=["/db/password"], normalize={"/db/pool": "bytes"}, list_keys={"/servers": "name"}
    )
    assert [d.pointer for d in by_class.differences] == [d.pointer for d in by_name.differences]
    assert [d.pointer for d in by_class.differences] == ["/db/password", "/servers/x/w"]
    secret = by_class.differences[0]
    assert secret.secret and secret.a_type == "secret" and "one" not in repr(secret) and "two" not in repr(secret)
    with pytest.raises(TypeError, match="either a DiffOptions or its fields"):
        compare_configs(a, b, options, ignore=["/x"])
    with pytest.raises(TypeError, match="DiffOptions has ignore"):
        compare_configs(a, b, ignores=["/x"])


def test_exact_threshold_and_leaf_counts() -> None:
    """9 of 125 leaves is 7.2%: not above 0.072 however written; a one-sided map counts its leaves."""
    a = {f"k{i}": i for i in range(125)}
    b = {f"k{i}": (-i - 1 if i < 9 else i) for i in range(125)}
    for limit in (0.072, "0.072", "7.2%", Fraction(9, 125)):
        result = compare_configs(a, b, threshold=limit)
        assert (result.differing_leaves, result.total_leaves, result.drift_percent) == (9, 125, 7.2)
        assert not result.significant
    assert compare_configs(a, b, threshold="7.19%").significant
    nested = compare_configs({"m": {"x": 1, "y": 2, "z": {"w": 3}}}, {})
    assert (nested.differing_leaves, nested.total_leaves, len(nested.differences)) == (3, 3, 1)
    assert compare_configs({}, {}).drift_percent == 0.0 and compare_configs({}, {}).equal


def test_bad_options_are_errors_naming_the_option() -> None:
    """An unknown normaliser, a glob without `/`, a bad list pointer or threshold raise ConfigurationError."""
    for given, words in (
        ({"normalize": {"/x": "loud"}}, "normalize /x: 'loud' is not one of"),
        ({"ignore": ["x"]}, "ignore: JSON Pointer 'x' must start with '/'"),
        ({"secrets": ["/a["]}, "secrets: '/a[': a '[' opens a character class"),
        ({"list_keys": {"servers": "name"}}, "list_keys:"),
        ({"threshold": "1.5"}, "outside 0 to 1"),
        ({"ignore_keys": [""]}, "must not be empty"),
    ):
        with pytest.raises(reconciler.ConfigurationError, match=re.escape(words)):
            compare_configs({}, {}, **given)


def test_compare_many_pairs_and_baseline() -> None:
    """Every pair in the order given, or each against the baseline; names limit who takes part."""
    configs = {"dev": {"a": 1}, "qa": {"a": 1}, "stg": {"a": 2}, "prod": {"a": 3}}
    assert [(r.a_name, r.b_name) for r in compare_many(configs, names=["dev", "stg", "prod"])] == [
        ("dev", "stg"),
        ("dev", "prod"),
        ("stg", "prod"),
    ]
    results = compare_many(configs, baseline="prod", names=["dev", "q*"])
    assert [(r.a_name, r.b_name, r.differing_leaves) for r in results] == [("prod", "dev", 1), ("prod", "qa", 1)]
    assert all(isinstance(r, ConfigDiff) for r in results)
    with pytest.raises(reconciler.ConfigurationError, match="baseline 'uat' is not among"):
        compare_many(configs, baseline="uat")


def test_public_names() -> None:
    """The library names are exported from the package root."""
    for name in ("compare_configs", "compare_many", "compare_environments", "allowlist_findings", "MISSING"):
        assert name in reconciler.__all__
