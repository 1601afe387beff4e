"""Fail fast while the history store is unreachable, and find out by itself when it is back.

Without this, every use of the store during an outage waits out the connect timeout on its own: a pass asks
the breaker, the flapping history and the approvals, so each pass of a daemon would stall for several
timeouts while the store is away, and detection with it. Once the store has failed for reasons of
connectivity, new connections fail at once with the first failure's words, except for one trial a second
(whoever comes first: usually the daemon's probe); the first statement that succeeds ends the outage.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

_FRESH = "reconciler_fresh"  # a connection made under the trial that admitted it
RETRY_S = 1.0  # one trial connection per this many seconds while the store is down

# SQLite's words for a store that cannot be used now (another writer holds it, the disk failed), as opposed
# to a statement that is wrong or a schema that is missing.
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)


class StoreHealth:
    """Whether the store answered lately; shared by every connection of one engine."""

    def __init__(self, retry_s: float = RETRY_S) -> None:
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self.down_since: float | None = None  # time.time() of the first failure of this outage
        self.cause: str | None = None
        self._next_trial = 0.0
        self._prober: int | None = None
        self._local = threading.local()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def admit(self) -> bool:
        """Whether a new connection may be tried now: always while the store is up; while it is down, one
        trial per `retry_s`, made by the prober where there is one (so that no pass ever waits on a trial)."""
        if self.down_since is None:
            return True
        if self._prober is not None and getattr(self._local, "probing", False) is False:
            return False
        with self._lock:
            now = time.monotonic()
            if now < self._next_trial:
                return False
            self._next_trial = now + self.retry_s
            return True

    @contextmanager
    def probing(self) -> Iterator[None]:
        """The calling thread is the prober: during an outage only its connections try the store again."""
        self._prober = threading.get_ident()
        self._local.probing = True
        try:
            yield
        finally:
            self._local.probing = False

    def failed(self, cause: str) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = time.time()
                self.cause = cause
            self._next_trial = time.monotonic() + self.retry_s

    def succeeded(self) -> None:
        if self.down_since is not None:
            with self._lock:
                self.down_since = None
                self.cause = None

    def refuse(self) -> str:
        """The words of a refusal to try the store now, remembered for refused() in this thread."""
        self._local.refused = True
        return self.refusal()

    def refused(self) -> bool:
        """Whether this thread's last connection was refused here (once: the flag is cleared)."""
        was = getattr(self._local, "refused", False)
        self._local.refused = False
        return bool(was)

    def refusal(self) -> str:
        since = time.strftime("%H:%M:%S", time.gmtime(self.down_since or time.time()))
        return f"history store unreachable since {since} UTC ({self.cause}); retried every {self.retry_s:g}s"


_HEALTH: weakref.WeakKeyDictionary[sa.Engine, StoreHealth] = weakref.WeakKeyDictionary()


def health_of(engine: sa.Engine) -> StoreHealth | None:
    return _HEALTH.get(engine)


def watch(engine: sa.Engine) -> StoreHealth:
    """Attach a StoreHealth to `engine`: connections fail fast while it is down, statements tell it when the
    store is back."""
    health = _HEALTH[engine] = StoreHealth()
    sqlite = engine.dialect.name == "sqlite"

    def before_connect(dialect: Any, record: Any, _args: Any, _params: Any) -> None:
        if not health.admit():
            raise dialect.loaded_dbapi.OperationalError(health.refuse())
        record.info[_FRESH] = True

    def on_checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        # During an outage a pooled connection is not trusted (its ping could hang on a dropped network):
        # it is replaced by a new one, which is tried or refused above.
        fresh = record.info.pop(_FRESH, False)
        if health.down and not fresh:
            raise sa.exc.DisconnectionError(health.refusal())

    def on_error(ctx: Any) -> None:
        if health.refused():  # this thread was refused above: no trial, so no news about the store
            return
        if _unavailable(ctx, sqlite):
            health.failed(_first_line(ctx.original_exception))

    def on_success(*_args: Any) -> None:
        health.succeeded()

    event.listen(engine, "do_connect", before_connect)
    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine, "handle_error", on_error)
    event.listen(engine, "after_cursor_execute", on_success)
    return health


def _unavailable(ctx: Any, sqlite: bool) -> bool:
    if ctx.is_disconnect:
        return True
    if not isinstance(ctx.sqlalchemy_exception, sa.exc.OperationalError):
        return False
    if not sqlite:
        return True  # psycopg: connection refused or lost, connect or statement timeout
    return str(ctx.original_exception).lower().startswith(_SQLITE_UNAVAILABLE)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
