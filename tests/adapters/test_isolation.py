"""A live system that fails fails its own target only: the other targets' passes go on."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.settings import Settings
from tests.conftest import free_port

runner = CliRunner()


def test_unreachable_wrong_password_and_wrong_type_stay_with_their_target(
    settings: Settings, example: Path, monkeypatch: object
) -> None:
    dead = free_port()
    broken = [
        {"name": "etcd-down", "source": {"adapter": "etcd", "endpoint": f"http://127.0.0.1:{dead}", "prefix": "/x/"}},
        {"name": "redis-down", "source": {"adapter": "redis-keys", "port": dead, "prefix": "x:"}},
        {"name": "creds-unknown", "source": {"adapter": "http", "url": "http://127.0.0.1:1/", "auth": "nope"}},
    ]
    docs = [
        {
            "kind": "Target",
            "metadata": {"name": b["name"], "environment": "prod"},
            "spec": {"source": b["source"], "desired": {"A": "1"}},
        }
        for b in broken
    ]
    (example / "desired" / "broken.yaml").write_text(yaml.safe_dump_all(docs))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["plan", "--format", "json"])
    data = json.loads(result.stdout)
    by_name = {t["target"]: t for t in data["targets"]}
    assert by_name["etcd-down"]["status"] == "failed" and "cannot reach etcd" in by_name["etcd-down"]["error"]
    assert by_name["redis-down"]["status"] == "failed" and "cannot reach the server" in by_name["redis-down"]["error"]
    assert "no credential named 'nope'" in by_name["creds-unknown"]["error"]
    assert by_name["payments-api-prod"]["status"] == "drift"  # the bundled example's targets went on
    assert by_name["payments-api-staging"]["status"] in ("clean", "drift")
