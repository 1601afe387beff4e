"""The daemon compares an app's environments continuously: a hand edit in prod raises the parity series and
sends one webhook within an interval; an allowlist entry brings the series down; its expiry raises it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.conftest import free_port, get, metric, wait_for

INTERVAL_S = 2.0
SLACK_S = 2.0  # a loaded CI machine: the pass that notices may start a little late

TARGET = """kind: Target
metadata: {{name: web-{env}, app: web, environment: {env}}}
spec:
  source: {{adapter: file, path: ../live/{env}.yaml}}
  desired: {{log_level: INFO, pool: 10}}
  interval: {interval}s
"""
ALLOW = """  expected_differences:
    - apps: [web]
      paths: [/log_level]
      reason: "INC-9: verbose logs in prod while we look"
      owner: web-oncall
      expires: {expires}
"""


def test_hand_edit_in_prod_alerts_once_and_the_allowlist_covers_it(tmp_path: Path, receiver: dict[str, Any]) -> None:
    live, desired = tmp_path / "live", tmp_path / "desired"
    live.mkdir()
    desired.mkdir()
    for env in ("dev", "staging", "prod"):
        (live / f"{env}.yaml").write_text("log_level: INFO\npool: 10\n")
    (desired / "targets.yaml").write_text(
        "---\n".join(TARGET.format(env=e, interval=INTERVAL_S) for e in ("dev", "staging", "prod"))
    )
    policy = desired / "policy.yaml"
    policy.write_text("kind: Policy\nmetadata: {name: p}\nspec:\n  default: reversible\n")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")},
        "RECONCILER_DESIRED_DIR": str(desired),
        "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
        "RECONCILER_DATABASE_URL": f"sqlite:///{tmp_path / 'history.db'}",
        "RECONCILER_HTTP__PORT": str(port),
        "RECONCILER_SCHEDULER__JITTER_S": "0.1",
        "RECONCILER_SCHEDULER__DESIRED_POLL_S": "0.5",
        "RECONCILER_POLICY__EXPIRY_WARNING_S": "0",
        "RECONCILER_NOTIFY__WEBHOOKS": json.dumps(
            [{"url": receiver["url"], "events": ["parity_diverged", "parity_converged"]}]
        ),
    }
    run = [sys.executable, "-m", "reconciler"]
    assert subprocess.run([*run, "db", "upgrade"], env=env, capture_output=True, check=False).returncode == 0
    with (tmp_path / "daemon.log").open("w") as log:
        daemon = subprocess.Popen([*run, "run"], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"

    def series(name: str, **labels: str) -> float | None:
        try:
            return metric(get(base + "/metrics")[1], name, app="web", **labels)
        except OSError:
            return None

    def events(kind: str) -> list[dict[str, Any]]:
        return [b for b in receiver["bodies"] if b["event"] == kind]

    unexpected = "reconciler_parity_unexpected_differences"
    try:
        wait_for(lambda: series(unexpected, environment="prod") == 0, 30, "the prod series at zero")
        wait_for(lambda: get(base + "/api/v1/parity?app=web")[1].count('"app": "web"') == 2, 10, "both pairs")

        (live / "prod.yaml").write_text("log_level: DEBUG\npool: 10\n")
        wait_for(lambda: series(unexpected, environment="prod") == 1, INTERVAL_S + SLACK_S, "the series to rise")
        wait_for(lambda: events("parity_diverged"), INTERVAL_S + SLACK_S, "the webhook")
        assert series("reconciler_parity_drift_percent", environment="prod") == 50.0
        assert series(unexpected, environment="staging") == 0
        status, body = get(base + "/api/v1/parity?app=web")
        assert status == 200 and json.loads(body)["keys"][0]["path"] == "/log_level"

        expires = (datetime.now(UTC) + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        policy.write_text(policy.read_text() + ALLOW.format(expires=expires))
        wait_for(lambda: series(unexpected, environment="prod") == 0, 3 * INTERVAL_S, "the allowlist to cover it")
        assert series("reconciler_parity_expected_differences", environment="prod", state="active") == 1
        wait_for(lambda: events("parity_converged"), INTERVAL_S + SLACK_S, "the convergence webhook")

        wait_for(lambda: series(unexpected, environment="prod") == 1, 20, "the expiry to uncover it")
        assert series("reconciler_parity_expected_differences", environment="prod", state="expired") == 1
        (diverged,) = events("parity_diverged")  # the expiry's divergence falls in the de-duplication window
        assert diverged["details"]["environments"] == {"prod": ["/log_level"]}
        assert "DEBUG" not in json.dumps(receiver["bodies"])
    finally:
        daemon.terminate()
        daemon.wait(20)
