"""The aws-secrets adapter: one AWS Secrets Manager secret, every value of it secret.

source options:
  secret_id: prod/payments/db     # required: the secret's name or ARN
  format: json | string           # json (default): the secret is a JSON object, its keys the document;
                                  # string: the document is {<key>: the secret's text}
  key: password                   # string format only: the document's one key (default "value")
  + the AWS connection options (adapters/aws.py)

Every value is compared by keyed hash and never shown, logged or recorded, whatever the manifest says.
A write puts a new version (AWSCURRENT) with a client request token derived from the version it replaces and
the new content (a keyed hash of it), so a repeated request is the same version, never a second one.
Secrets Manager has no conditional write: the current version is checked just before the put, and after it
the version it displaced (AWSPREVIOUS) must be the one that was read; when another writer got in between,
AWSCURRENT is moved back to that writer's version and the write is a conflict.

Rollback of a secret (capabilities.secret_history): reconciler's journal keeps only a keyed hash of what it
replaced, so the value is found again in the secret's versions (ListSecretVersionIds with the deprecated ones,
GetSecretValue by VersionId; AWSPREVIOUS first, then newest first) and put back, with the guards of any write:
live must still hold what the run wrote (by hash), and the current version must be the one read. When the
restored secret is exactly an earlier version (the usual rollback of a whole run), AWSCURRENT is moved back
to that version (rollback by version stage: its text byte for byte, no new version), moved only from the
version that was read; otherwise the restored secret is put as a new version.

The fingerprint is the secret's current version id (no value), so the fleet's unchanged check is one
paginated listing of the account's secrets, without reading any of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import aws
from reconciler.adapters.common import Credentials, Options, SecretHistory, apply_changes, flat_strings, recalled
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING, KeyPath, PathGlob, get_in
from reconciler.domain.values import Redacted, strict_equal
from reconciler.errors import ApplyError, ConflictError, DiscoveryError, ReconcilerError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

OPTIONS = ("secret_id", "format", "key", *aws.CONNECTION)
CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"
EVERYTHING = (PathGlob.parse("/**"),)


@dataclass(frozen=True)
class _Where:
    options: Options
    secret_id: str
    json_format: bool
    key: str
    connection: aws.Connection

    @property
    def location(self) -> str:
        return f"aws-secrets:{self.secret_id}"


@dataclass(frozen=True)
class _Put:
    """What commit writes, guarded by `version` (current at stage): `text` as a new version, idempotent by
    `token`; or, when the restored secret is an earlier version, AWSCURRENT moved back to `back_to`."""

    where: _Where
    version: str
    text: str = field(repr=False)
    token: str
    back_to: str | None = None


class AwsSecretsAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, compare_and_swap=True, secret_history=True)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._hmac_key = settings.hmac_key()
        self._credentials = Credentials(settings)
        self._clients = aws.Clients(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsSecretsAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._where(target)

    def _where(self, target: Target) -> _Where:
        options = Options.of(target, "aws-secrets", OPTIONS)
        secret_id = options.text("secret_id")
        json_format = options.text("format", "json", choices=("json", "string")) == "json"
        key = options.text("key", None)
        if key is not None and json_format:
            raise options.problem("key", "names the document's key of a `format: string` secret only")
        connection = aws.connection(options, self._credentials, self._settings)
        return _Where(options, secret_id, json_format, key or "value", connection)

    def _client(self, where: _Where) -> Any:
        return self._clients.get("secretsmanager", where.connection, where.options)

    def _read(
        self, where: _Where, error: type[ReconcilerError], version: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """The secret's document and the id of its version: the current one, or `version`."""
        # AWSCURRENT named explicitly: what AWS reads by default, and what emulators that keep a default
        # version of their own (moto) then read too, after a stage was moved.
        which = {"VersionId": version} if version is not None else {"VersionStage": CURRENT}
        with aws.errors(where.location, error, self._credentials):
            answer = self._client(where).get_secret_value(SecretId=where.secret_id, **which)
        return _document(where, answer.get("SecretString"), error), str(answer["VersionId"])

    def _stages(self, where: _Where, error: type[ReconcilerError]) -> dict[str, str]:
        """Stage → version id, read without reading the value."""
        with aws.errors(where.location, error, self._credentials):
            answer = self._client(where).describe_secret(SecretId=where.secret_id)
        return {stage: vid for vid, stages in answer.get("VersionIdsToStages", {}).items() for stage in stages}

    # -- ports ------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        where = self._where(target)
        document, version = self._read(where, DiscoveryError)
        return Observed(_fingerprint(where, version), where.location, document=document, secrets=EVERYTHING)

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        """One paginated listing of the secrets per connection: each one's current version, no values."""
        groups: dict[aws.Connection, list[tuple[str, _Where]]] = {}
        for name, target in targets.items():
            try:
                where = self._where(target)
            except ReconcilerError:
                continue
            groups.setdefault(where.connection, []).append((name, where))
        seen: dict[str, str] = {}
        for members in groups.values():
            current: dict[str, str] = {}
            try:
                with aws.errors("aws-secrets", DiscoveryError, self._credentials):
                    for page in self._client(members[0][1]).get_paginator("list_secrets").paginate():
                        for entry in page.get("SecretList", []):
                            for vid, stages in entry.get("SecretVersionsToStages", {}).items():
                                if CURRENT in stages:
                                    current[str(entry.get("Name"))] = current[str(entry.get("ARN"))] = str(vid)
            except ReconcilerError:
                continue  # each target's own pass reads it, and reports why not
            for name, where in members:
                if where.secret_id in current:
                    seen[name] = _fingerprint(where, current[where.secret_id])
        return seen

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        where = self._where(target)
        if where.json_format:
            return desired
        unknown = [k for k in desired if k != where.key]
        if unknown:
            raise target.problem(f"spec.desired.{unknown[0]}", f"a string secret's document has one key, {where.key}")
        return flat_strings(target, desired, "a string secret")

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        where = self._where(target)
        current, version = self._read(where, ApplyError)
        earlier: dict[str, dict[str, Any]] = {}  # version id -> document, of the versions a rollback read
        list_keys = target.list_keys()

        def recall(path: KeyPath, journaled: Redacted) -> Any:
            values = (get_in(d, path, list_keys) for d in self._earlier(where, earlier))
            return recalled(where.location, path, journaled, self._hmac_key, values)

        updated, results, messages = apply_changes(
            current,
            changes,
            list_keys,
            dry_run=dry_run,
            where=where.location,
            secrets=SecretHistory(self._hmac_key, recall),
        )
        if ChangeResult.WRITE not in results:
            return Staged(target.name, results, messages, dry_run, None)
        back_to = next((vid for vid, document in earlier.items() if strict_equal(document, updated)), None)
        if where.json_format:
            text = json.dumps(updated, ensure_ascii=False)
        else:
            value = updated.get(where.key, MISSING)
            if not isinstance(value, str):
                raise ApplyError(f"{where.location}: a string secret holds one string at {where.key}")
            text = value
        mac = hmac.new(self._hmac_key, f"{where.secret_id}\n{version}\n{text}".encode(), hashlib.sha256).digest()
        token = str(uuid.UUID(bytes=mac[:16]))
        return Staged(target.name, results, messages, dry_run, _Put(where, version, text, token, back_to))

    def commit(self, staged: Staged) -> None:
        if staged.dry_run or staged.handle is None:
            return
        put: _Put = staged.handle
        where, version, text, token = put.where, put.version, put.text, put.token
        before = self._stages(where, ApplyError).get(CURRENT)
        if before != version:
            raise ConflictError(f"{where.location}: another writer put a new version since it was read")
        if put.back_to is not None:
            # Secrets Manager moves a stage only away from the version named, which is the guard here.
            self._move_current(where, put.back_to, version, conflicts=("InvalidParameterException",))
            return
        with aws.errors(where.location, ApplyError, self._credentials, hide=[text]):
            answer = self._client(where).put_secret_value(
                SecretId=where.secret_id, SecretString=text, ClientRequestToken=token
            )
        made = str(answer.get("VersionId"))
        displaced = self._stages(where, ApplyError).get(PREVIOUS)
        if made == token and displaced != version and displaced is not None:
            # Another writer's version came in between: it is current again, and this write a conflict.
            self._move_current(where, displaced, made)
            raise ConflictError(
                f"{where.location}: another writer put a version between the check and this write; "
                "its version was made current again"
            )

    def discard(self, staged: Staged) -> None:
        """Nothing is written before commit."""

    def _earlier(self, where: _Where, seen: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The documents of the secret's versions other than the current one, AWSPREVIOUS first, then newest
        first (those that are no JSON object left out); read once per stage, into `seen`."""
        ranked: list[tuple[bool, float, str]] = []
        with aws.errors(where.location, ApplyError, self._credentials):
            more: dict[str, str] = {}
            while True:
                answer = self._client(where).list_secret_version_ids(
                    SecretId=where.secret_id, IncludeDeprecated=True, **more
                )
                for entry in answer.get("Versions", []):
                    stages, created = entry.get("VersionStages", []), entry.get("CreatedDate")
                    if CURRENT not in stages:
                        when = created.timestamp() if created is not None else 0.0
                        ranked.append((PREVIOUS not in stages, -when, str(entry["VersionId"])))
                if not answer.get("NextToken"):
                    break
                more = {"NextToken": str(answer["NextToken"])}
        for _, _, vid in sorted(ranked):
            if vid not in seen:
                with aws.errors(where.location, ApplyError, self._credentials):
                    answer = self._client(where).get_secret_value(SecretId=where.secret_id, VersionId=vid)
                try:
                    seen[vid] = _document(where, answer.get("SecretString"), ApplyError)
                except ApplyError:
                    continue  # binary, or not a JSON object: holds no value of this document
            yield seen[vid]

    def _move_current(self, where: _Where, to: str, away_from: str, conflicts: Sequence[str] = ()) -> None:
        with aws.errors(where.location, ApplyError, self._credentials, conflicts=conflicts):
            self._client(where).update_secret_version_stage(
                SecretId=where.secret_id, VersionStage=CURRENT, MoveToVersionId=to, RemoveFromVersionId=away_from
            )


def _document(where: _Where, text: str | None, error: type[ReconcilerError]) -> dict[str, Any]:
    """A version's text as the target's document."""
    if text is None:
        raise error(f"{where.location}: a binary secret; only string and JSON secrets are compared")
    if not where.json_format:
        return {where.key: text}
    try:
        document = json.loads(text)
    except ValueError:
        document = None  # the parser's message may quote the secret: it is not passed on
    if not isinstance(document, dict):
        raise error(f"{where.location}: the secret is not a JSON object (for a plain string, set format: string)")
    return document


def _fingerprint(where: _Where, version: str) -> str:
    return fingerprint.of_bytes(json.dumps([where.secret_id, version, where.json_format, where.key]).encode())
