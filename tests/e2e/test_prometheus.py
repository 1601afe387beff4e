"""A real Prometheus scrapes a running daemon with the shipped alerting rules: it sees drift change and an
alert fire."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, prometheus
from tests.e2e.conftest import get, wait_for

pytestmark = pytest.mark.e2e


def query(url: str, expr: str) -> list[dict[str, Any]]:
    status, body = get(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status == 200, body
    return list(json.loads(body)["data"]["result"])


def test_prometheus_sees_drift_and_fires_an_alert(daemon: dict[str, Any], tmp_path: Path) -> None:
    port = daemon["base"].rsplit(":", 1)[1]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "deploy" / "prometheus" / "rules.yml")],
        "scrape_configs": [{"job_name": "reconciler", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    folder = tmp_path / "prom"
    folder.mkdir()
    with prometheus(folder, yaml.safe_dump(config)) as url:
        staging = 'reconciler_drift_items{environment="staging",app="payments-api",class="reversible"}'
        wait_for(lambda: query(url, 'up{job="reconciler"} == 1'), timeout_s=30, what="a successful scrape")
        wait_for(lambda: [r for r in query(url, staging) if r["value"][1] == "0"], timeout_s=30, what="staging clean")

        live = daemon["example"] / "live" / "payments-api" / "staging" / "config.yaml"
        live.write_text(live.read_text().replace("log_level: INFO", "log_level: DEBUG"))
        wait_for(
            lambda: [r for r in query(url, staging) if r["value"][1] == "1"],
            timeout_s=30,
            what="Prometheus to see the new drift",
        )

        manifest = daemon["example"] / "desired" / "checkout.yaml"
        manifest.write_text(manifest.read_text() + "\n---\nkind: Target\nmetadata: {name: broken}\nspec: {}\n")

        def firing() -> list[dict[str, Any]]:
            alerts = json.loads(get(url + "/api/v1/alerts")[1])["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "ReconcilerDesiredStateRefused" and a["state"] == "firing"
            ]

        started = time.monotonic()
        alert = wait_for(firing, timeout_s=60, what="ReconcilerDesiredStateRefused to fire")[0]
        assert alert["annotations"]["summary"] == "an edit of the desired state was refused as invalid"
        assert time.monotonic() - started < 60
