"""What deploy/ ships: alerting rules that promtool accepts and whose unit tests pass."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from reconciler.observe.metrics import Metrics
from tests.conftest import REPO, unavailable

RULES = REPO / "deploy" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is not installed (Debian's prometheus package; bash .ci/services installs it)")
    return str(found)


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["check", "rules", "rules.yml"], "SUCCESS: 12 rules found"), (["test", "rules", "tests.yml"], "SUCCESS")],
)
def test_alerting_rules(args: list[str], expected: str) -> None:
    result = subprocess.run([promtool(), *args], cwd=RULES, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout


def test_kubernetes_manifests() -> None:
    """The Deployment probes /healthz and /readyz, runs non-root on a read-only root filesystem, the RBAC
    grants only what the Kubernetes adapter uses, and the PrometheusRule carries exactly rules.yml."""
    docs = {}
    for file in (REPO / "deploy" / "kubernetes").glob("*.yaml"):
        for doc in yaml.safe_load_all(file.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    pod = docs[("Deployment", "reconciler")]["spec"]["template"]["spec"]
    main = next(c for c in pod["containers"] if c["name"] == "reconciler")
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {v["mountPath"] for v in main["volumeMounts"]} >= {"/tmp", "/var/lib/reconciler"}
    rules = docs[("Role", "reconciler-managed")]["rules"]
    assert {r for rule in rules for r in rule["resources"]} == {"configmaps", "secrets", "deployments"}
    assert {v for rule in rules for v in rule["verbs"]} == {"get", "list", "watch", "update"}
    shipped = yaml.safe_load((RULES / "rules.yml").read_text())["groups"]
    assert docs[("PrometheusRule", "reconciler")]["spec"]["groups"] == shipped
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and 'ENTRYPOINT ["reconciler"]' in dockerfile


def test_grafana_dashboard_uses_only_metrics_that_exist() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "reconciler.json").read_text())
    exported = {m.name for m in Metrics().registry.collect()}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"reconciler_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|count|sum|total)$", "", name)
                assert base in exported, f"panel {panel['title']!r} uses {name}, which reconciler does not export"


def test_systemd_unit_verifies() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "verify", str(REPO / "deploy" / "systemd" / "reconciler.service")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # The only finding on a machine without reconciler installed under /opt is the missing binary itself.
    assert all("/opt/reconciler/bin/reconciler" in line for line in problems), problems
