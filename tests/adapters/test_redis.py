"""The Redis adapters against a real, private redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from reconciler.adapters.redis import RedisConfigAdapter, RedisKeysAdapter
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ApplyError, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port
from tests.servers import REDIS_PASSWORD

pytestmark = pytest.mark.integration
SETTINGS = Settings(adapters=AdapterSettings(credentials={"redis": REDIS_PASSWORD}, timeout_s=2))


@pytest.fixture
def admin(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port, password=REDIS_PASSWORD, decode_responses=True)
    client.flushall()
    client.config_set("maxmemory", "0")
    client.config_set("notify-keyspace-events", "")
    yield client
    client.close()


def source(port: int, **extra: Any) -> dict[str, Any]:
    return {"port": port, "password": "redis", **extra}


def test_config_compares_in_redis_terms(tmp_path: Path, admin: redis.Redis, redis_port: int) -> None:
    adapter = RedisConfigAdapter(SETTINGS)
    admin.config_set("maxmemory", "100mb")
    admin.config_set("notify-keyspace-events", "KEA")
    desired = {"maxmemory": "100mb", "notify-keyspace-events": "AKE", "appendonly": False}
    t = target(tmp_path, {"adapter": "redis-config", **source(redis_port)}, desired)
    observed = adapter.discover(t)
    assert set(observed.document) == set(desired)
    assert adapter.normalize(t, desired) == observed.document  # equal values are not drift
    assert observed.document["maxmemory"] == "104857600"


def test_config_write_is_one_config_set(tmp_path: Path, admin: redis.Redis, redis_port: int) -> None:
    adapter = RedisConfigAdapter(SETTINGS)
    t = target(tmp_path, {"adapter": "redis-config", **source(redis_port)}, {"maxmemory": "1gb"})
    changes = [Change(("maxmemory",), "0", "1073741824"), Change(("maxmemory-policy",), "noeviction", "allkeys-lru")]
    staged = adapter.stage(t, changes, dry_run=False)
    assert admin.config_get("maxmemory") == {"maxmemory": "0"}
    adapter.commit(staged)
    live = admin.config_get("maxmemory*")
    assert (live["maxmemory"], live["maxmemory-policy"]) == ("1073741824", "allkeys-lru")
    bad = adapter.stage(
        t,
        [Change(("maxmemory",), "1073741824", "5"), Change(("maxmemory-policy",), "allkeys-lru", "sometimes")],
        dry_run=False,
    )
    with pytest.raises(ApplyError, match="maxmemory-policy"):
        adapter.commit(bad)
    assert admin.config_get("maxmemory") == {"maxmemory": "1073741824"}  # all or nothing
    stale = adapter.stage(t, [Change(("maxmemory",), "1073741824", "7")], dry_run=False)
    admin.config_set("maxmemory", "2mb")
    with pytest.raises(ConflictError, match="maxmemory was changed by another writer"):
        adapter.commit(stale)


def test_config_errors(tmp_path: Path, admin: redis.Redis, redis_port: int) -> None:
    adapter = RedisConfigAdapter(SETTINGS)
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.maxmemroy: .* has no parameter named"):
        adapter.discover(target(tmp_path, {"adapter": "redis-config", **source(redis_port)}, {"maxmemroy": "1"}))
    wrong = RedisConfigAdapter(Settings(adapters=AdapterSettings(credentials={"redis": "not-it"})))
    with pytest.raises(AccessDenied) as caught:
        wrong.discover(target(tmp_path, {"adapter": "redis-config", **source(redis_port)}, {"maxmemory": "1"}))
    assert "not-it" not in str(caught.value)
    with pytest.raises(DiscoveryError, match="cannot reach the server"):
        adapter.discover(target(tmp_path, {"adapter": "redis-config", **source(free_port())}, {"maxmemory": "1"}))


def keys_target(tmp_path: Path, port: int, desired: dict[str, Any] | None = None) -> Any:
    return target(tmp_path, {"adapter": "redis-keys", **source(port, prefix="app:")}, desired)


def test_keys_under_a_prefix(tmp_path: Path, admin: redis.Redis, redis_port: int) -> None:
    admin.set("app:LOG_LEVEL", "DEBUG")
    admin.hset("app:pool", mapping={"size": "10", "timeout": "30"})
    admin.set("other:x", "y")
    adapter = RedisKeysAdapter(SETTINGS)
    t = keys_target(tmp_path, redis_port, {"LOG_LEVEL": "INFO", "pool": {"size": 20}})
    assert adapter.discover(t).document == {"LOG_LEVEL": "DEBUG", "pool": {"size": "10", "timeout": "30"}}
    assert adapter.normalize(t, t.spec.desired) == {"LOG_LEVEL": "INFO", "pool": {"size": "20"}}
    admin.rpush("app:queue", "a")
    with pytest.raises(DiscoveryError, match="key 'app:queue' is a list; only strings and hashes"):
        adapter.discover(t)


def test_keys_staged_write_and_a_second_writer(tmp_path: Path, admin: redis.Redis, redis_port: int) -> None:
    admin.set("app:LOG_LEVEL", "DEBUG")
    admin.hset("app:pool", mapping={"size": "10", "old": "x"})
    adapter = RedisKeysAdapter(SETTINGS)
    t = keys_target(tmp_path, redis_port)
    changes = [
        Change(("LOG_LEVEL",), "DEBUG", "INFO"),
        Change(("pool", "size"), "10", "20"),
        Change(("pool", "old"), "x", MISSING),
        Change(("new",), MISSING, "1"),
    ]
    staged = adapter.stage(t, changes, dry_run=False)
    assert staged.results == [ChangeResult.WRITE] * 4
    adapter.commit(staged)
    assert adapter.discover(t).document == {"LOG_LEVEL": "INFO", "pool": {"size": "20"}, "new": "1"}

    staged = adapter.stage(t, [Change(("LOG_LEVEL",), "INFO", "WARN")], dry_run=False)
    admin.set("app:LOG_LEVEL", "TRACE")  # another writer, between the stage and the commit
    with pytest.raises(ConflictError, match="a watched key changed"):
        adapter.commit(staged)
    assert admin.get("app:LOG_LEVEL") == "TRACE"
    assert adapter.stage(t, [Change(("LOG_LEVEL",), "INFO", "WARN")], dry_run=True).results == [ChangeResult.CONFLICT]


def test_keys_watch(tmp_path: Path, admin: redis.Redis, redis_port: int) -> None:
    adapter = RedisKeysAdapter(SETTINGS)
    t = keys_target(tmp_path, redis_port)
    stop = threading.Event()
    seen: list[str] = []
    with pytest.raises(DiscoveryError, match="keyspace notifications are off"):
        adapter.watch([t], seen.append, lambda: None, stop)
    admin.config_set("notify-keyspace-events", "KA")
    ready = threading.Event()
    thread = threading.Thread(target=adapter.watch, args=([t], seen.append, ready.set, stop))
    thread.start()
    try:
        assert ready.wait(5)
        admin.set("other:x", "1")
        admin.set("app:LOG_LEVEL", "DEBUG")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [t.name]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
