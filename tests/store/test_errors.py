"""PostgreSQL errors name their cause (database or role missing, authentication, refused, timeout), never a
password."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from reconciler.errors import StoreUnavailable
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.history import SqlHistoryStore


def reach(url: str, timeout_s: float = 2.0) -> str:
    """What a command says when the store at `url` cannot be used."""
    with pytest.raises(StoreUnavailable) as caught:
        migrate.current(engines.create_engine(url, connect_timeout_s=timeout_s))
    return str(caught.value)


def test_a_missing_database_and_role_are_named(postgres_url: str) -> None:
    """On the machine's server (a fresh database on it proves it is there), the database or role that does not
    exist is named, with what to do."""
    url = sa.make_url(postgres_url)
    missing_db = reach(url.set(database="no_such_database_xyz").render_as_string(False))
    assert "database no_such_database_xyz does not exist" in missing_db and "OperationalError" not in missing_db
    missing_role = reach(url.set(username="no_such_role_xyz", password="hunter2-secret").render_as_string(False))
    assert "role no_such_role_xyz does not exist" in missing_role
    assert "hunter2-secret" not in missing_role and "***" in missing_role


def test_refused_and_timeout_are_named() -> None:
    """Nothing listening: refused. A server that accepts the connection and never answers: timed out."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    refused = reach(f"postgresql+psycopg://u:pw-secret@127.0.0.1:{port}/db")
    assert "connection refused" in refused and "pw-secret" not in refused
    with silent_server() as silent:
        timeout = reach(f"postgresql+psycopg://u@127.0.0.1:{silent}/db", timeout_s=1)
    assert f"127.0.0.1:{silent}/db: timed out" in timeout


@pytest.fixture
def store_on_closed_port() -> SqlHistoryStore:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return SqlHistoryStore(engines.create_engine(f"postgresql+psycopg://u:pw-secret@127.0.0.1:{port}/db"), b"k")


def test_a_store_query_names_the_cause_too(store_on_closed_port: SqlHistoryStore) -> None:
    """Errors of queries after start-up (the stores' _fail) say the same words."""
    with pytest.raises(StoreUnavailable) as caught:
        store_on_closed_port.runs()
    assert "connection refused" in str(caught.value) and "pw-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("driver_says", "shown"),
    [
        ('FATAL:  password authentication failed for user "bob"', "authentication failed for user bob"),
        ("fe_sendauth: no password supplied", "authentication failed (check the password"),
        ("something new went wrong\nsecond line", "OSError: something new went wrong"),
        ("server echoed s3cr3t-pw back", "server echoed *** back"),
    ],
)
def test_the_cause_in_words(driver_says: str, shown: str) -> None:
    """Authentication (which the machine's trust-only server cannot produce) and unknown causes: the driver's
    first line; a password repeated by a driver is masked."""
    said = engines.describe_error(OSError(driver_says), "postgresql+psycopg://bob:s3cr3t-pw@db.example:5432/app")
    assert shown in said and "s3cr3t-pw" not in said and said.startswith("postgresql+psycopg://bob:***@db.example")


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose listener never accepts: TCP connects (the backlog), and then no answer ever comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]
