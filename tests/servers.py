"""Private servers for adapter tests: each starts on a free loopback port with its data in a temp dir, so tests
may change its configuration without touching the machine's own services."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.conftest import free_port, unavailable

PG_PASSWORD = "right-password"


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            unavailable(f"{what} did not start")
        time.sleep(0.1)


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def postgres_cluster(folder: Path) -> Iterator[dict[str, object]]:
    """A throwaway PostgreSQL cluster: superuser `postgres` (trust) and `reconciler` (password) on loopback."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        unavailable("PostgreSQL's initdb is not installed (Debian's postgresql package)")
    bindir = Path(initdb).parent
    data = folder / "pgdata"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = free_port()
    process = subprocess.Popen(
        _as_postgres(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "fsync=off",
                "-c",
                "listen_addresses=127.0.0.1",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = bindir / "pg_isready"
    _wait(
        lambda: subprocess.run([str(ready), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False).returncode == 0,
        process,
        "a private PostgreSQL",
    )
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-qc",
            f"CREATE ROLE reconciler LOGIN SUPERUSER PASSWORD '{PG_PASSWORD}'",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "reconciler", "dbname": "postgres"}
    finally:
        process.terminate()
        process.wait(30)


REDIS_PASSWORD = "redis-pass"


@contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    """A throwaway redis-server with a password, nothing on disk; yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (Debian's redis-server package)")
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--requirepass",
            REDIS_PASSWORD,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=REDIS_PASSWORD, socket_connect_timeout=1)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False

    _wait(ready, process, "a private redis-server")
    try:
        yield port
    finally:
        process.terminate()
        process.wait(30)


ETCD_PASSWORD = "etcd-pass"


@contextmanager
def etcd_server(folder: Path) -> Iterator[str]:
    """A throwaway single-member etcd with auth on (user root, ETCD_PASSWORD); yields its client URL."""
    binary = shutil.which("etcd")
    if binary is None:
        unavailable("etcd is not installed (Debian's etcd-server package; bash .ci/services installs it)")
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    process = subprocess.Popen(
        [
            str(binary),
            "--name",
            "test",
            "--data-dir",
            str(folder / "etcd"),
            "--listen-client-urls",
            url,
            "--advertise-client-urls",
            url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"test={peer_url}",
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=2) as response:
            return dict(json.loads(response.read()))

    def ready() -> bool:
        try:
            post("/v3/kv/range", {"key": "eA=="})
            return True
        except OSError:
            return False

    _wait(ready, process, "a private etcd")
    post("/v3/auth/user/add", {"name": "root", "password": ETCD_PASSWORD})
    post("/v3/auth/user/grant", {"user": "root", "role": "root"})
    post("/v3/auth/enable", {})
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


NATS_PASSWORD = "nats-pass"


@contextmanager
def nats_server(folder: Path) -> Iterator[str]:
    """A throwaway nats-server with JetStream and a user (reconciler / NATS_PASSWORD); yields its URL."""
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        unavailable("nats-server is not installed (Debian's nats-server package)")
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(folder),
            "--user",
            "reconciler",
            "--pass",
            NATS_PASSWORD,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                return conn.recv(4).startswith(b"INFO")
        except OSError:
            return False

    _wait(ready, process, "a private nats-server")
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode (a real HTTP server that speaks the AWS APIs, state in memory), standing in for AWS;
    yields its endpoint URL. Any access key is accepted."""
    try:
        import moto.server  # noqa: F401, PLC0415 - only to tell a missing package from a failed start
    except ImportError:
        unavailable("moto[server] is not installed (it is a dev dependency: pip install -e '.[dev]')")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    _wait(ready, process, "moto's server")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)
