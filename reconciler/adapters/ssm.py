"""The ssm adapter: AWS Systems Manager Parameter Store, the parameters under a path as a nested document.

source options:
  path: /production/payments/     # required; `/` in the rest of a name nests: db/pool -> {db: {pool: ...}}
  kms_key_id: alias/payments      # KMS key of the SecureString parameters it creates (default: aws/ssm)
  + the AWS connection options (adapters/aws.py)

Types are kept: a String parameter is a string, a StringList a list of strings, and a SecureString a string
that is always secret, whatever the manifest says: compared by keyed hash, never shown, logged or recorded.
A parameter reconciler creates is a StringList when its desired value is a list, a SecureString when its
path is secret in the manifest (`secrets`, a `${...}` reference), else a String; an existing one keeps its
type.

Parameter Store has no conditional write, so each parameter's version is the guard: the version read at
stage is checked again just before the put, and the put (with overwrite) must move it by exactly one;
otherwise another writer got in between, and the write is a conflict. A new parameter is put without
overwrite, so a second creator fails. When a fix of several parameters meets a conflict part way, those
it already wrote are put back (version-guarded again) before the conflict is reported.

Rollback of a secret (capabilities.secret_history): reconciler's journal keeps only a keyed hash of what it
replaced, so the value is found again in the parameter's own history (GetParameterHistory, decrypted; the
newest version whose keyed hash matches) and put back as a new version, with the guards of any write: live
must still hold what the run wrote (by hash), and the version must move by exactly one.

The fingerprint is every parameter's name, type, version and modification time: no value, so the bulk read
of a fleet (one recursive read per shared path, without decryption) needs no KMS access.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import aws
from reconciler.adapters.common import (
    Credentials,
    Options,
    SecretHistory,
    apply_changes,
    flatten,
    nest,
    recalled,
    scalar_string,
)
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target, reference_paths
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, to_pointer
from reconciler.domain.values import Redacted, strict_equal
from reconciler.errors import ApplyError, ConflictError, DiscoveryError, ReconcilerError, RollbackError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

OPTIONS = ("path", "kms_key_id", *aws.CONNECTION)
SECURE = "SecureString"
LIST = "StringList"


@dataclass(frozen=True)
class _Param:
    value: Any = field(repr=False)  # a string, or a list of strings (StringList)
    type: str
    version: int
    modified: str


@dataclass(frozen=True)
class _Where:
    options: Options
    path: str  # ends with "/"
    connection: aws.Connection
    kms_key_id: str | None

    @property
    def location(self) -> str:
        return f"ssm:{self.path}"


@dataclass(frozen=True)
class _Write:
    """One parameter to put (`text` not None) or delete, guarded by the version read at stage (None: new)."""

    name: str
    text: str | None = field(repr=False)
    type: str
    version: int | None
    old: _Param | None


class SsmAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, compare_and_swap=True, strings_only=True, secret_history=True)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._hmac_key = settings.hmac_key()  # of the journal's hashes: a secret's rollback finds its value by it
        self._credentials = Credentials(settings)
        self._clients = aws.Clients(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> SsmAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._where(target)

    def _where(self, target: Target) -> _Where:
        options = Options.of(target, "ssm", OPTIONS)
        path = options.text("path")
        if not path.startswith("/"):
            raise options.problem("path", "must start with / (a parameter hierarchy such as /production/payments/)")
        path = path.rstrip("/") + "/"
        connection = aws.connection(options, self._credentials, self._settings)
        return _Where(options, path, connection, options.text("kms_key_id", None))

    def _client(self, where: _Where) -> Any:
        return self._clients.get("ssm", where.connection, where.options)

    def _read(self, where: _Where, path: str, *, decrypt: bool, error: type[ReconcilerError]) -> dict[str, _Param]:
        """Every parameter below `path` (which ends with "/"), by full name."""
        found: dict[str, _Param] = {}
        with aws.errors(f"ssm:{path}", error, self._credentials):
            pages = self._client(where).get_paginator("get_parameters_by_path")
            for page in pages.paginate(Path=path.rstrip("/") or "/", Recursive=True, WithDecryption=decrypt):
                for p in page.get("Parameters", []):
                    text = str(p.get("Value", ""))
                    value: Any = text.split(",") if p["Type"] == LIST else text
                    modified = p.get("LastModifiedDate")
                    stamp = modified.isoformat() if modified is not None else ""
                    found[str(p["Name"])] = _Param(value, str(p["Type"]), int(p["Version"]), stamp)
        return found

    def _params(self, where: _Where, error: type[ReconcilerError]) -> dict[str, _Param]:
        """The target's parameters, decrypted, by name relative to its path."""
        params = self._read(where, where.path, decrypt=True, error=error)
        return {name[len(where.path) :]: p for name, p in params.items()}

    # -- ports ------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        where = self._where(target)
        params = self._params(where, DiscoveryError)
        document = nest({name: p.value for name, p in params.items()}, where.location)
        secrets = tuple(PathGlob.parse(_pointer(name)) for name, p in params.items() if p.type == SECURE)
        return Observed(_fingerprint(params), where.location, document=document, secrets=secrets)

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        """One recursive read (without decryption) per connection and top-level path segment, of the deepest
        path the targets there share, instead of one read per target."""
        groups: dict[tuple[aws.Connection, str], list[tuple[str, _Where]]] = {}
        for name, target in targets.items():
            try:
                where = self._where(target)
            except ReconcilerError:
                continue  # its own pass reports the bad option
            top = where.path.split("/")[1]
            groups.setdefault((where.connection, top), []).append((name, where))
        seen: dict[str, str] = {}
        for members in groups.values():
            shared = os.path.commonprefix([w.path for _, w in members])  # noqa: RUF071 - names, not file paths
            shared = shared[: shared.rindex("/") + 1]
            try:
                params = self._read(members[0][1], shared, decrypt=False, error=DiscoveryError)
            except ReconcilerError:
                continue  # not answering, or not allowed that wide: each target's own pass reads it
            for name, where in members:
                mine = {n[len(where.path) :]: p for n, p in params.items() if n.startswith(where.path)}
                seen[name] = _fingerprint(mine)
        return seen

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        def render(path: str, node: Any) -> Any:
            if isinstance(node, dict):
                return {k: render(f"{path}.{k}", v) for k, v in node.items()}
            if isinstance(node, list):
                items = [scalar_string(v) for v in node]
                if not items or not all(isinstance(v, str) and v and "," not in v for v in items):
                    raise target.problem(path, "a StringList holds one or more plain values without commas")
                return items
            if node is None or not isinstance(scalar_string(node), str):
                raise target.problem(path, "a parameter holds a string or a list of strings, not null")
            return scalar_string(node)

        return {k: render(f"spec.desired.{k}", v) for k, v in desired.items()}

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        where = self._where(target)
        params = self._params(where, ApplyError)
        current = nest({name: p.value for name, p in params.items()}, where.location)
        history = SecretHistory(self._hmac_key, lambda path, journaled: self._recall(where, params, path, journaled))
        updated, results, messages = apply_changes(
            current, changes, target.list_keys(), dry_run=dry_run, where=where.location, secrets=history
        )
        if ChangeResult.WRITE not in results:
            return Staged(target.name, results, messages, dry_run, None)
        before, after = dict(flatten(current)), dict(flatten(updated))
        secret = [*target.spec.secrets, *(PathGlob.parse(to_pointer(p)) for p in reference_paths(target.spec.desired))]
        writes = []
        for name in sorted({*before, *after}):
            if name in before and name in after and strict_equal(before[name], after[name]):
                continue
            old = params.get(name)
            full = where.path + name
            if name not in after:
                writes.append(_Write(full, None, old.type if old else "", old.version if old else None, old))
                continue
            text, kind = _text(where, full, after[name])
            if old is not None and old.type == SECURE:
                if kind == LIST:
                    raise ApplyError(f"{where.location}: {full} is a SecureString and cannot hold a list")
                kind = SECURE
            elif old is None and kind != LIST and any(g.matches(_path(name)) for g in secret):
                kind = SECURE
            writes.append(_Write(full, text, kind, old.version if old else None, old))
        return Staged(target.name, results, messages, dry_run, (where, writes))

    def commit(self, staged: Staged) -> None:
        if staged.dry_run or staged.handle is None:
            return
        where, writes = staged.handle
        done: list[_Write] = []
        try:
            for write in writes:
                self._write(where, write)
                done.append(write)
        except ConflictError as exc:
            undone = self._put_back(where, done)
            raise ConflictError(f"{exc}{undone}") from None

    def discard(self, staged: Staged) -> None:
        """Nothing is written before commit."""

    def _recall(self, where: _Where, params: Mapping[str, _Param], path: KeyPath, journaled: Redacted) -> Any:
        """A parameter's value from its history (decrypted), newest version first, whose keyed hash is `journaled`."""
        name = "/".join(str(p) for p in path)
        if name not in params:
            raise RollbackError(
                f"{where.location}: {to_pointer(path)}: there is no such parameter now, and Parameter Store keeps "
                "no history of a deleted one: its value cannot be put back"
            )
        found: list[tuple[int, Any]] = []
        with aws.errors(f"ssm:{where.path}{name}", ApplyError, self._credentials):
            pages = self._client(where).get_paginator("get_parameter_history")
            for page in pages.paginate(Name=where.path + name, WithDecryption=True):
                for p in page.get("Parameters", []):
                    text = str(p.get("Value", ""))
                    found.append((int(p["Version"]), text.split(",") if p["Type"] == LIST else text))
        newest_first = [value for _, value in sorted(found, key=lambda v: v[0], reverse=True)]
        return recalled(where.location, path, journaled, self._hmac_key, newest_first)

    # -- writes -----------------------------------------------------------------------------------------

    def _version(self, where: _Where, name: str) -> int | None:
        """A parameter's version now (None: there is none), read without decryption."""
        client = self._client(where)
        with aws.errors(f"ssm:{name}", ApplyError, self._credentials):
            answer = client.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])
        found = [p for p in answer.get("Parameters", []) if p.get("Name") == name]
        return int(found[0]["Version"]) if found else None

    def _write(self, where: _Where, write: _Write) -> None:
        """Put or delete one parameter, guarded by its version: as read at stage just before, and moved by
        exactly one by the put."""
        now = self._version(where, write.name)
        if now != write.version:
            was = "absent" if write.version is None else f"at version {write.version}"
            raise ConflictError(f"ssm:{write.name}: another writer changed it since it was read ({was}, now {now})")
        client = self._client(where)
        hide = [write.text or "", *(_texts(write.old))]
        with aws.errors(f"ssm:{write.name}", ApplyError, self._credentials, hide):
            if write.text is None:
                client.delete_parameter(Name=write.name)
                return
            extra = {"KeyId": where.kms_key_id} if write.type == SECURE and where.kms_key_id else {}
            answer = client.put_parameter(
                Name=write.name, Value=write.text, Type=write.type, Overwrite=write.version is not None, **extra
            )
        moved = int(answer["Version"]) - (write.version or 0)
        if moved != 1:
            raise ConflictError(
                f"ssm:{write.name}: the put moved the version from {write.version or 0} to {answer['Version']}: "
                "another writer wrote in between"
            )

    def _put_back(self, where: _Where, done: list[_Write]) -> str:
        """Undo the writes of a commit that met a conflict, newest first, each guarded by the version it made;
        a note for the conflict's message."""
        if not done:
            return ""
        failed = []
        for write in reversed(done):
            made = None if write.text is None else (write.version or 0) + 1  # the version this commit made
            old = write.old
            back = _Write(write.name, _texts(old)[0] if old else None, old.type if old else "", made, None)
            try:
                self._write(where, back)
            except ReconcilerError:
                failed.append(write.name)
        if failed:
            return f"; {len(done)} parameters already written, not put back: {', '.join(failed)}"
        return f"; the {len(done)} parameters already written were put back"


def _fingerprint(params: Mapping[str, _Param]) -> str:
    data = json.dumps(sorted([name, p.type, p.version, p.modified] for name, p in params.items()))
    return fingerprint.of_bytes(data.encode())


def _path(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.split("/") if p)


def _pointer(name: str) -> str:
    return to_pointer(_path(name))


def _text(where: _Where, name: str, value: Any) -> tuple[str, str]:
    """A desired value as the parameter's text and type."""
    if isinstance(value, list):
        if value and all(isinstance(v, str) and v and "," not in v for v in value):
            return ",".join(value), LIST
    elif isinstance(value, str) and value:
        return value, "String"
    if value is MISSING:
        raise ApplyError(f"{where.location}: {name}: nothing to write")
    what = "an empty value" if value in ("", [], {}) else f"a {type(value).__name__}"
    raise ApplyError(f"{where.location}: {name}: a parameter cannot hold {what}")


def _texts(param: _Param | None) -> list[str]:
    if param is None:
        return []
    return [",".join(param.value) if isinstance(param.value, list) else str(param.value)]
