"""Shared fixtures: a private copy of the bundled example, settings pointing at it, a migrated SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.settings import Settings, load_settings
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.history import SqlHistoryStore

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
HMAC_KEY = b"test-hmac-key"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RECONCILER_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of examples/ (desired/ and live/), safe to apply to."""
    target = tmp_path / "example"
    shutil.copytree(EXAMPLES, target)
    return target


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
def settings(example: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the example copy, also exported to the environment for CLI and subprocess tests."""
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(example / "desired"))
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", f'["{example / "live"}"]')
    monkeypatch.setenv("RECONCILER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RECONCILER_SECRETS__HMAC_KEY", HMAC_KEY.decode())
    return load_settings()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[SqlHistoryStore]:
    """A migrated history store; every test that uses it runs on SQLite and on PostgreSQL."""
    url = sqlite_url if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))
    engine = engines.create_engine(url)
    migrate.upgrade(engine)
    yield SqlHistoryStore(engine, HMAC_KEY)
    engine.dispose()


# Real servers. Each test database is created fresh and dropped afterwards. Where a server is missing the
# tests skip with the reason, except under CI=true, where a missing server fails the run: CI must never
# pass by skipping what it was meant to test.
ADMIN_URL = os.environ.get("RECONCILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing server fails the run instead of skipping)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server; dropped after the test."""
    with fresh_database("reconciler_test") as url:
        yield url


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database named `prefix_<random>` on the machine's PostgreSQL, yield its URL, drop it."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"PostgreSQL is not reachable at {admin.url}: {str(exc.orig).splitlines()[0]}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prometheus(folder: Path, config: str) -> Iterator[str]:
    """A real Prometheus (Debian's package) with `config`, on a free loopback port, its data in `folder`."""
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("prometheus is not installed (bash .ci/services installs Debian's package)")
    (folder / "prometheus.yml").write_text(config)
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            unavailable(f"prometheus did not become ready on {url}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="session")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with nothing to scrape, for queries of the series tests push into it."""
    with prometheus(tmp_path_factory.mktemp("prometheus"), "global:\n  evaluation_interval: 1s\n") as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[dict[str, Any]]:
    """Answers 500 to the first `fail` posts, then 200; keeps every body it accepted."""
    state: dict[str, Any] = {"fail": 0, "bodies": [], "attempts": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state["attempts"] += 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state["fail"] > 0:
                state["fail"] -= 1
                self.send_response(500)
            else:
                state["bodies"].append(body)
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook/SECRET-TOKEN"
    yield state
    server.shutdown()
    server.server_close()


# Stand-ins for systems that do not run here, shared by the adapter and end-to-end tests (imported when used:
# tests.servers imports this module).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",  # moto takes any key
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": "/nonexistent",  # nothing of the machine's ~/.aws, and no instance role
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """kmock's Kubernetes API emulator on loopback, and a kubeconfig pointing at it: (Emulator, Path)."""
    from tests.k8s_emulator import emulator  # noqa: PLC0415

    with emulator(tmp_path_factory.mktemp("kube")) as running:
        yield running


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server mode on loopback: AWS Parameter Store and Secrets Manager for the real boto3 client."""
    from tests.servers import moto_server  # noqa: PLC0415

    with moto_server() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's standard chain finds AWS_ENV's credentials and nothing else."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
