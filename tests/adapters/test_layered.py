"""Layered sources, through the CLI: the effective value, who set it, and fixes to the authoritative layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reconciler.adapters.file import FileAdapter
from reconciler.adapters.layered import LayeredAdapter
from reconciler.cli import app
from reconciler.desired.loader import load
from reconciler.settings import FileSettings

runner = CliRunner()


@pytest.fixture
def service() -> Iterator[str]:
    """A running 'service' whose environment sets POOL_SIZE=10 (the highest layer)."""
    marker = f"layered-service-{uuid.uuid4().hex}"
    env = {"PATH": os.environ.get("PATH", ""), "POOL_SIZE": "10", "HOME": "/tmp"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker], env=env)
    yield marker
    child.kill()
    child.wait()


@pytest.fixture
def layered(tmp_path: Path, service: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    live = tmp_path / "live"
    live.mkdir()
    (live / "base.yaml").write_text("POOL_SIZE: '20'\nLOG_LEVEL: INFO\nTIMEOUT: 30s\n")
    (live / "override.env").write_text("LOG_LEVEL=DEBUG\n")
    desired = tmp_path / "desired"
    desired.mkdir()
    target = {
        "kind": "Target",
        "metadata": {"name": "payments", "environment": "prod"},
        "spec": {
            "source": {
                "adapter": "layered",
                "authoritative": "override",
                "layers": [
                    {"name": "base", "adapter": "file", "path": "../live/base.yaml"},
                    {"name": "override", "adapter": "file", "path": "../live/override.env"},
                    {"name": "process", "adapter": "env", "command": service, "include": ["POOL_SIZE", "LOG_*"]},
                ],
            },
            "desired": {"POOL_SIZE": 20, "LOG_LEVEL": "INFO", "TIMEOUT": "30s"},
        },
    }
    (desired / "payments.yaml").write_text(yaml.safe_dump(target))
    (desired / "policy.yaml").write_text("kind: Policy\nmetadata: {name: default}\nspec: {default: reversible}\n")
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(desired))
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", json.dumps([str(live)]))
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    return tmp_path


def test_plan_says_which_layer_wins(layered: Path) -> None:
    result = runner.invoke(app, ["plan"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "where the values come from (highest precedence first):" in result.output
    assert '/POOL_SIZE: process = "10" (wins); base = "20"' in result.output
    assert '/LOG_LEVEL: override = "DEBUG" (wins); base = "INFO"' in result.output
    data = json.loads(runner.invoke(app, ["plan", "--format", "json"]).stdout)
    drift = {d["path"]: d for d in data["targets"][0]["drift"]}
    assert drift["/POOL_SIZE"]["layers"] == [
        {"layer": "base", "value": "20", "wins": False},
        {"layer": "process", "value": "10", "wins": True},
    ]
    assert set(drift) == {"/POOL_SIZE", "/LOG_LEVEL"}  # TIMEOUT comes from base and matches


def test_apply_writes_the_authoritative_layer_and_escalates_what_it_cannot_fix(layered: Path) -> None:
    data = json.loads(runner.invoke(app, ["apply", "--format", "json"]).stdout)
    drift = {d["path"]: d for d in data["targets"][0]["drift"]}
    assert drift["/LOG_LEVEL"]["action"] == "verified"
    assert drift["/POOL_SIZE"]["action"] == "escalated"
    assert drift["/POOL_SIZE"]["class"] == "escalate"
    assert drift["/POOL_SIZE"]["reason"] == (
        "cannot be fixed live: layer process sets it and wins over the authoritative layer override"
    )
    assert (layered / "live" / "override.env").read_text() == "LOG_LEVEL=INFO\n"
    assert (layered / "live" / "base.yaml").read_text().startswith("POOL_SIZE: '20'")  # untouched
    again = runner.invoke(app, ["plan"])
    assert "/LOG_LEVEL" not in again.output and "/POOL_SIZE" in again.output


def test_layer_errors_name_the_layer(layered: Path) -> None:
    manifest = layered / "desired" / "payments.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["source"]["layers"][1]["path"] = "/etc/passwd"
    manifest.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["plan"])
    assert result.exit_code == 1
    assert "spec.source.layers.1.path: /etc/passwd is outside the file adapter's roots" in result.output
    doc["spec"]["source"]["authoritative"] = "nope"
    manifest.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["plan"])
    assert "spec.source.authoritative: 'nope' is not a layer; layers: base, override, process" in result.output


def test_sweep_reaches_every_file_layer(tmp_path: Path) -> None:
    """Recovery's sweep of a layered target removes the staged files left beside each of its file layers."""
    live = tmp_path / "live"
    live.mkdir()
    (live / "base.yaml").write_text("A: '1'\n")
    (live / "override.env").write_text("A=2\n")
    for name in [".base.yaml.abc.reconciler-tmp", ".override.env.abc.reconciler-tmp", "unrelated.txt"]:
        (live / name).write_text("x")
    layers = [
        {"name": "base", "adapter": "file", "path": str(live / "base.yaml")},
        {"name": "override", "adapter": "file", "path": str(live / "override.env")},
    ]
    manifest = {
        "kind": "Target",
        "metadata": {"name": "t"},
        "spec": {"source": {"adapter": "layered", "authoritative": "override", "layers": layers}, "desired": {}},
    }
    (tmp_path / "desired").mkdir()
    (tmp_path / "desired" / "t.yaml").write_text(yaml.safe_dump(manifest))
    target = load(tmp_path / "desired").targets["t"]
    files = FileAdapter(FileSettings(roots=[live]))
    adapter = LayeredAdapter()
    adapter.bind(lambda name: files)
    assert sorted(Path(p).name for p in adapter.sweep_staged(target)) == [
        ".base.yaml.abc.reconciler-tmp",
        ".override.env.abc.reconciler-tmp",
    ]
    assert sorted(p.name for p in live.iterdir()) == ["base.yaml", "override.env", "unrelated.txt"]


def test_forgetting_a_layered_target_drops_what_its_layers_adapters_keep(tmp_path: Path) -> None:
    """The daemon forgets targets that left it (Reconciler.forget) through their adapter: the layered adapter
    passes that on to its layers' adapters, which keep each layer under the layered target's name."""
    live = tmp_path / "live"
    live.mkdir()
    (live / "base.yaml").write_text("a: 1\n")
    (live / "override.env").write_text("B=2\n")
    layers = [
        {"name": "base", "adapter": "file", "path": str(live / "base.yaml")},
        {"name": "override", "adapter": "file", "path": str(live / "override.env")},
    ]
    for name in ("t", "u"):
        manifest = {
            "kind": "Target",
            "metadata": {"name": name},
            "spec": {"source": {"adapter": "layered", "authoritative": "override", "layers": layers}, "desired": {}},
        }
        (tmp_path / "desired").mkdir(exist_ok=True)
        (tmp_path / "desired" / f"{name}.yaml").write_text(yaml.safe_dump(manifest))
    targets = load(tmp_path / "desired").targets
    files = FileAdapter(FileSettings(roots=[live]))
    adapter = LayeredAdapter()
    adapter.bind(lambda name: files)
    for target in targets.values():
        assert adapter.discover(target).document == {"a": 1, "B": "2"}
    assert files._located.keys() == {"t", "u"}

    adapter.forget(["t"])
    assert files._located.keys() == {"u"}
