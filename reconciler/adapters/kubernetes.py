"""The Kubernetes adapter: a ConfigMap's data, a Secret's data, or a Deployment container's environment,
through the official client.

source options:
  kind: ConfigMap | Secret | Deployment
  namespace: payments            # default "default"
  name: payments-api
  container: api                 # Deployment only; may be left out when the pod has one container

The cluster comes from settings (RECONCILER_KUBERNETES__KUBECONFIG and __CONTEXT), else the in-cluster
service account, else ~/.kube/config. The RBAC the adapter needs: get, list, watch and update on configmaps,
secrets and deployments in the namespaces it manages (deploy/kubernetes/ has the Role).

A Secret's data is read base64-decoded (UTF-8 text; a binary value fails the read, naming only its key) and
every key of it is secret: compared by keyed hash, never shown, logged or recorded, and its fingerprint is
keyed too. Writes replace `data` (base64-encoded) under the same resourceVersion guard as a ConfigMap's.

A write reads the object, changes the data or env entries, and replaces it carrying the resourceVersion that
was read: the API server refuses a stale one (409), so a writer that got there first is a conflict. The stage
is the same replace with `dryRun=All`: the server validates and admits the change without storing it.
An env entry that takes its value from elsewhere (valueFrom) is shown as {"valueFrom": ...}; writing a
plain value replaces it. Watching uses one watch stream per kind and namespace.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.common import Options, apply_changes, flat_strings, run_streams, secret_fingerprint
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import PathGlob
from reconciler.errors import AccessDenied, ApplyError, ConflictError, DiscoveryError, ReconcilerError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

OPTIONS = ("kind", "namespace", "name", "container")
KINDS = ("ConfigMap", "Secret", "Deployment")
EVERYTHING = (PathGlob.parse("/**"),)  # every key of a Secret is secret


@dataclass(frozen=True)
class _Ref:
    kind: str
    namespace: str
    name: str
    container: str | None

    def __str__(self) -> str:
        suffix = f" container {self.container}" if self.container else ""
        return f"{self.kind.lower()}/{self.name} in {self.namespace}{suffix}"


class KubernetesAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True, watch=True, strings_only=True)

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._hmac_key = settings.hmac_key()
        self._kubeconfig = settings.kubernetes.kubeconfig
        self._context = settings.kubernetes.context
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesAdapter:
        return cls(settings)

    def _api(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    if self._kubeconfig is not None:
                        client = kubernetes.config.new_client_from_config(str(self._kubeconfig), self._context)
                    else:
                        try:
                            kubernetes.config.load_incluster_config()
                            client = kubernetes.client.ApiClient()
                        except kubernetes.config.ConfigException:
                            client = kubernetes.config.new_client_from_config(context=self._context)
                except (kubernetes.config.ConfigException, OSError) as exc:
                    raise DiscoveryError(f"kubernetes: no usable cluster configuration: {exc}") from None
                client.configuration.retries = 0  # retries happen once, around whole adapter calls
                self._client = client
            return self._client

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._ref(target)

    def _ref(self, target: Target) -> _Ref:
        options = Options.of(target, "kubernetes", OPTIONS)
        kind = options.text("kind", choices=KINDS)
        container = options.text("container", None)
        if container is not None and kind != "Deployment":
            raise options.problem("container", "only a Deployment has containers")
        return _Ref(kind, options.text("namespace", "default"), options.text("name"), container)

    def _call(
        self, ref: _Ref, what: str, error: type[ReconcilerError], fn: Callable[[], Any], hide: Sequence[str] = ()
    ) -> Any:
        """`fn()`, with the client's errors as reconciler's; none of the values in `hide` (a Secret's data, as
        text and base64) is ever quoted from the server's message."""
        try:
            return fn()
        except ApiException as exc:
            reason = _reason(exc)
            for value in hide:
                if value:
                    reason = reason.replace(value, "<redacted>")
            if exc.status in (401, 403):
                raise AccessDenied(f"{ref}: the API server refused {what}: {reason}") from None
            if exc.status == 404:
                raise error(f"{ref}: not found") from None
            if exc.status == 409:
                raise ConflictError(f"{ref}: changed by another writer since it was read ({reason})") from None
            raise error(f"{ref}: {what} failed ({exc.status}): {reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise error(f"{ref}: cannot reach the API server: {exc}") from None

    def _read(self, ref: _Ref, error: type[ReconcilerError]) -> dict[str, Any]:
        api = self._api()
        read: Any
        if ref.kind == "ConfigMap":
            read = kubernetes.client.CoreV1Api(api).read_namespaced_config_map
        elif ref.kind == "Secret":
            read = kubernetes.client.CoreV1Api(api).read_namespaced_secret
        else:
            read = kubernetes.client.AppsV1Api(api).read_namespaced_deployment
        fetch = lambda: read(ref.name, ref.namespace, _request_timeout=self._timeout)  # noqa: E731
        obj = self._call(ref, "the read", error, fetch)
        return dict(api.sanitize_for_serialization(obj))

    def _container(self, ref: _Ref, obj: dict[str, Any], error: type[ReconcilerError]) -> dict[str, Any]:
        containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        if ref.container is None:
            if len(containers) != 1:
                names = ", ".join(c.get("name", "?") for c in containers)
                raise error(f"{ref}: the pod has {len(containers)} containers ({names}); name one with `container`")
            return dict(containers[0])
        for container in containers:
            if container.get("name") == ref.container:
                return dict(container)
        raise error(f"{ref}: no such container")

    def _document(self, ref: _Ref, obj: dict[str, Any], error: type[ReconcilerError]) -> dict[str, Any]:
        if ref.kind == "ConfigMap":
            return dict(obj.get("data") or {})
        if ref.kind == "Secret":
            return _decoded(ref, obj.get("data") or {}, error)
        document: dict[str, Any] = {}
        for entry in self._container(ref, obj, error).get("env") or []:
            if "valueFrom" in entry:
                document[entry["name"]] = {"valueFrom": entry["valueFrom"]}
            else:
                document[entry["name"]] = entry.get("value", "")
        return document

    # -- ports ------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        ref = self._ref(target)
        document = self._document(ref, self._read(ref, DiscoveryError), DiscoveryError)
        if ref.kind == "Secret":
            return Observed(
                secret_fingerprint(document, self._hmac_key), str(ref), document=document, secrets=EVERYTHING
            )
        data = json.dumps(document, sort_keys=True).encode()
        return Observed(fingerprint.of_bytes(data), str(ref), document=document)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return flat_strings(target, desired, "ConfigMap data and container env")

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        ref = self._ref(target)
        obj = self._read(ref, ApplyError)
        current = self._document(ref, obj, ApplyError)
        updated, results, messages = apply_changes(current, changes, {}, dry_run=dry_run, where=str(ref))
        if ChangeResult.WRITE not in results:
            return Staged(target.name, results, messages, dry_run, None)
        body = self._with_document(ref, obj, updated)
        # The server validates and admits the change without storing it; in dry-run mode too.
        self._replace(ref, body, ApplyError, server_dry_run=True)
        return Staged(target.name, results, messages, dry_run, (ref, body))

    def commit(self, staged: Staged) -> None:
        if staged.dry_run or staged.handle is None:
            return
        ref, body = staged.handle
        self._replace(ref, body, ApplyError, server_dry_run=False)

    def discard(self, staged: Staged) -> None:
        """Nothing is stored before commit (the stage is a server-side dry run)."""

    def _with_document(self, ref: _Ref, obj: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
        """`obj` (keeping its resourceVersion, the compare-and-swap guard) with `document` in place."""
        body = copy.deepcopy(obj)
        body.pop("status", None)
        if ref.kind == "ConfigMap":
            body["data"] = document
            return body
        if ref.kind == "Secret":
            body.pop("stringData", None)
            body["data"] = {k: base64.b64encode(str(v).encode()).decode() for k, v in document.items()}
            return body
        containers = body["spec"]["template"]["spec"]["containers"]
        index = containers.index(self._container(ref, obj, ApplyError))
        old = {e["name"]: e for e in containers[index].get("env") or []}
        env = []
        for name, value in document.items():
            if isinstance(value, dict) and "valueFrom" in value:
                env.append(old.get(name, {"name": name, "valueFrom": value["valueFrom"]}))
            else:
                env.append({"name": name, "value": value})
        containers[index]["env"] = env
        return body

    def _replace(self, ref: _Ref, body: dict[str, Any], error: type[ReconcilerError], *, server_dry_run: bool) -> None:
        api = self._api()
        extra: dict[str, Any] = {"_request_timeout": self._timeout}
        if server_dry_run:
            extra["dry_run"] = "All"
        write: Any
        if ref.kind == "ConfigMap":
            write = kubernetes.client.CoreV1Api(api).replace_namespaced_config_map
        elif ref.kind == "Secret":
            write = kubernetes.client.CoreV1Api(api).replace_namespaced_secret
        else:
            write = kubernetes.client.AppsV1Api(api).replace_namespaced_deployment
        hide = []
        if ref.kind == "Secret":
            encoded = body.get("data") or {}
            hide = [*encoded.values(), *(base64.b64decode(v).decode("utf-8", "replace") for v in encoded.values())]
        self._call(ref, "the write", error, lambda: write(ref.name, ref.namespace, body, **extra), hide)

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """One watch stream per kind and namespace; an event wakes the target that names the object."""
        groups: dict[tuple[str, str], dict[str, list[str]]] = {}
        for target in targets:
            ref = self._ref(target)
            groups.setdefault((ref.kind, ref.namespace), {}).setdefault(ref.name, []).append(target.name)
        done = threading.Event()
        failures: list[BaseException] = []
        watches: list[kubernetes.watch.Watch] = []
        threads = []
        listed = threading.Semaphore(0)  # released by each stream once it has listed its objects
        for (kind, namespace), names in groups.items():
            w = kubernetes.watch.Watch()
            watches.append(w)
            args = (w, kind, namespace, names, changed, listed, done, failures)
            threads.append(threading.Thread(target=self._stream, args=args, name=f"k8s-watch {kind}", daemon=True))
        run_streams(threads, listed, ready, done, stop)
        for w in watches:
            w.stop()
        for thread in threads:
            thread.join(self._timeout + 2)
        if not stop.is_set():
            raise DiscoveryError(f"kubernetes: a watch stream ended: {failures[0] if failures else 'closed'}")

    def _stream(
        self,
        w: kubernetes.watch.Watch,
        kind: str,
        namespace: str,
        names: dict[str, list[str]],
        changed: Callable[[str], None],
        listed_once: threading.Semaphore,
        done: threading.Event,
        failures: list[BaseException],
    ) -> None:
        api = self._api()
        listing: Any
        if kind == "ConfigMap":
            listing = kubernetes.client.CoreV1Api(api).list_namespaced_config_map
        elif kind == "Secret":
            listing = kubernetes.client.CoreV1Api(api).list_namespaced_secret
        else:
            listing = kubernetes.client.AppsV1Api(api).list_namespaced_deployment
        try:
            # What each object's version is now: an event that shows an object at a version already seen (the
            # ADDED replay at the start of a stream) is no change.
            listed: Any = listing(namespace, _request_timeout=self._timeout)
            seen = {item.metadata.name: item.metadata.resource_version for item in listed.items}
            version = listed.metadata.resource_version
            listed_once.release()  # the stream goes on from this version: no later change is missed
            while not done.is_set():
                # A short server-side timeout, so that a stop is noticed and the stream is renewed regularly.
                stream = w.stream(
                    listing, namespace, resource_version=version, timeout_seconds=5, _request_timeout=(self._timeout, 7)
                )
                try:
                    for event in stream:
                        meta = event["object"].metadata
                        if seen.get(meta.name) != meta.resource_version or event["type"] == "DELETED":
                            seen[meta.name] = meta.resource_version
                            for target in names.get(meta.name, []):
                                changed(target)
                        if done.is_set():
                            break
                except urllib3.exceptions.ReadTimeoutError:
                    pass  # a quiet stream the server did not end in time: renew it from the last version
                version = w.resource_version or version
        except Exception as exc:  # a broken stream: reported, and the caller re-establishes it
            if not done.is_set():
                failures.append(exc)
        finally:
            done.set()


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "").get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def _decoded(ref: _Ref, data: dict[str, Any], error: type[ReconcilerError]) -> dict[str, Any]:
    """A Secret's data as text; a value that is not base64 of UTF-8 text fails the read, naming only its key."""
    document: dict[str, Any] = {}
    for key, value in data.items():
        try:
            document[key] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise error(
                f"{ref}: the value of key {key!r} is not UTF-8 text; binary Secret data is not compared"
            ) from None
    return document
