"""While the history store is unreachable every use of it fails at once with the first failure's words, one
trial connection a second (the prober's, where there is one) finds out when it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from reconciler.errors import StoreUnavailable
from reconciler.store import availability
from reconciler.store import engine as engines
from reconciler.store.history import SqlHistoryStore
from tests.conftest import HMAC_KEY
from tests.proxy import PausingProxy, pausing_proxy


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[SqlHistoryStore, PausingProxy]]:
    url = sa.engine.make_url(postgres_url)
    with pausing_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        engine = engines.create_engine(
            url.set(port=proxy.port).render_as_string(hide_password=False), connect_timeout_s=2
        )
        yield SqlHistoryStore(engine, HMAC_KEY), proxy
        engine.dispose()


def _timed_ping(store: SqlHistoryStore) -> tuple[float, str | None]:
    started = time.monotonic()
    try:
        store.ping()
        error = None
    except StoreUnavailable as exc:
        error = str(exc)
    return time.monotonic() - started, error


def test_an_outage_fails_fast_after_the_first_failure_and_ends_by_itself(
    proxied: tuple[SqlHistoryStore, PausingProxy],
) -> None:
    store, proxy = proxied
    assert _timed_ping(store)[1] is None
    health = availability.health_of(store.engine)
    assert health is not None and not health.down

    proxy.set("refuse")
    _, first = _timed_ping(store)
    assert first is not None and health.down
    proxy.set("drop")  # now a new connection would hang until the connect timeout
    for _ in range(20):
        took, error = _timed_ping(store)
        assert error is not None and "history store unreachable since" in error
        assert took < 0.2, f"a use of the store during an outage waited {took:.2f}s"
    time.sleep(availability.RETRY_S)
    took, error = _timed_ping(store)  # the trial: waits out the connect timeout of the dropped network
    assert error is not None and took >= 1.0

    proxy.set("pass")
    time.sleep(availability.RETRY_S)
    assert _timed_ping(store)[1] is None
    assert not health.down
    assert _timed_ping(store)[1] is None


def test_only_the_prober_tries_again_where_there_is_one(proxied: tuple[SqlHistoryStore, PausingProxy]) -> None:
    store, proxy = proxied
    health = availability.health_of(store.engine)
    assert health is not None
    with health.probing():
        store.ping()
    proxy.set("refuse")
    with pytest.raises(StoreUnavailable):
        store.ping()
    proxy.set("pass")
    time.sleep(availability.RETRY_S + 0.1)
    with pytest.raises(StoreUnavailable, match="unreachable since"):
        store.ping()  # not the prober: fails at once though the store is back
    result: list[str | None] = []
    prober = threading.Thread(target=lambda: result.append(_probe(health, store)))
    prober.start()
    prober.join()
    assert result == [None] and not health.down
    store.ping()  # everyone again


def _probe(health: availability.StoreHealth, store: SqlHistoryStore) -> str | None:
    with health.probing():
        return _timed_ping(store)[1]


def test_sql_errors_that_are_not_about_reaching_the_store_leave_it_up(store: SqlHistoryStore) -> None:
    health = availability.health_of(store.engine)
    assert health is not None
    with pytest.raises(sa.exc.DBAPIError), store.engine.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert not health.down
    store.ping()
