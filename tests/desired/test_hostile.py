"""Hostile manifests: each is refused with a clean ConfigurationError naming file, document and field."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.desired.loader import load
from reconciler.errors import ConfigurationError
from tests.test_yamlload import alias_bomb

GOOD = """kind: Target
metadata: {name: a}
spec:
  source: {adapter: file, path: a.yaml}
  desired: {x: 1}
"""


def problems(tmp_path: Path, text: str, name: str = "m.yaml") -> list[str]:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path)
    return [str(p) for p in info.value.problems]


def test_alias_bomb_in_desired_is_refused_fast(tmp_path: Path) -> None:
    """A 1 KB alias bomb in spec.desired is refused in well under a second, naming file, document and line."""
    bomb = "\n".join("    " + line for line in alias_bomb().splitlines())
    text = GOOD + "---\n" + GOOD.replace("name: a", "name: b").replace("  desired: {x: 1}\n", "  desired:\n" + bomb)
    started = time.perf_counter()
    (found,) = problems(tmp_path, text)
    assert time.perf_counter() - started < 2.0
    assert "m.yaml: document 2: spec.desired" in found
    assert "expands to more than" in found


def test_circular_alias_is_refused(tmp_path: Path) -> None:
    """A circular alias is a problem of its document, not a RecursionError."""
    (found,) = problems(tmp_path, GOOD.replace("desired: {x: 1}", "desired: &d {x: *d}"))
    assert "m.yaml: document 1: spec.desired" in found
    assert "circular alias" in found


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("metadata.name", "metadata: {name: a, name: b}"),
        ("spec.source.adapter", "source: {adapter: file, path: a.yaml, adapter: env}"),
    ],
)
def test_duplicate_keys_are_refused(tmp_path: Path, field: str, text: str) -> None:
    """A key named twice is refused, naming the key, the file and the document; last-wins is gone."""
    doc = (
        GOOD.replace("metadata: {name: a}", text)
        if field == "metadata.name"
        else GOOD.replace("source: {adapter: file, path: a.yaml}", text)
    )
    (found,) = problems(tmp_path, GOOD + "---\n" + doc.replace("name: a}", "name: c}"))
    assert f"m.yaml: document 2: {field}: " in found
    assert "duplicate key" in found


def test_huge_integer_in_desired_is_refused(tmp_path: Path) -> None:
    """A 5,000-digit integer is refused cleanly (Python's int-str conversion limit never bites)."""
    (found,) = problems(tmp_path, GOOD.replace("{x: 1}", "{x: " + "7" * 5000 + "}"))
    assert "m.yaml: document 1: spec.desired.x: line 5: an integer of 5000 characters" in found


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    """Deep nesting in desired values is refused, never a RecursionError."""
    (found,) = problems(tmp_path, GOOD.replace("{x: 1}", "{x: " + "[" * 400 + "]" * 400 + "}"))
    assert "m.yaml: document 1: spec.desired.x" in found
    assert "nested deeper than" in found


@pytest.mark.parametrize(
    "interval",
    [".inf", ".nan", "-1", "0", "99999999999999999999999d", "9" * 400, "'٣s'", "0.5s", "8d", "1" + "0" * 400],
)
def test_intervals_out_of_range_are_refused(tmp_path: Path, interval: str) -> None:
    """Intervals the scheduler cannot use (infinite, NaN, zero, absurd, non-ASCII) are refused in validation,
    so they never reach a daemon worker; the problem names the file, document and field."""
    (found,) = problems(tmp_path, GOOD + f"  interval: {interval}\n")
    assert "m.yaml: document 1 (a): spec.interval: " in found


def test_health_durations_are_bounded(tmp_path: Path) -> None:
    """Health gate durations are bounded too (1ms to 1h)."""
    text = GOOD + "  health:\n    http: {url: 'http://x', within: .inf, timeout: 2h}\n"
    found = problems(tmp_path, text)
    assert any("spec.health.http.within: a duration must be between 1ms and 1h" in p for p in found)
    assert any("spec.health.http.timeout: a duration must be between 1ms and 1h" in p for p in found)


def test_intervals_in_range_still_load(tmp_path: Path) -> None:
    """Every form of a sane interval loads as before."""
    for interval, expected in (("1s", 1.0), ("30s", 30.0), ("5m", 300.0), ("7d", 604800.0), ("90", 90.0)):
        (tmp_path / "m.yaml").write_text(GOOD + f"  interval: {interval}\n")
        assert load(tmp_path).targets["a"].spec.interval == expected
