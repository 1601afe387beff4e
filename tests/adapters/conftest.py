"""Servers the adapter tests talk to: private ones started here, or the machine's own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import etcd_server, nats_server, postgres_cluster, redis_server
from tests.unleash_server import Unleash, unleash_server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[dict[str, object]]:
    """A private PostgreSQL cluster (see tests/servers.py), for tests that change a server's settings."""
    # Not under pytest's temp dir: that is private to root, and the cluster runs as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    try:
        with postgres_cluster(folder) as where:
            yield where
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private redis-server (password tests.servers.REDIS_PASSWORD) whose configuration tests may change."""
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private etcd with auth on (root / tests.servers.ETCD_PASSWORD)."""
    with etcd_server(tmp_path_factory.mktemp("etcd")) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private nats-server with JetStream and a password (reconciler / tests.servers.NATS_PASSWORD)."""
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture(scope="session")
def unleash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unleash]:
    """A real unleash-server (tests/unleash_server.py) shared by the session's tests: each names its own flags."""
    with unleash_server(tmp_path_factory.mktemp("unleash")) as server:
        yield server
