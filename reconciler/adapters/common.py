"""What the network adapters share: reading a target's source options, named credentials, safe messages."""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, KeyPath, get_in, set_in, to_pointer
from reconciler.domain.values import Redacted, canonical_json, holds
from reconciler.errors import ApplyError, ConfigurationError, DiscoveryError, RollbackError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import Settings

_NOTHING = object()


@dataclass(frozen=True)
class Options:
    """One target's `spec.source` options, checked against what the adapter knows; errors name the field."""

    target: Target
    adapter: str
    values: Mapping[str, Any]

    @classmethod
    def of(cls, target: Target, adapter: str, known: Iterable[str]) -> Options:
        values = target.spec.source.options()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise target.problem(
                f"spec.source.{unknown[0]}",
                f"unknown option of the {adapter} adapter; known: {', '.join(sorted(known))}",
            )
        return cls(target, adapter, values)

    def problem(self, name: str, message: str) -> ConfigurationError:
        return self.target.problem(f"spec.source.{name}", message)

    def text(self, name: str, default: Any = _NOTHING, *, choices: Iterable[str] = ()) -> Any:
        value = self.values.get(name, default)
        if value is _NOTHING:
            raise self.problem(name, f"the {self.adapter} adapter needs {name}")
        if value is default and default is not _NOTHING:
            return value
        if not isinstance(value, str) or not value:
            raise self.problem(name, "must be a non-empty string")
        allowed = list(choices)
        if allowed and value not in allowed:
            raise self.problem(name, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def integer(self, name: str, default: Any = _NOTHING) -> Any:
        value = self.values.get(name, default)
        if value is _NOTHING:
            raise self.problem(name, f"the {self.adapter} adapter needs {name}")
        if value is default and default is not _NOTHING:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.problem(name, "must be a non-negative integer")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.values.get(name, default)
        if not isinstance(value, bool):
            raise self.problem(name, "must be true or false")
        return value

    def strings(self, name: str) -> list[str]:
        value = self.values.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.problem(name, "must be a list of non-empty strings")
        return list(value)

    def mapping(self, name: str) -> dict[str, str]:
        value = self.values.get(name, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.problem(name, "must be a map of strings")
        return dict(value)


class Credentials:
    """Named secrets from settings (RECONCILER_ADAPTERS__CREDENTIALS); a manifest holds only the name."""

    def __init__(self, settings: Settings) -> None:
        self._secrets = {k: v.get_secret_value() for k, v in settings.adapters.credentials.items()}

    def get(self, options: Options, field: str) -> str | None:
        """The secret named by option `field`, None when the option is absent; unknown names are refused."""
        name = options.values.get(field)
        if name is None:
            return None
        if not isinstance(name, str) or not name:
            raise options.problem(field, "must name a credential of RECONCILER_ADAPTERS__CREDENTIALS")
        if name not in self._secrets:
            known = ", ".join(sorted(self._secrets)) or "none configured"
            raise options.problem(
                field, f"no credential named {name!r} in RECONCILER_ADAPTERS__CREDENTIALS (configured: {known})"
            )
        return self._secrets[name]

    def scrub(self, text: str) -> str:
        """`text` with every configured secret replaced, for messages built from a server's or library's error."""
        for secret in self._secrets.values():
            if secret:
                text = text.replace(secret, "<redacted>")
        return text


_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):[^@/\s]*@")


def safe_url(url: str) -> str:
    """A URL fit for messages: a password in it is replaced."""
    return _URL_PASSWORD.sub(r"\1:<redacted>@", url)


def apply_changes(
    current: dict[str, Any],
    changes: Sequence[Change],
    list_keys: Mapping[KeyPath, str],
    *,
    dry_run: bool,
    where: str,
    secrets: SecretHistory | None = None,
) -> tuple[dict[str, Any], list[ChangeResult], list[str]]:
    """Check each change against `current` (compare-and-swap on its `before`) and apply the writable ones to a
    copy: the updated document, each change's result and a message for people. A change of a journaled secret
    (a rollback: `before`, `after` or both a keyed hash) is compared by that hash, and its value to write is
    looked up in the live system's history through `secrets`; without one, it is refused."""
    updated = copy.deepcopy(current)
    results: list[ChangeResult] = []
    messages: list[str] = []
    key = secrets.key if secrets is not None else None
    for change in changes:
        live = get_in(current, change.path, list_keys)
        if holds(live, change.after, key):
            results.append(ChangeResult.NOOP)
            messages.append("live already holds the new value")
        elif holds(live, change.before, key):
            after = change.after
            if isinstance(after, Redacted):
                if secrets is None:
                    raise RollbackError(f"{where}: {to_pointer(change.path)}: a secret value cannot be put back here")
                after = secrets.recall(change.path, after)
            try:
                set_in(updated, change.path, after, list_keys)
            except ValueError as exc:
                raise ApplyError(f"{where}: {to_pointer(change.path)}: {exc}") from None
            results.append(ChangeResult.WRITE)
            messages.append("dry run: would write" if dry_run else "staged")
        else:
            results.append(ChangeResult.CONFLICT)
            messages.append("live holds neither the expected value nor the new one")
    return updated, results, messages


@dataclass(frozen=True)
class SecretHistory:
    """How an adapter that keeps secret values' history (capabilities.secret_history) finds one again: the key
    of the journal's hashes, and `recall(path, hash)`, the value at `path` in the live system's history whose
    keyed hash is `hash` (a RollbackError, naming no value, when there is none: never retried)."""

    key: bytes
    recall: Callable[[KeyPath, Redacted], Any]


def recalled(where: str, path: KeyPath, journaled: Redacted, key: bytes, history: Iterable[Any]) -> Any:
    """The first of `history` (one path's past values, newest first) whose keyed hash is `journaled`."""
    for value in history:
        if value is not MISSING and Redacted.of(value, key) == journaled:
            return value
    raise RollbackError(
        f"{where}: {to_pointer(path)}: no version in its history holds the value to put back ({journaled}); "
        "the history may no longer reach back that far, or RECONCILER_SECRETS__HMAC_KEY has changed since"
    )


def flat_strings(target: Target, desired: dict[str, Any], what: str) -> dict[str, Any]:
    """Desired values of a flat string-valued source (environment, KV keys): scalars become their string form
    (true → "true", 30 → "30"); nesting is refused, naming the key."""
    out: dict[str, Any] = {}
    for key, value in desired.items():
        if isinstance(value, (dict, list)):
            raise target.problem(f"spec.desired.{key}", f"{what} holds only plain values, not nested ones")
        out[key] = scalar_string(value)
    return out


def scalar_string(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def run_streams(
    streams: Sequence[threading.Thread],
    established: threading.Semaphore,
    ready: Callable[[], None],
    done: threading.Event,
    stop: threading.Event,
) -> None:
    """Start a watch's `streams` and wait: call `ready()` once every stream has released `established`, and
    return once `done` is set, by a stream that ended or here when `stop` is (every stream closes on `done`)."""
    for thread in streams:
        thread.start()
    waiting = len(streams)
    while not done.wait(0.02 if waiting else 0.2):
        while waiting and established.acquire(blocking=False):
            waiting -= 1
            if not waiting:
                ready()
        if stop.is_set():
            done.set()


def nest(flat: dict[str, Any], location: str) -> dict[str, Any]:
    """`{"db/pool": "10"}` as `{"db": {"pool": "10"}}` (keys of a store whose names nest with `/`: etcd, SSM
    parameters); a key that is both a value and a folder is an error."""
    document: dict[str, Any] = {}
    for name in sorted(flat):
        parts = [p for p in name.split("/") if p] or [name]
        node = document
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise DiscoveryError(f"{location}: {name} is below a key that holds a value")
            node = child
        if parts[-1] in node:
            raise DiscoveryError(f"{location}: {name} is both a value and a folder of keys")
        node[parts[-1]] = flat[name]
    return document


def flatten(document: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in document.items():
        name = f"{path}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, name + "/")
        else:
            yield name, value


def secret_fingerprint(document: Any, key: bytes) -> str:
    """The fingerprint of a document of secrets: a keyed hash first, so that what history keeps of it (the
    pass's fingerprint) cannot be used to test guesses of the values."""
    mac = hmac.new(key, canonical_json(document).encode(), hashlib.sha256).digest()
    return fingerprint.of_bytes(mac)
