"""Hostile manifests: each is refused with a clean ConfigurationError naming file, document and field."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.classify import exceptions
from reconciler.desired.files import FileCache
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


def test_a_chain_of_3000_bases_resolves(tmp_path: Path) -> None:
    """A chain of 3,000 Bases merges without a RecursionError (the chain is walked, not recursed)."""
    bases = [
        f"kind: Base\nmetadata: {{name: b{i}}}\nspec:\n  extends: b{i + 1}\n  desired: {{k{i}: {i}}}\n"
        for i in range(2999)
    ]
    bases.append("kind: Base\nmetadata: {name: b2999}\nspec:\n  desired: {root: true}\n")
    (tmp_path / "bases.yaml").write_text("---\n".join(bases))
    (tmp_path / "m.yaml").write_text(GOOD.replace("  desired: {x: 1}\n", "  extends: b0\n  desired: {x: 1}\n"))
    desired = load(tmp_path).targets["a"].spec.desired
    assert desired["root"] is True and desired["k0"] == 0 and desired["k2998"] == 2998 and desired["x"] == 1


def test_a_long_cycle_of_bases_is_reported_briefly(tmp_path: Path) -> None:
    """A cycle through 3,000 Bases is one problem with a short message, not a RecursionError."""
    bases = [f"kind: Base\nmetadata: {{name: b{i}}}\nspec: {{extends: b{(i + 1) % 3000}}}\n" for i in range(3000)]
    (tmp_path / "bases.yaml").write_text("---\n".join(bases))
    (found,) = problems(tmp_path, GOOD.replace("  desired: {x: 1}\n", "  extends: b0\n  desired: {x: 1}\n"))
    assert "bases.yaml: document 3000 (b2999): spec.extends: extends cycle: b0 -> b1" in found
    assert "more ..." in found and len(found) < 300


@pytest.mark.parametrize("glob", ["/[", "/a/[!]", "/x[y/**", "/[]"])
def test_unclosed_glob_classes_are_refused(tmp_path: Path, glob: str) -> None:
    """A '[' that no ']' closes is refused (fnmatch would match it literally, silently)."""
    (found,) = problems(tmp_path, GOOD + f"  ignore: ['{glob}']\n")
    assert "m.yaml: document 1 (a): spec.ignore.0: " in found
    assert "never closed" in found


def test_closed_glob_classes_still_load(tmp_path: Path) -> None:
    """Character classes that close, and a literal '[' written as [[], are still fine."""
    (tmp_path / "m.yaml").write_text(GOOD + "  ignore: ['/log_[ab]', '/[[]x', '/[]]', '/**']\n")
    assert len(load(tmp_path).targets["a"].spec.ignore) == 4


POLICY = """kind: Policy
metadata: {name: p}
spec:
  exceptions:
    - {targets: [a], paths: [/x], reason: r, owner: o, expires: EXPIRES}
"""


@pytest.mark.parametrize("expires", ["20261215", "-1", "'1700000000'", "1.5", "true", "'next week'"])
def test_expiry_that_is_not_a_date_is_refused(tmp_path: Path, expires: str) -> None:
    """Numbers are not dates (pydantic read 20261215 as seconds since 1970, so the exception had expired)."""
    (found,) = problems(tmp_path, POLICY.replace("EXPIRES", expires))
    assert "m.yaml: document 1 (p): spec.exceptions.0.expires: " in found


def test_expiry_at_the_end_of_time_does_not_overflow(tmp_path: Path) -> None:
    """9999-12-31 holds to the last representable instant; classifying and listing it overflow nothing."""
    (tmp_path / "p.yaml").write_text(POLICY.replace("EXPIRES", "9999-12-31"))
    (tmp_path / "m.yaml").write_text(GOOD)
    state = load(tmp_path)
    (exception,) = state.policies[0].spec.exceptions
    assert exception.expires == datetime.max.replace(tzinfo=UTC)
    (status,) = exceptions.inventory(state, datetime.now(UTC), timedelta(days=7))
    assert status.remaining > timedelta(days=365 * 7000)


def test_expiry_in_other_zones_is_utc(tmp_path: Path) -> None:
    """Times with an offset are kept as UTC; one that lies past year 9999 in UTC is refused, not an overflow."""
    (tmp_path / "m.yaml").write_text(POLICY.replace("EXPIRES", "'2026-12-15T10:00:00+02:00'"))
    (exception,) = load(tmp_path).policies[0].spec.exceptions
    assert exception.expires.isoformat() == "2026-12-15T08:00:00+00:00"
    (found,) = problems(tmp_path, POLICY.replace("EXPIRES", "'9999-12-31T23:00:00-05:00'"))
    assert "spec.exceptions.0.expires: is out of the range of dates" in found


def test_a_manifest_too_large_is_refused_unread(tmp_path: Path) -> None:
    """A manifest over the size limit is refused, naming the file, without being read whole."""
    with (tmp_path / "big.yaml").open("wb") as handle:
        handle.truncate(32 * 1024 * 1024)
    (found,) = problems(tmp_path, GOOD)
    assert "big.yaml: cannot be read: larger than" in found


@pytest.mark.timeout(10)
def test_a_fifo_named_like_a_manifest_does_not_block(tmp_path: Path) -> None:
    """A FIFO that takes a manifest's name after the folder was listed is refused at once, not waited on."""
    os.mkfifo(tmp_path / "pipe.yaml")
    found = FileCache().get(tmp_path / "pipe.yaml")
    assert found.documents == ()
    assert [str(p) for p in found.unreadable] == [f"{tmp_path / 'pipe.yaml'}: cannot be read: not a regular file"]


def test_a_flood_of_problems_is_listed_capped(tmp_path: Path) -> None:
    """Half a million empty documents cost seconds, not minutes: a file holds at most 10,000 documents (said
    first), and an error lists at most 1,000 problems and says how many there are."""
    (tmp_path / "m.yaml").write_text("---\n{}\n" * 500_000)
    started = time.perf_counter()
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path)
    assert time.perf_counter() - started < 10
    found = [str(p) for p in info.value.problems]
    assert len(found) == 1001
    assert "(10001 problems)" in str(info.value).splitlines()[0]
    assert found[-1].endswith("and 9001 more problems")
    assert "m.yaml: document 10001: holds more than 10000 documents" in found[0]
