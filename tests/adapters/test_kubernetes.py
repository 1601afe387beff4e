"""The Kubernetes adapter with the official client, against kmock's API emulator (no API server runs here)."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest

from reconciler.adapters.kubernetes import KubernetesAdapter
from reconciler.domain.paths import MISSING
from reconciler.errors import ApplyError, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AdapterSettings, KubernetesSettings, SecretSettings, Settings
from tests.adapters.helpers import target
from tests.conftest import free_port
from tests.k8s_emulator import Emulator

pytestmark = pytest.mark.integration


@pytest.fixture
def api(kube: tuple[Emulator, Path]) -> Any:
    return kubernetes.config.new_client_from_config(str(kube[1]))


@pytest.fixture
def adapter(kube: tuple[Emulator, Path]) -> KubernetesAdapter:
    return KubernetesAdapter(
        Settings(adapters=AdapterSettings(timeout_s=2), kubernetes=KubernetesSettings(kubeconfig=kube[1]))
    )


@pytest.fixture
def namespace() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


def configmap(api: Any, namespace: str, data: dict[str, str], name: str = "app") -> None:
    kubernetes.client.CoreV1Api(api).create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "namespace": namespace}, "data": data}
    )


def deployment(api: Any, namespace: str, containers: list[dict[str, Any]]) -> None:
    labels = {"app": "web"}
    kubernetes.client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
            },
        },
    )


def test_configmap_read_stage_commit(tmp_path: Path, api: Any, adapter: KubernetesAdapter, namespace: str) -> None:
    configmap(api, namespace, {"LOG_LEVEL": "DEBUG", "POOL": "10"})
    t = target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": namespace, "name": "app"})
    assert adapter.discover(t).document == {"LOG_LEVEL": "DEBUG", "POOL": "10"}
    staged = adapter.stage(
        t, [Change(("LOG_LEVEL",), "DEBUG", "INFO"), Change(("POOL",), "10", MISSING)], dry_run=False
    )
    assert staged.results == [ChangeResult.WRITE, ChangeResult.WRITE]
    assert adapter.discover(t).document["LOG_LEVEL"] == "DEBUG"  # the stage is a server-side dry run
    adapter.commit(staged)
    assert adapter.discover(t).document == {"LOG_LEVEL": "INFO"}


def test_a_second_writer_is_a_conflict(tmp_path: Path, api: Any, adapter: KubernetesAdapter, namespace: str) -> None:
    configmap(api, namespace, {"LOG_LEVEL": "DEBUG"})
    t = target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": namespace, "name": "app"})
    staged = adapter.stage(t, [Change(("LOG_LEVEL",), "DEBUG", "INFO")], dry_run=False)
    core = kubernetes.client.CoreV1Api(api)
    core.replace_namespaced_config_map(
        "app", namespace, {"metadata": {"name": "app", "namespace": namespace}, "data": {"LOG_LEVEL": "TRACE"}}
    )
    with pytest.raises(ConflictError, match="changed by another writer"):
        adapter.commit(staged)
    assert core.read_namespaced_config_map("app", namespace).data == {"LOG_LEVEL": "TRACE"}


def secret(api: Any, namespace: str, data: dict[str, str], name: str = "db") -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    kubernetes.client.CoreV1Api(api).create_namespaced_secret(
        namespace, {"metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "data": encoded}
    )


def test_secret_data_is_decoded_secret_and_written_under_the_resource_version(
    tmp_path: Path, api: Any, adapter: KubernetesAdapter, namespace: str, kube: tuple[Emulator, Path]
) -> None:
    """A Secret's data reads base64-decoded, every key declared secret and a keyed fingerprint; a write
    replaces the data base64-encoded, keeps the type, and a second writer after the stage is a conflict."""
    secret(api, namespace, {"password": "old-pass", "user": "app"})
    t = target(tmp_path, {"adapter": "kubernetes", "kind": "Secret", "namespace": namespace, "name": "db"})
    observed = adapter.discover(t)
    assert observed.document == {"password": "old-pass", "user": "app"}
    assert [str(g) for g in observed.secrets] == ["/**"] and observed.without_secrets() == {}
    keyed = Settings(kubernetes=KubernetesSettings(kubeconfig=kube[1]), secrets=SecretSettings(hmac_key="another"))
    other = KubernetesAdapter(keyed)
    assert other.discover(t).fingerprint != observed.fingerprint  # keyed: another key, another fingerprint
    assert adapter.discover(t).fingerprint == observed.fingerprint
    staged = adapter.stage(
        t, [Change(("password",), "old-pass", "new-pass"), Change(("token",), MISSING, "t")], dry_run=False
    )
    assert staged.results == [ChangeResult.WRITE, ChangeResult.WRITE]
    adapter.commit(staged)
    core = kubernetes.client.CoreV1Api(api)
    live = core.read_namespaced_secret("db", namespace)
    assert {k: base64.b64decode(v).decode() for k, v in live.data.items()} == {
        "password": "new-pass",
        "user": "app",
        "token": "t",
    }
    assert live.type == "Opaque"
    staged = adapter.stage(t, [Change(("user",), "app", "svc")], dry_run=False)
    live.data["user"] = base64.b64encode(b"someone").decode()
    core.replace_namespaced_secret("db", namespace, live)
    with pytest.raises(ConflictError, match=f"secret/db in {namespace}: changed by another writer") as exc:
        adapter.commit(staged)
    assert "svc" not in str(exc.value) and "new-pass" not in str(exc.value)


def test_binary_secret_data_fails_the_read_naming_only_the_key(
    tmp_path: Path, api: Any, adapter: KubernetesAdapter, namespace: str
) -> None:
    """A value that is not UTF-8 text is not compared: the error names the key, never the value."""
    kubernetes.client.CoreV1Api(api).create_namespaced_secret(
        namespace, {"metadata": {"name": "bin", "namespace": namespace}, "data": {"blob": "/w=="}}
    )
    t = target(tmp_path, {"adapter": "kubernetes", "kind": "Secret", "namespace": namespace, "name": "bin"})
    with pytest.raises(DiscoveryError, match=r"the value of key 'blob' is not UTF-8 text"):
        adapter.discover(t)


def test_deployment_container_env(tmp_path: Path, api: Any, adapter: KubernetesAdapter, namespace: str) -> None:
    secret_ref = {"secretKeyRef": {"name": "db", "key": "password"}}
    deployment(
        api,
        namespace,
        [
            {
                "name": "api",
                "image": "x",
                "env": [{"name": "DB_TIMEOUT", "value": "60s"}, {"name": "DB_PASSWORD", "valueFrom": secret_ref}],
            },
            {"name": "sidecar", "image": "y"},
        ],
    )
    source = {"adapter": "kubernetes", "kind": "Deployment", "namespace": namespace, "name": "web"}
    with pytest.raises(DiscoveryError, match="the pod has 2 containers \\(api, sidecar\\); name one with `container`"):
        adapter.discover(target(tmp_path, source))
    t = target(tmp_path, {**source, "container": "api"})
    assert adapter.discover(t).document == {"DB_TIMEOUT": "60s", "DB_PASSWORD": {"valueFrom": secret_ref}}
    adapter.commit(adapter.stage(t, [Change(("DB_TIMEOUT",), "60s", "30s")], dry_run=False))
    live = kubernetes.client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    env = {e.name: (e.value, e.value_from) for e in live.spec.template.spec.containers[0].env}
    assert env["DB_TIMEOUT"] == ("30s", None)
    assert env["DB_PASSWORD"][1].secret_key_ref.key == "password"  # left as it was


def test_watch(tmp_path: Path, api: Any, adapter: KubernetesAdapter, namespace: str) -> None:
    configmap(api, namespace, {"A": "1"}, name="one")
    configmap(api, namespace, {"A": "1"}, name="two")
    one = target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": namespace, "name": "one"})
    two = target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": namespace, "name": "two"})
    seen: list[str] = []
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=adapter.watch, args=([one, two], seen.append, ready.set, stop), daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        time.sleep(0.3)  # an ADDED replay of the objects as listed would arrive now
        assert seen == []  # objects as they were when the watch began are no change
        kubernetes.client.CoreV1Api(api).replace_namespaced_config_map(
            "two", namespace, {"metadata": {"name": "two", "namespace": namespace}, "data": {"A": "2"}}
        )
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [two.name]
    finally:
        stop.set()


def test_errors(tmp_path: Path, adapter: KubernetesAdapter, namespace: str) -> None:
    with pytest.raises(DiscoveryError, match=f"configmap/nope in {namespace}: not found"):
        adapter.discover(
            target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": namespace, "name": "nope"})
        )
    with pytest.raises(ConfigurationError, match=r"spec\.source\.kind: 'Job' is not one of ConfigMap, Secret, Deploy"):
        adapter.discover(target(tmp_path, {"adapter": "kubernetes", "kind": "Job", "name": "x"}))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.container: only a Deployment has containers"):
        adapter.discover(
            target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "name": "x", "container": "c"})
        )
    nowhere = KubernetesAdapter(Settings(kubernetes=KubernetesSettings(kubeconfig=tmp_path / "missing")))
    with pytest.raises(DiscoveryError, match="no usable cluster configuration"):
        nowhere.discover(target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "name": "x"}))
    with pytest.raises(ApplyError):
        adapter.stage(
            target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "namespace": namespace, "name": "nope"}),
            [Change(("A",), "1", "2")],
            dry_run=False,
        )


def test_an_unreachable_api_server(tmp_path: Path, kube: tuple[Emulator, Path]) -> None:
    config = kube[1].read_text()
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(config.replace(config.split("server: ")[1].split()[0], f"http://127.0.0.1:{free_port()}"))
    adapter = KubernetesAdapter(
        Settings(adapters=AdapterSettings(timeout_s=1), kubernetes=KubernetesSettings(kubeconfig=dead))
    )
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="cannot reach the API server"):
        adapter.discover(target(tmp_path, {"adapter": "kubernetes", "kind": "ConfigMap", "name": "x"}))
    assert time.monotonic() - started < 5  # no hidden retries
