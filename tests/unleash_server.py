"""A real Unleash server (npm's unleash-server, installed by .ci/services into .services/unleash) on a free
loopback port, with its own database on the machine's PostgreSQL, created here and dropped afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.conftest import REPO, free_port, fresh_database, unavailable

SERVER = REPO / ".services" / "unleash" / "node_modules" / "unleash-server" / "dist" / "server.js"
ADMIN_TOKEN = "*:*.reconciler-test-admin-token"
# Unleash's open-source edition serves three environments: development and production, which a new server
# has, and `default`, which servers upgraded from Unleash 4 have; the fixture adds it, so dev, staging and prod
# can each be an Unleash environment.
ENVIRONMENTS = ("development", "default", "production")


class Unleash:
    """A running server, and its admin API for tests that play another writer."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": ADMIN_TOKEN, "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def flag(self, name: str, project: str = "default") -> None:
        """Create a flag (disabled everywhere, no strategies)."""
        self.call("POST", f"/api/admin/projects/{project}/features", {"name": name})

    def strategy(self, name: str, environment: str, strategy: dict[str, Any]) -> str:
        """Add a strategy to a flag's environment; its id."""
        path = f"/api/admin/projects/default/features/{name}/environments/{environment}/strategies"
        return str(self.call("POST", path, strategy)["id"])

    def switch(self, name: str, environment: str, on: bool) -> None:
        path = f"/api/admin/projects/default/features/{name}/environments/{environment}/{'on' if on else 'off'}"
        self.call("POST", path)

    def state(self, name: str, environment: str) -> dict[str, Any]:
        """The admin API's own view of a flag in one environment."""
        feature = self.call("GET", f"/api/admin/projects/default/features/{name}")
        return next(e for e in feature["environments"] if e["name"] == environment)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (Debian's nodejs package); the Unleash tests need it")
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 20:
        unavailable(f"unleash-server 7 needs Node.js 20 or newer, this is {version}")
    if not SERVER.exists():
        unavailable(f"unleash-server is not installed at {SERVER.parent.parent} (bash .ci/services installs it)")
    return node


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as response:
            return bool(json.loads(response.read()).get("health") == "GOOD")
    except (OSError, ValueError):
        return False


@contextmanager
def unleash_server(folder: Path) -> Iterator[Unleash]:
    """Start unleash-server with an admin token (ADMIN_TOKEN) and the three ENVIRONMENTS in project default."""
    node = _node()
    with fresh_database("unleash_test") as db_url:
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgres://"),
            "DATABASE_SSL": "false",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "UNLEASH_URL": f"http://127.0.0.1:{port}",
            "INIT_ADMIN_API_TOKENS": ADMIN_TOKEN,
            "CHECK_VERSION": "false",
            "SEND_TELEMETRY": "false",
            "LOG_LEVEL": "error",
        }
        log = (folder / "unleash.log").open("wb")
        process = subprocess.Popen([node, str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (folder / "unleash.log").read_text(errors="replace")[-2000:]
                unavailable(f"unleash-server did not start on {url}: {tail}")
            time.sleep(0.25)
        try:
            _add_default_environment(db_url)
            server = Unleash(url)
            server.call("POST", "/api/admin/projects/default/environments", {"environment": "default"})
            yield server
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()


def _add_default_environment(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO environments (name, type, sort_order, enabled) "
                    "VALUES ('default', 'development', 1, true) ON CONFLICT (name) DO NOTHING"
                )
            )
    finally:
        engine.dispose()
