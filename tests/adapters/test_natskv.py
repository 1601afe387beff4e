"""The NATS JetStream KV adapter against a real, private nats-server."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from reconciler.adapters.natskv import NatsKvAdapter
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port
from tests.servers import NATS_PASSWORD

pytestmark = pytest.mark.integration
SETTINGS = Settings(adapters=AdapterSettings(credentials={"nats": NATS_PASSWORD}, timeout_s=2))


class Bucket:
    """Another writer: its own connection, one call at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"b{uuid.uuid4().hex[:8]}"
        self._call(lambda js: js.create_key_value(bucket=self.name, history=5))

    def _call(self, fn: Any) -> Any:
        async def run() -> Any:
            nc = await nats.connect(self.url, user="reconciler", password=NATS_PASSWORD)
            try:
                return await fn(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(run())

    def put(self, key: str, value: str) -> None:
        async def put(js: Any) -> None:
            await (await js.key_value(self.name)).put(key, value.encode())

        self._call(put)

    def get(self, key: str) -> str | None:
        async def get(js: Any) -> str | None:
            try:
                entry = await (await js.key_value(self.name)).get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return None if entry.value is None else entry.value.decode()

        return self._call(get)  # type: ignore[no-any-return]


@pytest.fixture
def bucket(nats_url: str) -> Bucket:
    return Bucket(nats_url)


@pytest.fixture
def adapter() -> Iterator[NatsKvAdapter]:
    opened = NatsKvAdapter(SETTINGS)
    yield opened
    opened.close()


def source(bucket: Bucket, **extra: Any) -> dict[str, Any]:
    return {
        "adapter": "nats-kv",
        "url": bucket.url,
        "bucket": bucket.name,
        "user": "reconciler",
        "password": "nats",
        **extra,
    }


def test_reads_a_bucket_under_a_prefix(tmp_path: Path, bucket: Bucket, adapter: NatsKvAdapter) -> None:
    bucket.put("prod.LOG_LEVEL", "DEBUG")
    bucket.put("prod.POOL", "10")
    bucket.put("staging.POOL", "5")
    t = target(tmp_path, source(bucket, prefix="prod."), {"POOL": 20})
    observed = adapter.discover(t)
    assert observed.document == {"LOG_LEVEL": "DEBUG", "POOL": "10"}
    assert adapter.normalize(t, t.spec.desired) == {"POOL": "20"}
    assert adapter.discover(target(tmp_path, source(bucket))).document == {
        "prod.LOG_LEVEL": "DEBUG",
        "prod.POOL": "10",
        "staging.POOL": "5",
    }
    empty = Bucket(bucket.url)
    assert adapter.discover(target(tmp_path, source(empty))).document == {}


def test_writes_with_expected_revisions(tmp_path: Path, bucket: Bucket, adapter: NatsKvAdapter) -> None:
    bucket.put("LOG_LEVEL", "DEBUG")
    bucket.put("OLD", "x")
    t = target(tmp_path, source(bucket))
    changes = [Change(("LOG_LEVEL",), "DEBUG", "INFO"), Change(("OLD",), "x", MISSING), Change(("NEW",), MISSING, "1")]
    staged = adapter.stage(t, changes, dry_run=False)
    assert staged.results == [ChangeResult.WRITE] * 3
    assert bucket.get("LOG_LEVEL") == "DEBUG"
    adapter.commit(staged)
    assert adapter.discover(t).document == {"LOG_LEVEL": "INFO", "NEW": "1"}


def test_a_second_writer_is_a_conflict_and_earlier_keys_are_put_back(
    tmp_path: Path, bucket: Bucket, adapter: NatsKvAdapter
) -> None:
    bucket.put("A", "1")
    bucket.put("B", "1")
    t = target(tmp_path, source(bucket))
    staged = adapter.stage(t, [Change(("A",), "1", "2"), Change(("B",), "1", "2")], dry_run=False)
    bucket.put("B", "9")  # another writer, between the stage and the commit
    with pytest.raises(ConflictError, match="B changed after it was read; 1 key\\(s\\) already written were put back"):
        adapter.commit(staged)
    assert (bucket.get("A"), bucket.get("B")) == ("1", "9")


def test_watch(tmp_path: Path, bucket: Bucket, adapter: NatsKvAdapter) -> None:
    bucket.put("prod.X", "1")
    prod = target(tmp_path, source(bucket, prefix="prod."))
    staging = target(tmp_path, source(bucket, prefix="staging."))
    seen: list[str] = []
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=adapter.watch, args=([prod, staging], seen.append, ready.set, stop))
    thread.start()
    try:
        assert ready.wait(5)
        time.sleep(0.3)  # the snapshot of values from before the watch would arrive now
        assert seen == []  # values from before the watch do not count
        bucket.put("staging.Y", "2")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [staging.name]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_errors(tmp_path: Path, bucket: Bucket, adapter: NatsKvAdapter) -> None:
    wrong = NatsKvAdapter(Settings(adapters=AdapterSettings(credentials={"nats": "not-it"}, timeout_s=2)))
    with pytest.raises(AccessDenied, match="refused the credentials") as caught:
        wrong.discover(target(tmp_path, source(bucket)))
    wrong.close()
    assert "not-it" not in str(caught.value)
    with pytest.raises(DiscoveryError, match="the bucket does not exist"):
        adapter.discover(target(tmp_path, {**source(bucket), "bucket": "nope"}))
    with pytest.raises(DiscoveryError, match="cannot reach the NATS server"):
        adapter.discover(target(tmp_path, source(bucket, url=f"nats://127.0.0.1:{free_port()}")))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.bucket: the nats-kv adapter needs bucket"):
        adapter.discover(target(tmp_path, {"adapter": "nats-kv"}))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.url: holds credentials"):
        adapter.discover(target(tmp_path, source(bucket, url="nats://u:p@127.0.0.1:4222")))
