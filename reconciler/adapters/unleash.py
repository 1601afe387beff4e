"""The Unleash adapter: a project's feature flags as one environment sees them, read and written through the
admin API.

source options:
  url: https://unleash.internal         # required: the server (with its BASE_URI_PATH, if any)
  environment: production               # required: the Unleash environment this target is
  project: default                      # default: default
  token: unleash-admin                  # a credential name: an admin API token or a personal access token
  write: true                           # default false: read-only, drift is escalated
  poll_interval: 5s                     # how often a watch asks whether anything changed (default 5s)

The document is {flag: {enabled, strategies}} (normalised: unleash_model.py). Reads use the admin API, which
is current the moment a write returns (the client API is cached and lags behind); one request for the
project's environments, one for the flag list and one per flag, on one connection.

Writes: the admin API has no transactions and no preconditions, so a commit reads each flag it touches again
just before writing and refuses (a conflict, nothing written) when it no longer holds what was staged. Then,
per flag: create it when it is new, update strategies in place (PUT by id), add the extra ones, delete the
surplus, and switch the environment on or off last (deleting an enabled environment's last strategy switches
it off). A flag cannot be removed from one environment only (flags belong to the project): that is refused.

Watching polls the client API's feature list for the target's environment with `If-None-Match`: its ETag is
Unleash's configuration revision, so an unchanged environment costs a 304 and no body.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.adapters import unleash_model as model
from reconciler.adapters.common import Credentials, Options, apply_changes
from reconciler.adapters.unleash_api import UnleashApi, quote
from reconciler.domain import durations, fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING
from reconciler.errors import ApplyError, ConflictError, DiscoveryError, ReconcilerError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

OPTIONS = ("url", "environment", "project", "token", "write", "poll_interval")
READ_ONLY = "the source has no `write: true` (read-only)"


@dataclass(frozen=True)
class _Where:
    url: str
    project: str
    environment: str
    token: str | None
    write: bool
    poll_s: float

    @property
    def location(self) -> str:
        return f"{self.url} project {self.project} environment {self.environment}"

    @property
    def features(self) -> str:
        return f"/api/admin/projects/{quote(self.project)}/features"

    def strategies(self, flag: str) -> str:
        return f"{self.features}/{quote(flag)}/environments/{quote(self.environment)}/strategies"


@dataclass(frozen=True)
class _Live:
    """One flag in the target's environment as the admin API has it: compared form, and strategy ids."""

    state: dict[str, Any]
    ids: list[str]


class UnleashAdapter:
    known_options = OPTIONS
    address_option = "environment"  # `reconciler diff unleash:production,url=...,token=...`
    capabilities = Capabilities(read=True, write=True, watch=True)

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._credentials = Credentials(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> UnleashAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._where(target)

    def _where(self, target: Target) -> _Where:
        options = Options.of(target, "unleash", OPTIONS)
        url = options.text("url").rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise options.problem("url", "must be an http:// or https:// URL")
        if "@" in parts.netloc:
            raise options.problem("url", "holds credentials: name a credential with `token` instead")
        try:
            poll_s = durations.seconds(options.values.get("poll_interval", "5s"), min_s=0.1, max_s=3600)
        except ValueError as exc:
            raise options.problem("poll_interval", str(exc)) from None
        return _Where(
            url,
            options.text("project", "default"),
            options.text("environment"),
            self._credentials.get(options, "token"),
            options.flag("write", False),
            poll_s,
        )

    def _api(self, where: _Where) -> UnleashApi:
        return UnleashApi(where.url, where.token, self._timeout, self._credentials.scrub)

    # -- reading ----------------------------------------------------------------------------------------

    def _read(self, api: UnleashApi, where: _Where, error: type[ReconcilerError]) -> dict[str, _Live]:
        envs = api.call("GET", f"/api/admin/environments/project/{quote(where.project)}", error).data
        visible = [e.get("name") for e in (envs or {}).get("environments", []) if e.get("visible", True)]
        if where.environment not in visible:
            shown = ", ".join(str(v) for v in visible) or "none: is the project there?"
            raise error(f"{where.location}: no such environment in the project (its environments: {shown})")
        listed = api.call("GET", where.features, error).data or {}
        names = sorted(str(f["name"]) for f in listed.get("features", []) if isinstance(f, dict) and "name" in f)
        return {name: self._flag(api, where, name, error) for name in names}

    def _flag(self, api: UnleashApi, where: _Where, name: str, error: type[ReconcilerError]) -> _Live:
        """One flag in the target's environment; raises `error` when the flag is not there (any more)."""
        missing = f"project {where.project} has no flag {name!r}"
        feature = api.call("GET", f"{where.features}/{quote(name)}", error, missing=missing).data or {}
        for env in feature.get("environments", []):
            if isinstance(env, dict) and env.get("name") == where.environment:
                raw = sorted(env.get("strategies") or [], key=lambda s: s.get("sortOrder", 0))
                try:
                    strategies = [
                        model.strategy(s, name, f"{name}.strategies[{i}]", strict=False) for i, s in enumerate(raw)
                    ]
                except model.ShapeError as exc:
                    raise error(f"{where.location}: flag {exc}") from None
                state = model.flag_state(bool(env.get("enabled")), strategies)
                return _Live(state, [str(s.get("id")) for s in raw])
        raise error(f"{where.location}: flag {name!r} has no environment {where.environment!r}")

    def discover(self, target: Target) -> Observed:
        where = self._where(target)
        with self._api(where) as api:
            flags = self._read(api, where, DiscoveryError)
        document = {name: live.state for name, live in flags.items()}
        unwritable = {} if where.write else {"": READ_ONLY}
        data = json.dumps(document, sort_keys=True).encode()
        return Observed(fingerprint.of_bytes(data), where.location, document=document, unwritable=unwritable)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, flag in desired.items():
            try:
                out[name] = model.desired_flag(flag, name, name)
            except model.ShapeError as exc:
                raise target.problem(f"spec.desired.{exc.field}", exc.message) from None
        return out

    # -- writing ----------------------------------------------------------------------------------------

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        where = self._where(target)
        if not where.write:
            raise ApplyError(f"{where.location}: {READ_ONLY}")
        with self._api(where) as api:
            flags = self._read(api, where, ApplyError)
        current = {name: live.state for name, live in flags.items()}
        updated, results, messages = apply_changes(current, changes, {}, dry_run=dry_run, where=where.location)
        touched = sorted(
            {c.path[0] for c, r in zip(changes, results, strict=True) if r is ChangeResult.WRITE and c.path}
        )
        if any(not c.path for c in changes):
            raise ApplyError(f"{where.location}: the whole set of flags cannot be replaced at once")
        plan: list[tuple[str, _Live | None, dict[str, Any]]] = []
        for name in touched:
            after = updated.get(name, MISSING)
            if after is MISSING:
                raise ApplyError(
                    f"{where.location}: flag {name!r} cannot be removed from one environment (flags belong to the "
                    "project): archive it in Unleash, or stop managing it here"
                )
            if after.get("enabled") and not after.get("strategies"):
                raise ApplyError(
                    f"{where.location}: flag {name!r} would be enabled without a strategy; name its strategies"
                )
            plan.append((name, flags.get(name), after))
        return Staged(target.name, results, messages, dry_run, (where, plan))

    def commit(self, staged: Staged) -> None:
        if staged.dry_run or staged.handle is None or not staged.writes:
            return
        where, plan = staged.handle
        with self._api(where) as api:
            for name, before, _ in plan:  # all checked before anything is written
                self._check_unchanged(api, where, name, before)
            for name, before, after in plan:
                self._write_flag(api, where, name, before, after)

    def _check_unchanged(self, api: UnleashApi, where: _Where, name: str, before: _Live | None) -> None:
        if before is None:
            listed = api.call("GET", where.features, ApplyError).data or {}
            if any(isinstance(f, dict) and f.get("name") == name for f in listed.get("features", [])):
                raise ConflictError(f"{where.location}: flag {name!r} was created by another writer since staging")
            return
        try:
            now = self._flag(api, where, name, ConflictError)
        except ConflictError as exc:
            raise ConflictError(f"{exc} (changed by another writer since staging)") from None
        if now != before:
            raise ConflictError(f"{where.location}: flag {name!r} was changed by another writer since staging")

    def _write_flag(
        self, api: UnleashApi, where: _Where, name: str, before: _Live | None, after: dict[str, Any]
    ) -> None:
        if before is None:
            api.call("POST", where.features, ApplyError, body={"name": name})
            before = _Live(model.flag_state(False, []), [])
        path = where.strategies(name)
        old, new = before.state.get("strategies", []), after.get("strategies", [])
        for index, wanted in enumerate(new):
            if index >= len(old):
                api.call("POST", path, ApplyError, body=model.body(wanted))
            elif old[index] != wanted:
                api.call("PUT", f"{path}/{quote(before.ids[index])}", ApplyError, body=model.body(wanted))
        for strategy_id in before.ids[len(new) :]:
            api.call("DELETE", f"{path}/{quote(strategy_id)}", ApplyError)
        enabled = bool(after.get("enabled", before.state["enabled"]))
        env = f"{where.features}/{quote(name)}/environments/{quote(where.environment)}"
        api.call("POST", f"{env}/{'on' if enabled else 'off'}", ApplyError)

    def discard(self, staged: Staged) -> None:
        """Nothing is written before commit."""

    # -- watching ---------------------------------------------------------------------------------------

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """Poll each (server, token, project, environment) once per its targets' shortest poll_interval."""
        groups: dict[tuple[str, str | None, str, str], tuple[_Where, list[str]]] = {}
        for target in targets:
            where = self._where(target)
            key = (where.url, where.token, where.project, where.environment)
            first, names = groups.setdefault(key, (where, []))
            names.append(target.name)
            if where.poll_s < first.poll_s:
                groups[key] = (where, names)
        etags = {key: self._revision(where, None) for key, (where, _) in groups.items()}
        ready()
        due = {key: time.monotonic() + where.poll_s for key, (where, _) in groups.items()}
        while not stop.is_set():
            key = min(due, key=due.__getitem__)
            if stop.wait(max(0.0, due[key] - time.monotonic())):
                return
            where, names = groups[key]
            etag = self._revision(where, etags[key])
            if etag != etags[key]:
                etags[key] = etag
                for name in names:
                    changed(name)
            due[key] = time.monotonic() + where.poll_s

    def _revision(self, where: _Where, etag: str | None) -> str | None:
        """The client API's ETag for the target's environment (Unleash's configuration revision)."""
        query = urllib.parse.urlencode({"project": where.project, "environment": where.environment})
        with self._api(where) as api:
            answer = api.call("GET", f"/api/client/features?{query}", DiscoveryError, etag=etag)
        return etag if answer.status == 304 else answer.etag
