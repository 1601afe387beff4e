"""The daemon as a user runs it: a subprocess with HTTP, JSON logs, passes on schedule and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.settings import Settings
from tests.conftest import unavailable
from tests.e2e.conftest import API_TOKEN, free_port, get, metric, reconciler, stopped, wait_for

pytestmark = pytest.mark.e2e


def test_daemon_detects_applies_rolls_back_and_stops_cleanly(daemon: dict[str, Any]) -> None:
    """Scrape /metrics, change a live file, see the drift in the next pass, apply, verify, roll back, SIGTERM."""
    base, example = daemon["base"], daemon["example"]
    assert get(base + "/healthz") == (200, "ok\n")
    ready = json.loads(get(base + "/readyz")[1])
    assert ready == {
        "desired_loaded": True,
        "stopping": False,
        "store": "ok",
        "remediation": "on",
        "workers": "4/4",
        "ready": True,
    }
    assert get(base + "/nope")[0] == 404

    def drift(app: str, env: str, class_: str) -> float | None:
        return metric(
            get(base + "/metrics")[1], "reconciler_drift_items", app=app, environment=env, **{"class": class_}
        )

    # Series exist from the first scrape, then the first passes fill them in.
    wait_for(lambda: drift("payments-api", "prod", "reversible") == 2.0, what="prod drift in metrics")
    assert drift("payments-api", "staging", "reversible") == 0.0

    staging = example / "live" / "payments-api" / "staging" / "config.yaml"
    doc = yaml.safe_load(staging.read_text())
    doc["log_level"] = "DEBUG"
    staging.write_text(yaml.safe_dump(doc))
    changed = staging.read_bytes()
    wait_for(lambda: drift("payments-api", "staging", "reversible") == 1.0, what="staging drift")

    applied = reconciler("apply", "--target", "payments-api-staging", "--format", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert yaml.safe_load(staging.read_text())["log_level"] == "INFO"
    wait_for(lambda: drift("payments-api", "staging", "reversible") == 0.0, what="drift gone after apply")

    run_id = json.loads(applied.stdout)["run_id"]
    undone = reconciler("rollback", run_id)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert yaml.safe_load(staging.read_bytes()) == yaml.safe_load(changed)

    metrics = get(base + "/metrics")[1]
    assert (metric(metrics, "reconciler_passes_total", environment="prod", result="drift") or 0) >= 1
    assert metric(
        metrics, "reconciler_oldest_successful_pass_timestamp_seconds", environment="prod", app="payments-api"
    )
    assert "target=" not in metrics  # per-target series are off by default
    assert "reconciler_desired_version_info{" in metrics
    # `reconciler run` installs the garbage collector's policy (runtime/heap.py) and exports what it did.
    assert metric(metrics, "reconciler_gc_full_collections_total") is not None

    process = daemon["process"]

    def logged(event: str, **fields: str) -> bool:
        for line in daemon["log"].read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return True
        return False

    # A breaker opened from the CLI shows on the dry-run daemon's /metrics and /readyz.
    assert reconciler("breaker", "open", "--reason", "freeze").returncode == 0
    wait_for(lambda: metric(get(base + "/metrics")[1], "reconciler_circuit_open") == 1.0, what="breaker gauge")
    # /readyz answers from the store probe's last look, at most a second old.
    wait_for(lambda: json.loads(get(base + "/readyz")[1])["remediation"] == "paused: freeze", what="readyz paused")
    assert reconciler("breaker", "reset").returncode == 0
    wait_for(lambda: metric(get(base + "/metrics")[1], "reconciler_circuit_open") == 0.0, what="breaker closed")

    process.send_signal(signal.SIGUSR1)
    wait_for(
        lambda: logged("mode switched", mode="dry-run", reason="switched to dry-run by signal (SIGUSR2 switches back)"),
        what="SIGUSR1 logged",
    )
    process.send_signal(signal.SIGUSR2)
    wait_for(lambda: logged("mode switched", reason="configured"), what="SIGUSR2 logged")
    assert stopped(daemon) == 0
    lines = [json.loads(line) for line in daemon["log"].read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "daemon started" in events and "daemon stopped" in events
    passes = [line for line in lines if line["event"] == "pass done"]
    assert passes and all(p["run_id"] and p["target"] for p in passes)
    assert len([e for e in events if not e]) == 0


def test_daemon_refuses_an_unmigrated_database(settings: Settings) -> None:
    """Start-up on an empty database exits non-zero and says which command to run."""
    result = reconciler("run")
    assert result.returncode == 1
    assert "Run `reconciler db upgrade`" in result.stderr


def test_daemon_refuses_an_invalid_desired_state(settings: Settings, example: Path) -> None:
    """Start-up with an invalid manifest exits non-zero, naming the file, document and field."""
    assert reconciler("db", "upgrade").returncode == 0
    (example / "desired" / "bad.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: maybe}\n")
    result = reconciler("run")
    assert result.returncode == 1
    assert "bad.yaml: document 1 (p): spec.default: Input should be" in result.stderr


def test_a_second_daemon_on_the_same_sqlite_file_is_refused(daemon: dict[str, Any]) -> None:
    """SQLite serves one daemon: a second one exits 1 at once, naming the first one's PID and the way out."""
    env = {**os.environ, "RECONCILER_HTTP__PORT": str(free_port())}
    second = subprocess.run(
        [sys.executable, "-m", "reconciler", "run"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert second.returncode == 1
    assert f"another reconciler daemon (pid {daemon['process'].pid}) is running on sqlite:///" in second.stderr
    assert "use PostgreSQL" in second.stderr
    assert daemon["process"].poll() is None  # the first one goes on


def test_promtool_finds_nothing_wrong_with_metrics(daemon: dict[str, Any]) -> None:
    """`promtool check metrics` on the daemon's real /metrics: no lint problem (names, units, help texts)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian's prometheus package; bash .ci/services installs it)")
    wait_for(lambda: "reconciler_passes_total" in get(daemon["base"] + "/metrics")[1], what="metrics")
    text = get(daemon["base"] + "/metrics")[1]
    checked = subprocess.run(
        [str(promtool), "check", "metrics"], input=text, capture_output=True, text=True, check=False, timeout=60
    )
    assert checked.returncode == 0 and checked.stdout == checked.stderr == "", checked.stdout + checked.stderr


def post(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_json_api(daemon: dict[str, Any]) -> None:
    """Status and drift for scripts; approve and mode only with the bearer token, which is never logged."""
    base = daemon["base"]
    wait_for(lambda: len(json.loads(get(base + "/api/v1/status")[1])["targets"]) == 3, what="three targets passed")
    status = json.loads(get(base + "/api/v1/status")[1])
    assert status["mode"] == "dry-run" and status["ready"] is True and status["remediation"] == "on"
    assert len(status["desired_version"]["digest"]) == 64
    prod = next(t for t in status["targets"] if t["target"] == "payments-api-prod")
    assert prod["status"] == "drift" and prod["drift"] >= 2
    drift = json.loads(get(base + "/api/v1/drift?target=payments-api-prod")[1])["targets"][0]["drift"]
    assert {"/log_level", "/debug_endpoints"} <= {d["path"] for d in drift}
    assert get(base + "/api/v1/drift?target=nope")[0] == 404

    assert post(base + "/api/v1/mode", {"mode": "dry-run"})[0] == 401
    assert post(base + "/api/v1/mode", {"mode": "dry-run"}, "wrong")[0] == 401
    assert post(base + "/api/v1/mode", {"mode": "sideways"}, API_TOKEN)[0] == 400
    assert post(base + "/api/v1/mode", {"mode": "dry-run"}, API_TOKEN) == (200, {"mode": "dry-run"})

    pending = json.loads(reconciler("approvals", "list", "--format", "json").stdout)
    assert pending, "the example has an escalated drift waiting"
    approval = pending[0]["id"]
    url = f"{base}/api/v1/approvals/{approval}/approve"
    assert post(url, {}, API_TOKEN)[0] == 400  # who decides must be named
    code, decided = post(url, {"actor": "alice", "comment": "checked with the DBA"}, API_TOKEN)
    assert code == 200 and decided["state"] == "approved" and decided["actor"] == "alice"
    assert post(url, {"actor": "bob"}, API_TOKEN)[0] == 409  # already decided
    assert post(f"{base}/api/v1/approvals/0000/approve", {"actor": "bob"}, API_TOKEN)[0] == 404
    assert API_TOKEN not in daemon["log"].read_text()
