from __future__ import annotations

import pytest

from reconciler.domain.paths import MISSING
from reconciler.domain.values import Redacted, from_json, holds, strict_equal, to_json


@pytest.mark.parametrize(
    ("a", "b"),
    [(1, 1.0), (1, True), (1, "1"), (0, False), (None, 0), ([1], [1.0]), ({"a": 1}, {"a": True}), ("", None)],
)
def test_strict_equality_tells_types_apart(a: object, b: object) -> None:
    """1, 1.0, "1" and true are different values, at any depth."""
    assert not strict_equal(a, b)
    assert not strict_equal(b, a)


def test_strict_equality_of_equal_values() -> None:
    """Equal nested values are equal, NaN included."""
    assert strict_equal({"a": [1, {"b": None}], "c": 1.5}, {"c": 1.5, "a": [1, {"b": None}]})
    assert strict_equal(float("nan"), float("nan"))


def test_missing_and_null_survive_storage_apart() -> None:
    """MISSING is stored as SQL NULL, JSON null as the text 'null'; both read back as they were."""
    assert to_json(MISSING) is None
    assert to_json(None) == "null"
    assert from_json(None) is MISSING
    assert from_json("null") is None


def test_redacted_hides_the_value_but_tells_values_apart() -> None:
    """A redacted secret shows a keyed hash: same value same hash, other value or key another hash."""
    one, same, other = Redacted.of("hunter2", b"k"), Redacted.of("hunter2", b"k"), Redacted.of("hunter3", b"k")
    assert one == same and one != other
    assert Redacted.of("hunter2", b"other-key") != one
    assert "hunter2" not in str(one) + to_json(one)
    assert from_json(to_json(one)) == one


def test_holds_is_strict_missing_aware_and_compares_secrets_by_keyed_hash() -> None:
    """MISSING equals only MISSING (not null, not ""), types stay strict, and a journaled secret matches the
    live value it was hashed from only with the same key."""
    assert holds(MISSING, MISSING) and not holds(None, MISSING) and not holds(MISSING, None)
    assert not holds("", MISSING) and not holds(1, "1") and holds({"a": [1]}, {"a": [1]})
    secret = Redacted.of("hunter2", b"k")
    assert holds("hunter2", secret, b"k") and not holds("hunter2", secret, b"other")
    assert not holds("hunter2", secret) and not holds(MISSING, secret, b"k")
