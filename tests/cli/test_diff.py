"""`reconciler diff A B`: any two sources without manifests, the comparison semantics kept, the options, the
exit codes, and golden outputs in every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from reconciler.cli import app, inputs, main
from reconciler.errors import ConfigurationError
from tests import golden
from tests.servers import REDIS_PASSWORD, redis_server

runner = CliRunner()

A = {
    "service": {"name": "checkout", "port": 8080, "timeout": "30s", "debug": False},
    "database": {"host": "db.internal", "pool": 10, "password": "hunter2", "replica": None},
    "servers": [{"name": "a", "weight": 1}, {"name": "b", "weight": 2}],
    "a.b": 1,
    "a": {"b": 1},
    "updated_at": "2026-11-01",
    "tags": ["x", "y"],
}
B_YAML = """service:
  name: checkout
  port: "8080"
  timeout: 30
  debug: false
database:
  host: db.internal
  pool: 12
  password: hunter3
servers:
  - {name: b, weight: 2}
  - {name: a, weight: 3}
a.b: 1
a: {b: 2}
updated_at: 2026-11-30T10:00:00
tags: [x, y]
features: {new_ui: true, beta: false}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.json", tmp_path / "b.yaml"
    a.write_text(json.dumps(A, indent=2))
    b.write_text(B_YAML)
    return a, b


def cli(*args: str, stdin: str | None = None) -> Any:
    return runner.invoke(app, ["diff", *args], input=stdin)


def exit_code(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """The exit code of the `reconciler` entry point itself, which turns usage errors into 1."""
    monkeypatch.setattr(sys, "argv", ["reconciler", "diff", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


OPTIONS = (
    "--secret",
    "/database/password",
    "--ignore-key",
    "updated_at",
    "--list-key",
    "/servers=name",
    "--normalize",
    "/service/timeout=duration",
)


@pytest.mark.parametrize(("fmt", "suffix"), [("table", "txt"), ("json", "json"), ("markdown", "md")])
def test_diff_golden(files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, fmt: str, suffix: str) -> None:
    """Types are strict ("8080" is not 8080), null differs from missing, `a.b` and `/a/b` are different paths, a
    keyed list compares by item, secrets show as keyed hashes, an ignored key name is gone at any depth and a
    normaliser reads `30s` as 30; the report is exactly as recorded."""
    monkeypatch.setenv("RECONCILER_SECRETS__HMAC_KEY", "golden-key")
    monkeypatch.chdir(files[0].parent)
    result = cli("a.json", "b.yaml", *OPTIONS, "--format", fmt)
    assert result.exit_code == 2, result.output
    golden.check(f"diff.{suffix}", result.stdout)
    assert "hunter" not in result.stdout


def test_diff_counts_and_threshold(files: tuple[Path, Path]) -> None:
    """JSON gives leaf counts and the unrounded percentage; with a threshold, exit 2 only above it (exactly)."""
    data = json.loads(cli(*map(str, files), *OPTIONS, "-f", "json").stdout)
    assert (data["differing_leaves"], data["total_leaves"]) == (8, 17)  # /features holds two leaves
    assert data["drift_percent"] == 8 * 100 / 17 and data["drift_fraction"] == "8/17"
    assert data["threshold"] is None and data["significant"] is None
    assert cli(*map(str, files), *OPTIONS, "--threshold", "0.5").exit_code == 0
    assert cli(*map(str, files), *OPTIONS, "--threshold", "0.47").exit_code == 2
    over = json.loads(cli(*map(str, files), *OPTIONS, "--threshold", "47%", "-f", "json").stdout)
    assert over["significant"] is True and over["threshold"] == 0.47


def test_equal_sources_exit_0_and_stdin(files: tuple[Path, Path]) -> None:
    """A document equals itself (exit 0), read from stdin as `-` (JSON sniffed, or YAML with --input-format)."""
    a = files[0]
    result = cli("-", str(a), stdin=a.read_text())
    assert result.exit_code == 0 and result.stdout.startswith(f"- vs {a}: equal (")
    assert cli(str(files[1]), "-", "--input-format", "yaml", stdin=files[1].read_text()).exit_code == 0
    assert cli("-", str(a), stdin="a: 1\n").exit_code == 2


def test_ignore_key_is_literal(tmp_path: Path) -> None:
    """--ignore-key takes the name literally: `a*` hides the key `a*` only, never `abc`; --ignore takes globs."""
    (tmp_path / "a.json").write_text(json.dumps({"a*": 1, "abc": 1, "x": {"a*": 1, "keep": 1}}))
    (tmp_path / "b.json").write_text(json.dumps({"a*": 2, "abc": 2, "x": {"a*": 2, "keep": 1}}))
    args = (str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-f", "json")
    data = json.loads(cli(*args, "--ignore-key", "a*").stdout)
    assert [d["path"] for d in data["differences"]] == ["/abc"]
    assert json.loads(cli(*args, "--ignore", "/a*").stdout)["differences"][0]["path"] == "/x/a*"


def test_bad_input_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing file, malformed JSON (line and column, no content), a bad option or threshold: exit 1."""
    good = tmp_path / "good.json"
    good.write_text("{}")
    bad = tmp_path / "bad.json"
    bad.write_text('{"password": "s3cret",\n  oops}')
    result = cli(str(bad), str(good))
    assert result.exit_code == 1 and "bad.json: not valid JSON: line 2, column 3" in result.output
    assert "s3cret" not in result.output
    assert "no such file" in cli(str(tmp_path / "nope.yaml"), str(good)).output
    for args in (
        ("--normalize", "/x=loud"),
        ("--normalize", "novalue"),
        ("--list-key", "servers=name"),
        ("--ignore", "no-slash"),
        ("--threshold", "2"),
        ("--input-format", "xml"),
        ("--format", "html"),
    ):
        assert exit_code(monkeypatch, str(good), str(good), *args) == 1, args
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "must be an object" in cli(str(tmp_path / "list.json"), str(good)).output


def test_address_options() -> None:
    """ADAPTER:ADDRESS gives the adapter's main option, then option=value pairs, or a YAML flow mapping."""
    assert inputs.options("etcd", "/config/app/,endpoint=http://127.0.0.1:2379,values=json") == {
        "prefix": "/config/app/",
        "endpoint": "http://127.0.0.1:2379",
        "values": "json",
    }
    assert inputs.options("env", "1234") == {"pid": 1234}
    assert inputs.options("env", "celery .* worker,pick=newest") == {"command": "celery .* worker", "pick": "newest"}
    assert inputs.options("redis-keys", "{prefix: 'app:', port: 6380}") == {"prefix": "app:", "port": 6380}
    assert inputs.options("kubernetes", "api,kind=ConfigMap,namespace=pay") == {
        "name": "api",
        "kind": "ConfigMap",
        "namespace": "pay",
    }
    with pytest.raises(ConfigurationError, match="not a YAML mapping"):
        inputs.options("etcd", "{prefix: [")


def test_env_of_a_process_against_a_dotenv_file(tmp_path: Path) -> None:
    """`env:PID` reads a live process's environment; a YAML side is rendered as strings for it (30 is "30")."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={"POOL": "30", "LOG_LEVEL": "INFO", "PATH": os.environ.get("PATH", "")},
    )
    try:
        (tmp_path / "want.yaml").write_text("POOL: 30\nLOG_LEVEL: DEBUG\n")
        result = cli(str(tmp_path / "want.yaml"), f"env:{child.pid}", "--ignore", "/PATH", "--ignore", "/LC_*")
        assert result.exit_code == 2, result.output
        rows = [line.split() for line in result.stdout.splitlines()[2:]]
        assert rows == [["/LOG_LEVEL", "differs", '"DEBUG"', '"INFO"']], result.stdout
    finally:
        child.kill()
        child.wait()
    assert "env:999999999" in cli(str(tmp_path / "want.yaml"), "env:999999999").output


@pytest.fixture
def flags_server() -> Iterator[str]:
    """A JSON API on a free loopback port answering resolved flags."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"new_ui": self.path == "/dev", "beta": "on"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_urls(flags_server: str) -> None:
    """Two HTTP(S) URLs are read by the http adapter and compared; an unreachable one is an error naming it."""
    result = cli(f"{flags_server}/dev", f"{flags_server}/prod", "-f", "json")
    assert result.exit_code == 2
    assert [(d["path"], d["a"], d["b"]) for d in json.loads(result.stdout)["differences"]] == [("/new_ui", True, False)]
    assert cli(f"http:{flags_server}/prod", f"{flags_server}/prod").exit_code == 0
    down = cli("http://127.0.0.1:9/x", f"{flags_server}/prod")
    assert down.exit_code == 1 and "http://127.0.0.1:9/x" in down.output


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


def test_redis_keys_against_a_file(redis_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`redis-keys:PREFIX,port=...,password=CREDENTIAL` reads a live Redis; numbers in the file compare as the
    strings Redis holds, and the credential is named, never written on the command line."""
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"cache": REDIS_PASSWORD}))
    client = redis.Redis(port=redis_port, password=REDIS_PASSWORD)
    client.set("diff:LOG_LEVEL", "INFO")
    client.hset("diff:pool", mapping={"size": "20", "timeout": "30"})
    (tmp_path / "want.yaml").write_text("LOG_LEVEL: INFO\npool: {size: 20, timeout: 45}\n")
    source = f"redis-keys:diff:,port={redis_port},password=cache"
    result = cli(str(tmp_path / "want.yaml"), source, "-f", "json")
    assert result.exit_code == 2, result.output
    assert [(d["path"], d["a"], d["b"]) for d in json.loads(result.stdout)["differences"]] == [
        ("/pool/timeout", "45", "30")
    ]
    assert "unknown option of the redis-keys adapter" in cli(source + ",colour=red", source).output
