from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from reconciler.desired.loader import load
from reconciler.diff import allowlist, matrix
from reconciler.diff.parity import compare_environments, compare_pair, count_pair, findings, pairs
from reconciler.domain.paths import MISSING
from reconciler.errors import ConfigurationError
from tests.conftest import EXAMPLES, REPO

NOW = datetime(2026, 11, 22, tzinfo=UTC)

FLEET = """kind: Target
metadata: {name: api-dev, app: api, environment: dev}
spec: {source: {adapter: file, path: x}, desired: {a: 1, host: dev.db, pw: "${env:PW}", only_dev: 1, flag: true}, environment_specific: [/host]}
---
kind: Target
metadata: {name: api-staging, app: api, environment: staging}
spec: {source: {adapter: file, path: x}, desired: {a: 1, host: stg.db, pw: "${env:PW2}", flag: true}, environment_specific: [/host]}
---
kind: Target
metadata: {name: api-prod, app: api, environment: prod}
spec: {source: {adapter: file, path: x}, desired: {a: 2, host: prod.db, pw: "${env:PW3}", flag: false}, environment_specific: [/host]}
---
kind: Target
metadata: {name: lonely-prod, app: lonely, environment: prod}
spec: {source: {adapter: file, path: x}, desired: {a: 1}}
---
kind: Policy
metadata: {name: p}
spec:
  expected_differences:
    - {apps: [api], environments: [staging, prod], paths: [/flag], reason: staged rollout, owner: team, expires: 2027-01-01}
    - {apps: [api], paths: [/a], reason: old, owner: team, expires: 2026-01-01}
"""


def test_batch_pairs_every_environment_pair_per_app(tmp_path: Path) -> None:
    """Pairs run lower rank first, for every pair of the environments given; apps in one environment have none."""
    (tmp_path / "f.yaml").write_text(FLEET)
    state = load(tmp_path)
    found = [(app, a.environment, b.environment) for app, a, b in pairs(state, ["prod", "dev", "staging"])]
    assert found == [("api", "dev", "staging"), ("api", "dev", "prod"), ("api", "staging", "prod")]


def test_pair_results(tmp_path: Path) -> None:
    """Environment-specific keys and references are left out; allowlisted differences are expected until they
    expire; drift percentage counts unexpected leaves only; the threshold marks a pair significant."""
    (tmp_path / "f.yaml").write_text(FLEET)
    state = load(tmp_path)
    results = {
        (r.a.environment, r.b.environment): r
        for r in compare_environments(state, ["dev", "staging", "prod"], now=NOW, threshold=0.3)
    }
    stg_prod = results[("staging", "prod")]
    assert [(i.pointer, i.kind, i.expected) for i in stg_prod.items] == [
        ("/a", "differs", False),
        ("/flag", "differs", True),
    ]
    assert stg_prod.items[0].note == "allowlist entry p/expected/1 expired 2026-01-01: old"
    assert (stg_prod.leaves, stg_prod.differing, round(stg_prod.drift_percent, 1)) == (2, 1, 50.0)
    assert stg_prod.significant
    dev_stg = results[("dev", "staging")]
    assert [(i.pointer, i.kind) for i in dev_stg.items] == [("/only_dev", "only in dev")]
    assert not any(i.pointer in ("/host", "/pw") for r in results.values() for i in r.items)
    dev_prod = results[("dev", "prod")]
    assert [i.expected for i in dev_prod.items if i.pointer == "/flag"] == [False]  # entry is for staging-prod only


def test_live_documents_are_compared_when_given(tmp_path: Path) -> None:
    """With documents by target name, those are compared instead of the desired state."""
    state = load(EXAMPLES / "desired")
    docs = {"payments-api-staging": {"log_level": "INFO"}, "payments-api-prod": {"log_level": "DEBUG"}}
    (result,) = compare_environments(state, ["staging", "prod"], documents=docs, now=NOW)
    assert [(i.pointer, i.a, i.b) for i in result.items] == [("/log_level", "INFO", "DEBUG")]
    assert result.drift_percent == 100.0


def test_public_api_example(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The Python example in docs/parity.md runs as written and prints the staging-prod pair."""
    text = (REPO / "docs" / "parity.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(REPO)
    exec(compile(block, "docs/parity.md", "exec"), {})
    assert capsys.readouterr().out.startswith("payments-api staging prod 0.0% False")


def test_baseline_pairs_each_environment_with_the_baseline_only(tmp_path: Path) -> None:
    """With a baseline, each other environment is compared with it and never with each other; the baseline is
    side a even when it ranks higher."""
    (tmp_path / "f.yaml").write_text(FLEET)
    state = load(tmp_path)
    found = [(a.environment, b.environment) for _, a, b in pairs(state, ["staging", "prod"], baseline="dev")]
    assert found == [("dev", "staging"), ("dev", "prod")]
    found = [(a.environment, b.environment) for _, a, b in pairs(state, ["dev", "staging"], baseline="prod")]
    assert found == [("prod", "dev"), ("prod", "staging")]


def test_an_unknown_environment_is_an_error(tmp_path: Path) -> None:
    """An environment or baseline that no target of an app has is refused, never compared as 'no pairs'."""
    (tmp_path / "f.yaml").write_text(FLEET)
    state = load(tmp_path)
    with pytest.raises(ConfigurationError, match="'prd'; environments: dev, staging, prod"):
        compare_environments(state, ["staging", "prd"], now=NOW)
    with pytest.raises(ConfigurationError, match="'qa'"):
        compare_environments(state, ["staging"], baseline="qa", now=NOW)


def leaves_fleet(differing: int, total: int) -> str:
    """Two environments of one app with `total` leaves, `differing` of them different."""
    dev = {f"k{i}": i for i in range(total)}
    prod = {f"k{i}": (i + 1000 if i < differing else i) for i in range(total)}
    return (
        f"kind: Target\nmetadata: {{name: a-dev, app: a, environment: dev}}\n"
        f"spec: {{source: {{adapter: file, path: x}}, desired: {json.dumps(dev)}}}\n---\n"
        f"kind: Target\nmetadata: {{name: a-prod, app: a, environment: prod}}\n"
        f"spec: {{source: {{adapter: file, path: x}}, desired: {json.dumps(prod)}}}\n"
    )


@pytest.mark.parametrize(
    ("threshold", "significant"),
    [(0.072, False), ("0.072", False), ("7.2%", False), (Decimal("0.0719"), True), ("7.19%", True), (0, True)],
)
def test_the_threshold_compares_exactly(tmp_path: Path, threshold: object, significant: bool) -> None:
    """9 of 125 leaves is exactly 7.2%: not above a 7.2% threshold however it is written (floats said it was)."""
    (tmp_path / "f.yaml").write_text(leaves_fleet(9, 125))
    (result,) = compare_environments(load(tmp_path), ["dev", "prod"], threshold=threshold, now=NOW)  # type: ignore[arg-type]
    assert (result.differing, result.leaves, result.drift_percent) == (9, 125, 7.2)
    assert result.significant is significant


def test_a_bad_threshold_is_an_error(tmp_path: Path) -> None:
    """A threshold outside 0..1, or not a number, is refused with what is accepted."""
    (tmp_path / "f.yaml").write_text(leaves_fleet(1, 2))
    for bad in ("1.5", "ten", "nan", -0.1):
        with pytest.raises(ConfigurationError, match="threshold"):
            compare_environments(load(tmp_path), ["dev", "prod"], threshold=bad, now=NOW)  # type: ignore[arg-type]


def test_counts_are_leaf_counts(tmp_path: Path) -> None:
    """A map on one side only is one difference but counts its leaves, in `differing` and in the item, as in
    the percentage; expected leaves are counted apart."""
    text = FLEET.replace("only_dev: 1", "only_dev: {x: 1, y: 2, z: 3}")
    (tmp_path / "f.yaml").write_text(text)
    results = compare_environments(load(tmp_path), ["dev", "staging"], now=NOW)
    (dev_stg,) = results
    assert [(i.pointer, i.leaves) for i in dev_stg.items] == [("/only_dev", 3)]
    assert (dev_stg.differing, dev_stg.leaves, dev_stg.expected_leaves) == (3, 5, 0)
    (stg_prod,) = compare_environments(load(tmp_path), ["staging", "prod"], now=NOW)
    assert (stg_prod.differing, stg_prod.expected_leaves) == (1, 1)


def test_expired_and_stale_allowlist_entries_are_found(tmp_path: Path) -> None:
    """An entry about a compared pair is reported when it has expired, or when its paths differ in none of the
    pairs it is about (stale); entries about pairs not compared are not judged."""
    text = FLEET + "    - {apps: [api], paths: [/gone], reason: cleanup, owner: team, expires: 2027-01-01}\n"
    text += "    - {apps: [other], paths: [/x], reason: elsewhere, owner: team, expires: 2027-01-01}\n"
    (tmp_path / "f.yaml").write_text(text)
    results = compare_environments(load(tmp_path), ["staging", "prod"], baseline="dev", now=NOW)
    found = [(f.id, f.state) for f in findings(results, NOW)]
    assert found == [("p/expected/1", "expired"), ("p/expected/2", "stale")]
    (expired,) = [f for f in findings(results, NOW) if f.state == "expired"]
    assert expired.message == "p/expected/1 expired 2026-01-01 (/a): old"


def test_baseline_matrix_rows(tmp_path: Path) -> None:
    """The baseline matrix has one row per drifted key with the baseline's value and only the environments
    that differ from it; absent keys are absent on whichever side lacks them."""
    (tmp_path / "f.yaml").write_text(FLEET)
    results = compare_environments(load(tmp_path), ["staging", "prod"], baseline="dev", now=NOW)
    found = [
        (r.pointer, r.baseline, [(c.environment, c.value, c.expected) for c in r.cells]) for r in matrix.rows(results)
    ]
    assert found == [
        ("/only_dev", 1, [("staging", MISSING, False), ("prod", MISSING, False)]),
        ("/a", 1, [("prod", 2, False)]),
        ("/flag", True, [("prod", False, False)]),  # the entry is for staging-prod only
    ]


def test_a_reference_at_a_key_with_glob_characters_leaves_out_only_that_key(tmp_path: Path) -> None:
    """A `${...}` reference at the key `a*` is left out of the pair; its sibling `abc` is still compared."""
    (tmp_path / "f.yaml").write_text(
        "kind: Target\nmetadata: {name: x-dev, app: x, environment: dev}\n"
        'spec: {source: {adapter: file, path: x}, desired: {"a*": "${env:A}", abc: 1}}\n---\n'
        "kind: Target\nmetadata: {name: x-prod, app: x, environment: prod}\n"
        'spec: {source: {adapter: file, path: x}, desired: {"a*": "${env:B}", abc: 2}}\n'
    )
    [result] = compare_environments(load(tmp_path), ["dev", "prod"], now=NOW)
    assert [(i.pointer, i.a, i.b) for i in result.items] == [("/abc", 1, 2)]


def test_count_pair_gives_compare_pairs_figures(tmp_path: Path) -> None:
    """The daemon's figures-only comparison counts what compare_pair counts, for pairs with no allowlist entry
    about them (no item built), with an active entry and with an expired one, maps on one side included."""
    text = FLEET.replace("only_dev: 1", "only_dev: {x: 1, y: 2, z: 3}")
    (tmp_path / "f.yaml").write_text(text)
    state = load(tmp_path)
    entries = allowlist.entries(state)
    seen = set()
    for app, a, b in pairs(state, ["dev", "staging", "prod"]):
        full = compare_pair(app, a, a.spec.desired, b, b.spec.desired, entries, now=NOW)
        counts = count_pair(app, a, a.spec.desired, b, b.spec.desired, entries, now=NOW)
        covered: dict[str, int] = {}
        for item in full.items:
            if item.entry is not None:
                covered[item.entry] = covered.get(item.entry, 0) + item.leaves
        assert (counts.leaves, counts.differing, dict(counts.covered)) == (full.leaves, full.differing, covered)
        seen.add((bool(full.uses), full.differing > 0, full.expected_leaves > 0))
    assert (True, True, True) in seen and (True, True, False) in seen  # active and expired entries were counted
    lonely = state.targets["lonely-prod"]
    alone = count_pair("lonely", lonely, {"a": 1, "b": {"c": 1}}, lonely, {"a": 2}, [], now=NOW)
    assert (alone.leaves, alone.differing, alone.covered) == (2, 2, ())  # no entry about it: no items
