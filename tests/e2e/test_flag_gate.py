"""The feature-flag gate of docs/parity.md, end to end against a real unleash-server: three environments read
through the unleash adapter, compared with dev as the baseline, an allowlist with an active and an expired
entry, the Markdown for the pull request; then the flag is promoted with `reconciler apply` and the gate passes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from tests.unleash_server import ADMIN_TOKEN, Unleash, unleash_server

pytestmark = pytest.mark.integration
runner = CliRunner()

# dev, staging and prod are Unleash's development, default and production environments.
ENVIRONMENTS = {"dev": "development", "staging": "default", "prod": "production"}
POLICY = """kind: Policy
metadata: {name: flag-gate}
spec:
  default: reversible
  expected_differences:
    - apps: [flags]
      paths: ["/search-beta/**"]
      reason: "search-beta runs at 100% in dev only"
      owner: search-team
      expires: 2099-12-31
    - apps: [flags]
      paths: ["/legacy-banner/**"]
      reason: "INC-7: the banner is off in prod during the incident"
      owner: web-team
      expires: 2020-06-30
"""


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unleash]:
    """An Unleash of its own: the gate compares whole projects, so no other test's flags may be in it."""
    with unleash_server(tmp_path_factory.mktemp("unleash-gate")) as running:
        yield running


def rollout(percent: int) -> dict[str, Any]:
    return {"name": "flexibleRollout", "parameters": {"rollout": str(percent), "stickiness": "default"}}


def seed(server: Unleash) -> None:
    """dark-mode is the same everywhere; checkout-v2 is missing in prod (off, no strategy); search-beta differs on
    purpose (allowlisted); legacy-banner is off in prod, under an allowance that has expired."""
    plan: dict[str, dict[str, dict[str, Any] | None]] = {
        "dark-mode": {"dev": {"name": "default"}, "staging": {"name": "default"}, "prod": {"name": "default"}},
        "checkout-v2": {"dev": rollout(50), "staging": rollout(50), "prod": None},
        "search-beta": {"dev": rollout(100), "staging": rollout(10), "prod": rollout(10)},
        "legacy-banner": {"dev": {"name": "default"}, "staging": {"name": "default"}, "prod": {"name": "default"}},
    }
    for flag, per_env in plan.items():
        server.flag(flag)
        for env, strategy in per_env.items():
            if strategy is not None:
                server.strategy(flag, ENVIRONMENTS[env], strategy)
                server.switch(flag, ENVIRONMENTS[env], on=not (flag == "legacy-banner" and env == "prod"))


def manifests(folder: Path, server: Unleash, prod_desired: str = "{}") -> None:
    targets = []
    for env, unleash_env in ENVIRONMENTS.items():
        write = ", write: true" if env == "prod" else ""
        desired = prod_desired if env == "prod" else "{}"
        targets.append(
            f"kind: Target\nmetadata: {{name: flags-{env}, app: flags, environment: {env}}}\nspec:\n"
            f"  source: {{adapter: unleash, url: '{server.url}', environment: {unleash_env}, token: unleash{write}}}\n"
            f"  desired: {desired}\n"
        )
    (folder / "flags.yaml").write_text("---\n".join([*targets, POLICY]))


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_flag_gate_fails_on_exactly_the_unexpected_flags_then_passes_after_promotion(
    server: Unleash, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compare --baseline dev exits 2 naming checkout-v2 (missing in prod) and legacy-banner (its allowance
    expired), and reports the expired entry; search-beta is expected. After checkout-v2 is promoted to prod by
    `reconciler apply` through the admin API, and the banner retired in dev and staging, it exits 0."""
    desired = tmp_path / "desired"
    desired.mkdir()
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(desired))
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'history.db'}")
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"unleash": ADMIN_TOKEN}))
    seed(server)
    manifests(desired, server)
    assert cli("validate", str(desired)).exit_code == 0

    gate = cli("compare", "--baseline", "dev", "--format", "json")
    assert gate.exit_code == 2, gate.output
    report = json.loads(gate.stdout)
    unexpected = {
        key["path"]: sorted(env for env, cell in key["environments"].items() if not cell["expected"])
        for key in report["keys"]
    }
    assert {path.split("/")[1] for path, envs in unexpected.items() if envs} == {"checkout-v2", "legacy-banner"}
    assert unexpected["/checkout-v2/enabled"] == ["prod"]
    assert all(not envs for path, envs in unexpected.items() if path.startswith("/search-beta/"))
    assert [(a["id"], a["state"]) for a in report["allowlist"]] == [("flag-gate/expected/1", "expired")]
    assert ADMIN_TOKEN not in gate.output

    markdown = cli("compare", "--baseline", "dev", "--format", "markdown")
    assert markdown.exit_code == 2 and "/checkout-v2/enabled" in markdown.stdout

    # Promote: prod's manifest now asks for dev's checkout-v2, and apply writes it through the admin API.
    manifests(
        desired,
        server,
        prod_desired="{checkout-v2: {enabled: true, strategies: [{name: flexibleRollout, parameters: {rollout: 50}}]}}",
    )
    assert cli("db", "upgrade").exit_code == 0
    applied = cli("apply", "--target", "flags-prod", "--format", "json")
    states = [a["state"] for t in json.loads(applied.stdout)["targets"] for a in t["actions"]]
    assert states and set(states) == {"verified"}, applied.output
    assert server.state("checkout-v2", "production")["enabled"] is True
    for env in ("dev", "staging"):  # the banner is retired where it still showed
        server.switch("legacy-banner", ENVIRONMENTS[env], on=False)

    passed = cli("compare", "--baseline", "dev", "--format", "json")
    assert passed.exit_code == 0, passed.output
    after = json.loads(passed.stdout)
    assert not [k for k in after["keys"] if any(not c["expected"] for c in k["environments"].values())]
    assert ("flag-gate/expected/1", "expired") in [(a["id"], a["state"]) for a in after["allowlist"]]
