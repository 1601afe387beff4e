"""Durations as people write them: '500ms', '60s', '5m', '1h', '1d' or a number of seconds. One parser, used by
manifests (bounded, in validation) and by the `duration` normaliser (live values, unbounded)."""

from __future__ import annotations

import math
import re
from typing import Any

# ASCII digits only: '\d' alone would take '٣s' (Arabic-Indic three) for 3 s.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SHOWN = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


def parse(text: str) -> float | None:
    """Seconds, for a string in duration syntax (units in lower case); None when it is not one."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return float(match.group(1)) * UNIT_S[match.group(2)]


def seconds(value: Any, *, min_s: float, max_s: float) -> float:
    """A manifest's duration (a string as above, or a number of seconds) in seconds, within [min_s, max_s];
    ValueError otherwise, saying what is allowed."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string such as '60s'")
    parsed: float | None
    if isinstance(value, int | float):
        parsed = float(value) if isinstance(value, float) or abs(value) <= 10**30 else math.inf
    else:
        parsed = parse(value) if isinstance(value, str) else None
    if parsed is None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"{shown} is not a duration such as '500ms', '60s', '5m' or '1h'")
    if not (min_s <= parsed <= max_s):  # also refuses NaN
        raise ValueError(f"a duration must be between {render(min_s)} and {render(max_s)}")
    return parsed


def render(value_s: float) -> str:
    """The shortest exact form of a duration: 604800 → '7d', 0.05 → '50ms', 90 → '90s'."""
    for unit, size in _SHOWN:
        count = value_s / size
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{value_s:g}s"
