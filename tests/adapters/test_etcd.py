"""The etcd adapter against a real, private etcd with authentication on."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconciler.adapters import etcd as etcd_adapter
from reconciler.adapters.etcd import EtcdAdapter
from reconciler.cli import app
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port
from tests.servers import ETCD_PASSWORD

pytestmark = pytest.mark.integration
SETTINGS = Settings(adapters=AdapterSettings(credentials={"etcd": ETCD_PASSWORD}, timeout_s=2))


class Etcd:
    """Another writer: talks to etcd's JSON gateway directly."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = str(self._post("/v3/auth/authenticate", {"name": "root", "password": ETCD_PASSWORD})["token"])

    def _post(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": token} if token else {}
        request = urllib.request.Request(self.url + path, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=2) as response:
            return dict(json.loads(response.read()))

    def put(self, key: str, value: str) -> None:
        self._post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, self.token)

    def get(self, key: str) -> str | None:
        kvs = self._post("/v3/kv/range", {"key": b64(key)}, self.token).get("kvs", [])
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def etcd(etcd_url: str) -> Etcd:
    return Etcd(etcd_url)


@pytest.fixture
def prefix() -> str:
    return f"/config/{uuid.uuid4().hex[:8]}/"


def source(etcd: Etcd, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"adapter": "etcd", "endpoint": etcd.url, "prefix": prefix, "username": "root", "password": "etcd", **extra}


def test_a_prefix_reads_as_a_nested_document(tmp_path: Path, etcd: Etcd, prefix: str) -> None:
    etcd.put(prefix + "LOG_LEVEL", "DEBUG")
    etcd.put(prefix + "db/pool", "10")
    etcd.put(prefix + "db/host", "db1")
    etcd.put(prefix.rstrip("/") + "-other/x", "no")
    adapter = EtcdAdapter(SETTINGS)
    t = target(tmp_path, source(etcd, prefix), {"db": {"pool": 20}, "debug": True})
    observed = adapter.discover(t)
    assert observed.document == {"LOG_LEVEL": "DEBUG", "db": {"pool": "10", "host": "db1"}}
    assert adapter.normalize(t, t.spec.desired) == {"db": {"pool": "20"}, "debug": "true"}
    etcd.put(prefix + "db/pool", "10")  # the same value, a new revision: the fingerprint follows revisions
    assert adapter.discover(t).fingerprint != observed.fingerprint


def test_json_values(tmp_path: Path, etcd: Etcd, prefix: str) -> None:
    etcd.put(prefix + "limits", '{"rps": 100}')
    adapter = EtcdAdapter(SETTINGS)
    t = target(tmp_path, source(etcd, prefix, values="json"))
    assert adapter.discover(t).document == {"limits": {"rps": 100}}
    etcd.put(prefix + "broken", "{")
    with pytest.raises(DiscoveryError, match=f"the value of {prefix}broken is not JSON"):
        adapter.discover(t)


def test_a_staged_transaction_and_a_second_writer(tmp_path: Path, etcd: Etcd, prefix: str) -> None:
    etcd.put(prefix + "LOG_LEVEL", "DEBUG")
    etcd.put(prefix + "db/pool", "10")
    adapter = EtcdAdapter(SETTINGS)
    t = target(tmp_path, source(etcd, prefix))
    changes = [
        Change(("LOG_LEVEL",), "DEBUG", MISSING),
        Change(("db", "pool"), "10", "20"),
        Change(("db", "timeout"), MISSING, "30s"),
    ]
    staged = adapter.stage(t, changes, dry_run=False)
    assert staged.results == [ChangeResult.WRITE] * 3
    assert etcd.get(prefix + "db/pool") == "10"
    adapter.commit(staged)
    assert adapter.discover(t).document == {"db": {"pool": "20", "timeout": "30s"}}

    staged = adapter.stage(t, [Change(("db", "pool"), "20", "40"), Change(("x",), MISSING, "1")], dry_run=False)
    etcd.put(prefix + "db/pool", "25")  # another writer wins the race
    with pytest.raises(ConflictError, match="the transaction wrote nothing"):
        adapter.commit(staged)
    assert etcd.get(prefix + "db/pool") == "25" and etcd.get(prefix + "x") is None


def test_watch_wakes_the_right_target(tmp_path: Path, etcd: Etcd, prefix: str) -> None:
    adapter = EtcdAdapter(SETTINGS)
    a = target(tmp_path, source(etcd, prefix + "a/"))
    b = target(tmp_path, source(etcd, prefix + "b/"))
    seen: list[str] = []
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=adapter.watch, args=([a, b], seen.append, ready.set, stop))
    thread.start()
    try:
        assert ready.wait(5)
        etcd.put(prefix + "b/key", "1")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [b.name]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_errors(tmp_path: Path, etcd: Etcd, prefix: str) -> None:
    wrong = EtcdAdapter(Settings(adapters=AdapterSettings(credentials={"etcd": "not-it"})))
    with pytest.raises(AccessDenied, match="etcd refused the credentials") as caught:
        wrong.discover(target(tmp_path, source(etcd, prefix)))
    assert "not-it" not in str(caught.value)
    adapter = EtcdAdapter(SETTINGS)
    with pytest.raises(DiscoveryError, match="cannot reach etcd"):
        adapter.discover(target(tmp_path, source(etcd, prefix, endpoint=f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.prefix: the etcd adapter needs prefix"):
        adapter.discover(target(tmp_path, {"adapter": "etcd"}))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.username: give both username and password"):
        adapter.discover(target(tmp_path, {"adapter": "etcd", "prefix": "/x/", "username": "root"}))
    etcd.put(prefix + "db", "x")
    etcd.put(prefix + "db/pool", "1")
    with pytest.raises(DiscoveryError, match="db/pool is below a key that holds a value"):
        adapter.discover(target(tmp_path, source(etcd, prefix)))


def test_apply_through_the_cli_writes_verifies_and_rolls_back(
    tmp_path: Path, etcd: Etcd, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path on a network adapter: plan, apply (stage, commit, verify by reading again), rollback."""
    etcd.put(prefix + "LOG_LEVEL", "DEBUG")
    etcd.put(prefix + "db/pool", "10")
    desired = tmp_path / "desired"
    desired.mkdir()
    target_doc = {
        "kind": "Target",
        "metadata": {"name": "app", "environment": "dev"},
        "spec": {"source": source(etcd, prefix), "desired": {"LOG_LEVEL": "INFO", "db": {"pool": 10}}},
    }
    (desired / "app.yaml").write_text(json.dumps(target_doc))
    (desired / "policy.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(desired))
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    monkeypatch.setenv("RECONCILER_ADAPTERS__CREDENTIALS", json.dumps({"etcd": ETCD_PASSWORD}))
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    plan = json.loads(runner.invoke(app, ["plan", "--format", "json"]).stdout)
    assert [d["path"] for d in plan["targets"][0]["drift"]] == ["/LOG_LEVEL"]  # 10 and "10" are equal here
    applied = runner.invoke(app, ["apply", "--format", "json"])
    result = json.loads(applied.stdout)
    assert result["exit_code"] == 0, applied.stdout
    assert [a["state"] for a in result["targets"][0]["actions"]] == ["verified"]
    assert etcd.get(prefix + "LOG_LEVEL") == "INFO"
    assert ETCD_PASSWORD not in applied.stdout
    undone = runner.invoke(app, ["rollback", result["run_id"]])
    assert undone.exit_code == 0, undone.output
    assert etcd.get(prefix + "LOG_LEVEL") == "DEBUG"


def test_bulk_fingerprints_in_transactions(
    tmp_path: Path, etcd: Etcd, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many prefixes are read in transactions of at most TXN_OPS ranges; each fingerprint is the one discover
    gives, and follows a change. A target with a bad option, or on an endpoint that does not answer, is left
    out for its own pass to report."""
    monkeypatch.setattr(etcd_adapter, "TXN_OPS", 2)  # five targets: three transactions
    adapter = EtcdAdapter(SETTINGS)
    targets = {}
    for i in range(5):
        etcd.put(f"{prefix}{i}/key", str(i))
        t = target(tmp_path, source(etcd, f"{prefix}{i}/"))
        targets[t.name] = t
    empty = target(tmp_path, source(etcd, f"{prefix}none/"))
    bad = target(tmp_path, source(etcd, prefix, values="yaml"))
    dead = target(tmp_path, source(etcd, prefix, endpoint=f"http://127.0.0.1:{free_port()}"))
    everything = {**targets, empty.name: empty, bad.name: bad, dead.name: dead}
    seen = adapter.fingerprints(everything)
    assert seen == {name: adapter.discover(t).fingerprint for name, t in {**targets, empty.name: empty}.items()}
    etcd.put(f"{prefix}3/key", "changed")
    again = adapter.fingerprints(targets)
    assert {n for n in targets if again[n] != seen[n]} == {list(targets)[3]}
