from __future__ import annotations

import pytest

from reconciler.diff.compare import compare
from reconciler.diff.normalize import as_bool, as_bytes, as_duration, as_lower, as_number, normalize
from reconciler.domain.manifest import NormalizeRule


@pytest.mark.parametrize(
    ("convert", "value", "expected"),
    [
        (as_bytes, "10mb", 10 * 1024**2),
        (as_bytes, "10MiB", 10 * 1024**2),
        (as_bytes, "512k", 512 * 1024),
        (as_bytes, "1.5g", int(1.5 * 1024**3)),
        (as_bytes, 10485760, 10485760),
        (as_bytes, "lots", "lots"),
        (as_duration, "60s", 60),
        (as_duration, "1m", 60),
        (as_duration, "60", 60),
        (as_duration, "250ms", 0.25),
        (as_duration, 60.0, 60),
        (as_bool, "True", True),
        (as_bool, "off", False),
        (as_bool, 1, True),
        (as_bool, "maybe", "maybe"),
        (as_number, "30", 30),
        (as_number, "1.5", 1.5),
        (as_number, "x", "x"),
        (as_lower, "INFO", "info"),
    ],
)
def test_converters(convert: object, value: object, expected: object) -> None:
    """Each normaliser reads the usual spellings and leaves what it cannot read alone."""
    result = convert(value)  # type: ignore[operator]
    assert result == expected and type(result) is type(expected)


def test_normalisers_apply_to_both_sides_before_comparison() -> None:
    """Equal settings written differently are not drift once both sides are normalised; real drift remains."""
    rules = [
        NormalizeRule.model_validate({"paths": ["/cache/max_memory"], "as": "bytes"}),
        NormalizeRule.model_validate({"paths": ["/**/timeout"], "as": "duration"}),
        NormalizeRule.model_validate({"paths": ["/flags/*"], "as": "bool"}),
    ]
    desired = {"cache": {"max_memory": 10485760}, "db": {"timeout": 60}, "flags": {"a": True, "b": False}}
    live = {"cache": {"max_memory": "10mb"}, "db": {"timeout": "1m"}, "flags": {"a": "True", "b": "yes"}}
    items = compare(normalize(desired, rules), normalize(live, rules)).items
    assert [(i.pointer, i.desired, i.observed) for i in items] == [("/flags/b", False, True)]
    assert live["cache"]["max_memory"] == "10mb"  # the documents themselves are not changed
