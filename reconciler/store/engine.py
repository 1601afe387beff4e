"""Engine setup: SQLite in WAL mode by default, PostgreSQL for production; passwords never printed."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from reconciler.errors import ConfigurationError
from reconciler.store import availability

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Page cache per connection, in KiB (SQLite's default is 2,000). A pass's journal of 100,000 actions writes 41 MiB
# of pages, and its two indexes on random keys (ids, idempotency keys: 9 MiB) take them at random places: with
# the default cache SQLite spills dirty index pages to the WAL in the middle of the transaction and reads them
# back. Memory only, taken as needed; durability is untouched (journal_mode and synchronous below decide that).
SQLITE_CACHE_KIB = 32_768


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


# What libpq and psycopg say, and what an SRE at 2 AM should read instead: (pattern, words); {0} is the name
# the pattern caught. The first that matches wins.
_CAUSES = (
    (
        re.compile(r'database "([^"]+)" does not exist'),
        "database {0} does not exist (create it, then `reconciler db upgrade`)",
    ),
    (re.compile(r'role "([^"]+)" does not exist'), "role {0} does not exist (create it, or fix the user in the URL)"),
    (
        re.compile(r"password authentication failed for user \"([^\"]+)\"|no password supplied|authentication failed"),
        "authentication failed{0} (check the password or the server's pg_hba.conf)",
    ),
    (re.compile(r"Connection refused"), "connection refused: is the server running and listening on that port?"),
    (re.compile(r"timeout expired|timed out|canceling statement due to statement timeout"), "timed out"),
    (re.compile(r"failed to resolve host '([^']+)'|could not translate host name \"([^\"]+)\""), "unknown host {0}"),
)


def describe_error(exc: BaseException, url: str) -> str:
    """A database error as its cause (database or role missing, authentication, refused, timeout, unknown
    host), else the driver's first line; never the password, even where a driver repeats it."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause)
    found = next(((m, words) for pattern, words in _CAUSES if (m := pattern.search(text))), None)
    if found is not None:
        match, words = found
        name = next((g for g in match.groups() if g), "")
        if words.startswith("authentication") and name:
            name = f" for user {name}"
        detail = words.format(name)
    else:
        detail = f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:
        detail = detail.replace(str(password), "***")
    return f"{safe_url(url)}: {detail}"


def create_engine(url: str, *, connect_timeout_s: float = 5.0, statement_timeout_s: float = 30.0) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign keys, and its folder is created.

    PostgreSQL gets bounds on everything that could hang a pass or /readyz when the server or the network
    goes away: a connect timeout, a statement timeout (0: none, for migrations), TCP keepalives and a TCP user
    timeout (unacknowledged data for longer than that drops the connection, as when packets are silently
    dropped), and a bounded wait for a pooled connection."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(f"RECONCILER_DATABASE_URL is not a database URL: {safe_url(url)}") from None
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["pool_timeout"] = max(connect_timeout_s, 1.0)
        connect_args: dict[str, Any] = {
            "connect_timeout": max(int(connect_timeout_s), 1),  # libpq takes whole seconds, at least 2 in effect
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            "tcp_user_timeout": int(max(connect_timeout_s, 1.0) * 2000),
        }
        if statement_timeout_s > 0:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout_s * 1000)}"
        kwargs["connect_args"] = connect_args
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigurationError(f"no driver for {safe_url(url)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    availability.watch(engine)  # while the store is unreachable, fail at once rather than wait each time
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


class DaemonLock:
    """One daemon per SQLite database: an exclusive lock on `<database>.daemon-lock`, held while the daemon runs.

    SQLite serves one writer well and cannot share the work between replicas, so a second daemon on the same
    file is refused, naming the first one's PID. PostgreSQL needs no such lock (replicas share the work).
    The kernel drops the lock when the process dies, even by SIGKILL, so a crash never leaves it stale.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._fd: int | None = None

    def acquire(self) -> None:
        parsed = make_url(self._url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
            return
        path = Path(parsed.database).expanduser().resolve().with_name(Path(parsed.database).name + ".daemon-lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigurationError(
                f"another reconciler daemon (pid {holder}) is running on {safe_url(self._url)}; SQLite serves one "
                "daemon. Stop it, or use PostgreSQL (RECONCILER_DATABASE_URL=postgresql+psycopg://...) to run "
                "several replicas"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
