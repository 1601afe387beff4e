"""Significance, held exactly: a drift fraction is a ratio of leaf counts, and a threshold is the decimal a
person wrote, so both are Fractions and `9/125 > 0.072` is false (7.2% is not above 7.2%), as it should be;
floats would say true (9 * 100.0 / 125 / 100 is 0.07200000000000001)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

DEFAULT = Fraction(1, 10)  # 10%

Threshold = Fraction | Decimal | int | float | str


def parse(value: Threshold) -> Fraction:
    """A threshold as an exact fraction of 1: `0.072`, `"0.072"` and `"7.2%"` are all 9/125. A float is
    taken as the shortest decimal that prints as it (0.1 is 1/10, not the binary double nearest to it).
    Raises ValueError, saying what is accepted, for anything else or anything outside 0..1."""
    if isinstance(value, bool):
        raise ValueError("a threshold is a number from 0 to 1 (0.1 = 10%) or a percentage such as 7.2%, not a bool")
    if isinstance(value, Fraction):
        exact = value
    elif isinstance(value, int):
        exact = Fraction(value)
    else:
        exact = _decimal(value)
    if not 0 <= exact <= 1:
        raise ValueError(f"threshold {value!r} is outside 0 to 1 (0.1 = 10%, or write a percentage: 7.2%)")
    return exact


def _decimal(value: Decimal | float | str) -> Fraction:
    text = repr(value) if isinstance(value, float) else str(value).strip()
    scale = Fraction(1)
    if text.endswith("%"):
        text, scale = text[:-1].strip(), Fraction(1, 100)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(
            f"threshold {value!r} is not a number: give a fraction such as 0.1 (10%) or a percentage such as 7.2%"
        ) from None
    if not number.is_finite():
        raise ValueError(f"threshold {value!r} is not a finite number")
    return Fraction(number) * scale


def fraction(differing: int, leaves: int) -> Fraction:
    """Differing leaves over all leaves; 0 when there are none (DESIGN.md's drift percentage, divided by 100)."""
    return Fraction(0) if leaves == 0 else Fraction(differing, leaves)


def exceeds(differing: int, leaves: int, threshold: Fraction) -> bool:
    """Whether the drift fraction is strictly above the threshold, compared exactly."""
    return fraction(differing, leaves) > threshold


def show(threshold: Fraction) -> str:
    """A threshold as a percentage for people, exact where it is (7.2%, 10%, 33.333…% for 1/3)."""
    percent = threshold * 100
    if percent.denominator == 1:
        return f"{percent.numerator}%"
    text = f"{float(percent):.6f}".rstrip("0").rstrip(".")
    exact = Fraction(Decimal(text)) == percent
    return f"{text}%" if exact else f"{text}…%"
