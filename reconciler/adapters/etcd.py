"""The etcd adapter (v3 API): the keys under a prefix as a nested document.

It speaks etcd's own JSON gateway (/v3/kv/range, /v3/kv/txn, /v3/watch, /v3/auth/authenticate), which every
etcd since 3.4 serves on its client port, over the standard library's HTTP client: no gRPC stack to install,
and nothing in it that a maintained Python client would do better (the Python gRPC clients lag behind
protobuf releases).

source options:
  endpoint: http://127.0.0.1:2379   # default
  prefix: /config/payments/         # required; `/` in the rest of a key nests: db/pool -> {db: {pool: ...}}
  values: string | json             # how values are read and written (default string)
  username: reconciler              # with auth enabled
  password: etcd-prod               # a credential name (RECONCILER_ADAPTERS__CREDENTIALS)

A write is one transaction: every key it touches is compared with the revision read while staging (absent
keys with create_revision 0), so a writer that got there first makes the whole transaction fail: a
conflict, nothing written. Watching uses one watch stream per endpoint over the targets' common prefix.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.adapters import etcd_watch, formats
from reconciler.adapters.common import Credentials, Options, apply_changes, flatten, nest, run_streams
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.errors import AccessDenied, ApplyError, ConflictError, DiscoveryError, ReconcilerError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

TXN_OPS = 128  # etcd's default --max-txn-ops: ranges per bulk-read transaction
OPTIONS = ("endpoint", "prefix", "values", "username", "password")


@dataclass(frozen=True)
class _Where:
    endpoint: str
    prefix: str
    json_values: bool
    username: str | None
    password: str | None

    @property
    def location(self) -> str:
        return f"{self.endpoint} {self.prefix}*"


@dataclass(frozen=True)
class _Key:
    value: Any
    mod_revision: int


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _range_end(prefix: str) -> str:
    """The key just past every key that starts with `prefix` (etcd's prefix range)."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return _b64(b"\0")
    raw[-1] += 1
    return _b64(bytes(raw))


def _range_request(where: _Where) -> dict[str, str]:
    return {"key": _b64(where.prefix), "range_end": _range_end(where.prefix)}


def _keys(where: _Where, kvs: list[dict[str, Any]], error: type[ReconcilerError]) -> tuple[dict[str, _Key], bytes]:
    """A range's keys (relative to the prefix) with their values and revisions, and the bytes that
    fingerprint them."""
    keys: dict[str, _Key] = {}
    for kv in kvs:
        name = base64.b64decode(kv["key"]).decode("utf-8", "replace")[len(where.prefix) :]
        raw = base64.b64decode(kv.get("value", ""))
        try:
            value: Any = formats.parse_json_value(raw) if where.json_values else raw.decode("utf-8")
        except (formats.FormatError, UnicodeDecodeError):
            kind = "JSON" if where.json_values else "UTF-8 text"
            raise error(f"{where.location}: the value of {where.prefix}{name} is not {kind}") from None
        keys[name] = _Key(value, int(kv.get("mod_revision", 0)))
    data = json.dumps({k: [v.value, v.mod_revision] for k, v in sorted(keys.items())}).encode()
    return keys, data


class EtcdAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True, watch=True, strings_only=True)

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._credentials = Credentials(settings)
        self._tokens: dict[tuple[str, str | None], str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> EtcdAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._where(target)

    def _where(self, target: Target) -> _Where:
        options = Options.of(target, "etcd", OPTIONS)
        endpoint = options.text("endpoint", "http://127.0.0.1:2379").rstrip("/")
        if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
            raise options.problem("endpoint", "must be an http:// or https:// URL")
        values = options.text("values", "string", choices=("string", "json"))
        username = options.text("username", None)
        password = self._credentials.get(options, "password")
        if (username is None) != (password is None):
            raise options.problem("username", "give both username and password, or neither")
        return _Where(endpoint, options.text("prefix"), values == "json", username, password)

    # -- the JSON gateway ---------------------------------------------------------------------------------

    def _connection(self, endpoint: str, timeout: float | None) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(endpoint)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)

    def _post(self, where: _Where, path: str, body: dict[str, Any], error: type[ReconcilerError]) -> dict[str, Any]:
        for attempt in (1, 2):
            headers = {"Content-Type": "application/json"}
            if where.username is not None:
                headers["Authorization"] = self._token(where, error, fresh=attempt == 2)
            status, data = self._send(where.endpoint, path, body, headers, error)
            if status == 401 and where.username is not None and attempt == 1:
                continue  # the token expired: authenticate again, once
            return self._answer(where.endpoint, path, status, data, error)
        raise AssertionError("unreachable")

    def _send(
        self, endpoint: str, path: str, body: dict[str, Any], headers: dict[str, str], error: type[ReconcilerError]
    ) -> tuple[int, bytes]:
        conn = self._connection(endpoint, self._timeout)
        try:
            conn.request("POST", path, json.dumps(body), headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise error(f"{endpoint}: cannot reach etcd: {exc}") from None
        finally:
            conn.close()

    def _answer(
        self, endpoint: str, path: str, status: int, data: bytes, error: type[ReconcilerError]
    ) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = json.loads(data or b"{}")
        except ValueError:
            raise error(f"{endpoint}{path}: etcd answered HTTP {status} with something that is not JSON") from None
        if status >= 400 or "error" in answer:
            message = self._credentials.scrub(str(answer.get("message") or answer.get("error") or status))
            if status in (401, 403) or "authentication failed" in message or "permission denied" in message:
                raise AccessDenied(f"{endpoint}: etcd refused the credentials: {message}")
            raise error(f"{endpoint}{path}: etcd answered HTTP {status}: {message}")
        return answer

    def _token(self, where: _Where, error: type[ReconcilerError], fresh: bool = False) -> str:
        key = (where.endpoint, where.username)
        if fresh or key not in self._tokens:
            body = {"name": where.username, "password": where.password}
            status, data = self._send(where.endpoint, "/v3/auth/authenticate", body, {}, error)
            self._tokens[key] = str(self._answer(where.endpoint, "/v3/auth/authenticate", status, data, error)["token"])
        return self._tokens[key]

    def _range(self, where: _Where, error: type[ReconcilerError]) -> tuple[dict[str, _Key], bytes]:
        answer = self._post(where, "/v3/kv/range", _range_request(where), error)
        return _keys(where, answer.get("kvs", []), error)

    # -- ports ------------------------------------------------------------------------------------------

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        """Every target's prefix read in one transaction per endpoint (up to TXN_OPS ranges each, all at one
        revision): one round trip for a whole run instead of one per target."""
        groups: dict[tuple[str, str | None], list[tuple[str, _Where]]] = {}
        for name, target in targets.items():
            try:
                where = self._where(target)
            except ReconcilerError:
                continue  # its own pass reports the bad option
            groups.setdefault((where.endpoint, where.username), []).append((name, where))
        seen: dict[str, str] = {}
        for group in groups.values():
            for start in range(0, len(group), TXN_OPS):
                chunk = group[start : start + TXN_OPS]
                body = {"success": [{"request_range": _range_request(where)} for _, where in chunk]}
                try:
                    answer = self._post(chunk[0][1], "/v3/kv/txn", body, DiscoveryError)
                except ReconcilerError:
                    break  # this endpoint is not answering: its targets' own passes say so
                responses = answer.get("responses", [])
                if len(responses) != len(chunk):
                    break
                for (name, where), response in zip(chunk, responses, strict=True):
                    try:
                        _, data = _keys(where, response.get("response_range", {}).get("kvs", []), DiscoveryError)
                    except ReconcilerError:
                        continue
                    seen[name] = fingerprint.of_bytes(data)
        return seen

    def discover(self, target: Target) -> Observed:
        where = self._where(target)
        keys, data = self._range(where, DiscoveryError)
        document = nest({k: v.value for k, v in keys.items()}, where.location)
        return Observed(fingerprint.of_bytes(data), where.location, document=document)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        if self._where(target).json_values:
            return desired

        def strings(path: str, node: Any) -> Any:
            if isinstance(node, dict):
                return {k: strings(f"{path}.{k}", v) for k, v in node.items()}
            if isinstance(node, list) or node is None:
                raise target.problem(path, "etcd values are strings here (set `values: json` for JSON values)")
            if isinstance(node, bool):
                return "true" if node else "false"
            return str(node)

        return {k: strings(f"spec.desired.{k}", v) for k, v in desired.items()}

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        where = self._where(target)
        keys, _ = self._range(where, ApplyError)
        current = nest({k: v.value for k, v in keys.items()}, where.location)
        updated, results, messages = apply_changes(
            current, changes, target.list_keys(), dry_run=dry_run, where=where.location
        )
        if ChangeResult.WRITE not in results:
            return Staged(target.name, results, messages, dry_run, None)
        before, after = dict(flatten(current)), dict(flatten(updated))
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        for name in sorted({*before, *after}):
            if before.get(name) == after.get(name) and (name in before) == (name in after):
                continue
            key = _b64(where.prefix + name)
            if name in keys:
                compare.append(
                    {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": keys[name].mod_revision}
                )
            else:
                compare.append({"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0})
            if name in after:
                value = json.dumps(after[name]) if where.json_values else str(after[name])
                success.append({"request_put": {"key": key, "value": _b64(value)}})
            else:
                success.append({"request_delete_range": {"key": key}})
        return Staged(target.name, results, messages, dry_run, (where, {"compare": compare, "success": success}))

    def commit(self, staged: Staged) -> None:
        if staged.dry_run or staged.handle is None:
            return
        where, txn = staged.handle
        answer = self._post(where, "/v3/kv/txn", txn, ApplyError)
        if not answer.get("succeeded", False):  # proto3 JSON leaves out false
            raise ConflictError(f"{where.location}: a key changed after it was read; the transaction wrote nothing")

    def discard(self, staged: Staged) -> None:
        """Nothing is written before commit."""

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """One watch stream per endpoint, over the common prefix of its targets' prefixes."""
        by_endpoint: dict[tuple[str, str | None, str | None], list[tuple[str, str]]] = {}
        wheres: dict[tuple[str, str | None, str | None], _Where] = {}
        for target in targets:
            where = self._where(target)
            key = (where.endpoint, where.username, where.password)
            by_endpoint.setdefault(key, []).append((where.prefix, target.name))
            wheres[key] = where
        done = threading.Event()  # set by stop, or by the first stream that ends: then every stream closes
        failures: list[BaseException] = []
        created = threading.Semaphore(0)  # released by each stream once etcd has confirmed it
        streams = [
            threading.Thread(
                target=self._watch_one,
                args=(wheres[key], prefixes, changed, created, done, failures),
                name=f"etcd-watch {wheres[key].endpoint}",
                daemon=True,
            )
            for key, prefixes in by_endpoint.items()
        ]
        run_streams(streams, created, ready, done, stop)
        for thread in streams:
            thread.join()
        if not stop.is_set():
            reason = f": {failures[0]}" if failures else ""
            raise DiscoveryError(f"an etcd watch stream ended{reason}")

    def _watch_one(
        self,
        where: _Where,
        prefixes: list[tuple[str, str]],
        changed: Callable[[str], None],
        created: threading.Semaphore,
        done: threading.Event,
        failures: list[BaseException],
    ) -> None:
        common = os.path.commonprefix([p for p, _ in prefixes])  # noqa: RUF071 - keys are strings, not paths
        headers = {"Content-Type": "application/json"}
        if where.username is not None:
            headers["Authorization"] = self._token(where, DiscoveryError)
        body = {"create_request": {"key": _b64(common), "range_end": _range_end(common)}}
        conn = self._connection(where.endpoint, None)  # a stream: it waits as long as nothing changes

        def end_when_done() -> None:
            # Only the socket is shut down here, which ends the blocked read below; the connection is closed
            # by the thread that reads it, never under its feet.
            done.wait()
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=end_when_done, daemon=True).start()
        try:
            conn.request("POST", "/v3/watch", json.dumps(body), headers)
            if done.is_set():  # stopped while connecting, maybe before there was a socket to shut down
                return
            response = conn.getresponse()
            if response.status != 200:
                self._answer(where.endpoint, "/v3/watch", response.status, response.read(), DiscoveryError)
            etcd_watch.follow(response, where.location, prefixes, changed, created)
        except (OSError, http.client.HTTPException, ValueError, ReconcilerError) as exc:
            if not done.is_set():
                failures.append(exc)
        finally:
            done.set()
            conn.close()
