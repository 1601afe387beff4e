"""`validate` accepts nothing that `plan` refuses for a target's source, and contacts no live system."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.cli import app, sources
from reconciler.desired.loader import load
from reconciler.settings import load_settings

runner = CliRunner()
SECRET = "pw-s3cr3t-value-9917"


def manifest(name: str, source: str) -> str:
    return f"kind: Target\nmetadata: {{name: {name}}}\nspec:\n  source: {source}\n  desired: {{x: 1}}\n"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A desired-state folder, with settings that allow files below live/ and name one credential."""
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "a.yaml").write_text("x: 1\n")
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", json.dumps([str(tmp_path / "live")]))
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"db": SECRET}))
    (tmp_path / "desired").mkdir()
    return tmp_path / "desired"


def validate(folder: Path, *docs: str) -> Any:
    (folder / "m.yaml").write_text("---\n".join(docs))
    return runner.invoke(app, ["validate", str(folder)], catch_exceptions=False)


def test_a_good_folder_is_ok(folder: Path) -> None:
    """Sources that a pass would accept are accepted."""
    live = folder.parent / "live" / "a.yaml"
    result = validate(folder, manifest("a", f"{{adapter: file, path: {live}}}"))
    assert result.exit_code == 0, result.output
    assert "ok: 1 targets" in result.output


@pytest.mark.parametrize(
    ("source", "field", "message"),
    [
        ("{adapter: nope}", "spec.source.adapter", "unknown adapter 'nope'; installed adapters: "),
        ("{adapter: file, path: LIVE, colour: red}", "spec.source.colour", "unknown option of the file adapter"),
        ("{adapter: file}", "spec.source.path", "the file adapter needs a path"),
        ("{adapter: file, path: /etc/passwd}", "spec.source.path", "/etc/passwd is outside the file adapter's roots"),
        ("{adapter: file, path: LIVE, format: xml}", "spec.source.format", "unknown format 'xml'"),
        ("{adapter: redis-config, port: six}", "spec.source.port", "must be a non-negative integer"),
        ("{adapter: redis-keys}", "spec.source.prefix", "the redis-keys adapter needs prefix"),
        ("{adapter: postgres, password: other}", "spec.source.password", "no credential named 'other'"),
        ("{adapter: etcd, prefix: /a, endpoint: ftp://x}", "spec.source.endpoint", "must be an http:// or https://"),
        ("{adapter: http, url: 'http://x', auth: nope}", "spec.source.auth", "no credential named 'nope'"),
        ("{adapter: nats-kv, bucket: b, user: u}", "spec.source.user", "give both user and password"),
        ("{adapter: kubernetes, kind: Pod, name: x}", "spec.source.kind", "'Pod' is not one of"),
        ("{adapter: env, pid: 1, command: x}", "spec.source.pid", "give exactly one of pid and command"),
        ("{adapter: env, command: '('}", "spec.source.command", "is not a regular expression"),
        ("{adapter: env, pid: '1'}", "spec.source.pid", "must be a non-negative integer"),
        (
            "{adapter: layered, authoritative: a, layers: [{name: a, adapter: file, path: LIVE}, {name: b, adapter: file}]}",
            "spec.source.layers.1.path",
            "the file adapter needs a path",
        ),
        (
            "{adapter: layered, authoritative: a, layers: [{name: a, adapter: file, path: LIVE}, {name: b, adapter: x}]}",
            "spec.source.layers.1.adapter",
            "unknown adapter 'x'",
        ),
    ],
)
def test_what_a_pass_refuses_validate_refuses(folder: Path, source: str, field: str, message: str) -> None:
    """Unknown adapters, unknown, missing or mistyped options and unconfigured credentials are refused,
    naming file, document and field (before, validate said ok and only plan failed)."""
    live = str(folder.parent / "live" / "a.yaml")
    good = manifest("good", f"{{adapter: file, path: {live}}}")
    result = validate(folder, good, manifest("bad", source.replace("LIVE", live)))
    assert result.exit_code == 1
    assert f"m.yaml: document 2 (bad): {field}: {message}" in result.output
    assert "Traceback" not in result.output


def test_credentials_are_named_never_shown(folder: Path) -> None:
    """A credential problem lists configured credential names, never their values."""
    result = validate(folder, manifest("bad", "{adapter: postgres, password: other}"))
    assert "configured: db" in result.output
    assert SECRET not in result.output


def test_no_live_system_is_contacted(folder: Path) -> None:
    """Sources pointing at servers that do not answer validate at once: nothing is connected to."""
    docs = [
        manifest("pg", "{adapter: postgres, host: 192.0.2.1, port: 1, password: db}"),
        manifest("redis", "{adapter: redis-config, host: 192.0.2.1, port: 1}"),
        manifest("http", "{adapter: http, url: 'http://192.0.2.1:1/x', auth: db}"),
        manifest("etcd", "{adapter: etcd, endpoint: 'http://192.0.2.1:1', prefix: /a/}"),
        manifest("nats", "{adapter: nats-kv, url: 'nats://192.0.2.1:1', bucket: b}"),
        manifest("k8s", "{adapter: kubernetes, kind: ConfigMap, name: x}"),
        manifest("env", "{adapter: env, command: '^nothing-runs-this$'}"),
    ]
    started = time.perf_counter()
    result = validate(folder, *docs)
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 2.0


def test_problems_of_every_target_at_once(folder: Path) -> None:
    """Every target's source problem is listed, not only the first."""
    (folder / "m.yaml").write_text(manifest("a", "{adapter: nope}") + "---\n" + manifest("b", "{adapter: file}"))
    found = [str(p) for p in sources.problems(load(folder), load_settings())]
    assert len(found) == 2
    assert "document 1 (a): spec.source.adapter" in found[0]
    assert "document 2 (b): spec.source.path" in found[1]
