"""One duration parser: the syntax people write, bounded where manifests use it."""

from __future__ import annotations

import math

import pytest

from reconciler.domain import durations
from reconciler.domain.durations import parse, render, seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500ms", 0.5), ("60s", 60.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), ("90", 90.0), (" 1.5 m ", 90.0)],
)
def test_accepted_syntax(text: str, expected: float) -> None:
    """Every form manifests and normalisers accepted before is still accepted, with the same value."""
    assert parse(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["\u0663s", "\u0661\u0660m", "6\uff10s", "soon", "1 week", "-1s", "1e3s", ".5s", "", "60S"]
)
def test_refused_syntax(text: str) -> None:
    """Non-ASCII digits, signs, exponents and unknown (or upper-case) units are not durations."""
    assert parse(text) is None


@pytest.mark.parametrize(
    "value",
    [
        math.inf,
        math.nan,
        -5,
        0,
        "0s",
        "99999999999999999999999d",
        "9" * 400,
        10**400,
        "8d",
        0.5,
        "\u0663s",
        True,
        None,
        [],
    ],
)
def test_bounds_refuse_what_would_break_arithmetic(value: object) -> None:
    """Infinity, NaN, zero, negatives, absurdly large and non-ASCII values are refused with a ValueError that
    says the range, never an OverflowError."""
    with pytest.raises(ValueError, match=r"between 1s and 7d|is not a duration|number of seconds"):
        seconds(value, min_s=1, max_s=7 * 86400)


def test_bounds_keep_what_is_in_range() -> None:
    """The ends of the range are included; numbers are seconds."""
    assert seconds("1s", min_s=1, max_s=604800) == 1.0
    assert seconds("7d", min_s=1, max_s=604800) == 604800.0
    assert seconds(60, min_s=1, max_s=604800) == 60.0


def test_messages_stay_short() -> None:
    """A 400-digit value is not echoed whole."""
    with pytest.raises(ValueError) as info:
        seconds("x" * 400, min_s=1, max_s=2)
    assert len(str(info.value)) < 120


def test_render() -> None:
    """Bounds are shown the way people write them."""
    assert [render(v) for v in (604800, 3600, 90, 1, 0.05, 0.001, 1.5)] == [
        "7d",
        "1h",
        "90s",
        "1s",
        "50ms",
        "1ms",
        "1500ms",
    ]
    assert durations.UNIT_S["m"] == 60.0
