from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.desired.loader import load
from reconciler.diff.parity import compare_environments, pairs
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
    assert "allowlist entry expired" in stg_prod.items[0].note
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
