"""The daemon as a user runs it: a subprocess with HTTP, JSON logs, passes on schedule and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.settings import Settings

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def reconciler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.fixture
def daemon(settings: Settings, example: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    for manifest in (example / "desired").glob("*.yaml"):
        manifest.write_text(manifest.read_text().replace("interval: 30s", "interval: 1s"))
    assert reconciler("db", "upgrade").returncode == 0
    port = free_port()
    log_path = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "RECONCILER_HTTP__PORT": str(port),
        "RECONCILER_SCHEDULER__JITTER_S": "0.2",
        "RECONCILER_SCHEDULER__DESIRED_POLL_S": "0.5",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    info = {"process": process, "base": base, "log": log_path, "example": example}
    try:
        wait_for(lambda: _ready(base, process), what="/readyz")
        yield info
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _ready(base: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"daemon exited early with {process.returncode}")
    try:
        return get(base + "/readyz")[0] == 200
    except OSError:
        return False


def test_daemon_detects_applies_rolls_back_and_stops_cleanly(daemon: dict[str, Any]) -> None:
    """Scrape /metrics, change a live file, see the drift in the next pass, apply, verify, roll back, SIGTERM."""
    base, example = daemon["base"], daemon["example"]
    assert get(base + "/healthz") == (200, "ok\n")
    ready = json.loads(get(base + "/readyz")[1])
    assert ready == {"desired_loaded": True, "stopping": False, "store": "ok", "remediation": "on", "ready": True}
    assert get(base + "/nope")[0] == 404

    def drift(target: str, env: str, class_: str) -> float | None:
        return metric(
            get(base + "/metrics")[1], "reconciler_drift_items", target=target, environment=env, **{"class": class_}
        )

    # Series exist from the first scrape, then the first passes fill them in.
    wait_for(lambda: drift("payments-api-prod", "prod", "reversible") == 2.0, what="prod drift in metrics")
    assert drift("payments-api-staging", "staging", "reversible") == 0.0

    staging = example / "live" / "payments-api" / "staging" / "config.yaml"
    doc = yaml.safe_load(staging.read_text())
    doc["log_level"] = "DEBUG"
    staging.write_text(yaml.safe_dump(doc))
    changed = staging.read_bytes()
    wait_for(lambda: drift("payments-api-staging", "staging", "reversible") == 1.0, what="staging drift")

    applied = reconciler("apply", "--target", "payments-api-staging", "--format", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert yaml.safe_load(staging.read_text())["log_level"] == "INFO"
    wait_for(lambda: drift("payments-api-staging", "staging", "reversible") == 0.0, what="drift gone after apply")

    run_id = json.loads(applied.stdout)["run_id"]
    undone = reconciler("rollback", run_id)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert yaml.safe_load(staging.read_bytes()) == yaml.safe_load(changed)

    metrics = get(base + "/metrics")[1]
    assert (metric(metrics, "reconciler_passes_total", environment="prod", result="drift") or 0) >= 1
    assert metric(metrics, "reconciler_last_successful_pass_timestamp_seconds", target="payments-api-prod")
    assert "reconciler_desired_version_info{" in metrics

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
    assert json.loads(get(base + "/readyz")[1])["remediation"] == "paused: freeze"
    assert reconciler("breaker", "reset").returncode == 0
    wait_for(lambda: metric(get(base + "/metrics")[1], "reconciler_circuit_open") == 0.0, what="breaker closed")

    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: logged("mode switched", mode="dry-run", reason="switched by signal"), what="SIGUSR1 logged")
    process.send_signal(signal.SIGUSR2)
    wait_for(lambda: logged("mode switched", reason="configured"), what="SIGUSR2 logged")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
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
