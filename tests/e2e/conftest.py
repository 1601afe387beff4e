"""What the end-to-end tests share: the daemon as a subprocess on a copy of the example, and HTTP helpers."""

from __future__ import annotations

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

from reconciler.settings import Settings

API_TOKEN = "api-token-s3cret"


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


def write_fleet(root: Path, environments: list[str], interval_s: float) -> tuple[Path, Path]:
    """live/ and desired/ under `root`: a target `tNN` per entry of `environments`, each with drift (live says
    DEBUG where INFO is desired), and a policy that makes drift reversible."""
    live, desired = root / "live", root / "desired"
    live.mkdir()
    desired.mkdir()
    docs = []
    for i, environment in enumerate(environments):
        (live / f"t{i:02}.yaml").write_text("log_level: DEBUG\n")
        docs.append(
            f"kind: Target\nmetadata: {{name: t{i:02}, environment: {environment}}}\n"
            f"spec:\n  source: {{adapter: file, path: ../live/t{i:02}.yaml}}\n"
            f"  desired: {{log_level: INFO}}\n  interval: {interval_s:g}s\n"
        )
    (desired / "targets.yaml").write_text("---\n".join(docs))
    (desired / "policy.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    return live, desired


@pytest.fixture
def daemon(settings: Settings, example: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    for manifest in (example / "desired").glob("*.yaml"):
        manifest.write_text(manifest.read_text().replace("interval: 30s", "interval: 1s"))
    assert reconciler("db", "upgrade").returncode == 0
    port = free_port()
    log_path = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "RECONCILER_HTTP__API_TOKEN": API_TOKEN,
        "RECONCILER_HTTP__PORT": str(port),
        "RECONCILER_SCHEDULER__JITTER_S": "0.2",
        "RECONCILER_SCHEDULER__DESIRED_POLL_S": "0.5",
        "PYTHONFAULTHANDLER": "1",  # SIGABRT writes every thread's stack to the log (stopped(), below)
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


def stopped(daemon: dict[str, Any], timeout_s: float = 30) -> int:
    """The daemon's exit code after SIGTERM; when it is still up after `timeout_s`, its threads' stacks (SIGABRT)
    and the end of its log say why."""
    process = daemon["process"]
    process.send_signal(signal.SIGTERM)
    try:
        return int(process.wait(timeout_s))
    except subprocess.TimeoutExpired as exc:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        tail = daemon["log"].read_text()[-20_000:]
        raise AssertionError(f"the daemon was still up {timeout_s} s after SIGTERM:\n{tail}") from exc


def _ready(base: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"daemon exited early with {process.returncode}")
    try:
        return get(base + "/readyz")[0] == 200
    except OSError:
        return False


BOTO_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto takes any


def stand_in(request: pytest.FixtureRequest, builders: dict[str, Callable[[Any], Any]]) -> Any:
    """What the builder for `request.param` (a source: ssm, aws-secrets, kubernetes) makes of the server that
    stands in for that system here: moto's URL, or the Kubernetes emulator's kubeconfig."""
    if request.param == "kubernetes":
        return builders["kubernetes"](request.getfixturevalue("kube")[1])
    return builders[request.param](request.getfixturevalue("moto_url"))
