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

The fingerprint is the secret's current version id (no value), so the fleet's unchanged check is one
paginated listing of the account's secrets, without reading any of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.adapters import aws
from reconciler.adapters.common import Credentials, Options, apply_changes, flat_strings
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING, PathGlob
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


class AwsSecretsAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, compare_and_swap=True)

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

    def _read(self, where: _Where, error: type[ReconcilerError]) -> tuple[dict[str, Any], str]:
        """The secret's document and the id of its current version."""
        with aws.errors(where.location, error, self._credentials):
            # AWSCURRENT named explicitly: what AWS reads by default, and what emulators that keep a default
            # version of their own (moto) then read too, after a stage was moved.
            answer = self._client(where).get_secret_value(SecretId=where.secret_id, VersionStage=CURRENT)
        text = answer.get("SecretString")
        if text is None:
            raise error(f"{where.location}: a binary secret; only string and JSON secrets are compared")
        if not where.json_format:
            return {where.key: text}, str(answer["VersionId"])
        try:
            document = json.loads(text)
        except ValueError:
            document = None  # the parser's message may quote the secret: it is not passed on
        if not isinstance(document, dict):
            raise error(f"{where.location}: the secret is not a JSON object (for a plain string, set format: string)")
        return document, str(answer["VersionId"])

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
        updated, results, messages = apply_changes(
            current, changes, target.list_keys(), dry_run=dry_run, where=where.location
        )
        if ChangeResult.WRITE not in results:
            return Staged(target.name, results, messages, dry_run, None)
        if where.json_format:
            text = json.dumps(updated, ensure_ascii=False)
        else:
            value = updated.get(where.key, MISSING)
            if not isinstance(value, str):
                raise ApplyError(f"{where.location}: a string secret holds one string at {where.key}")
            text = value
        mac = hmac.new(self._hmac_key, f"{where.secret_id}\n{version}\n{text}".encode(), hashlib.sha256).digest()
        token = str(uuid.UUID(bytes=mac[:16]))
        return Staged(target.name, results, messages, dry_run, (where, version, text, token))

    def commit(self, staged: Staged) -> None:
        if staged.dry_run or staged.handle is None:
            return
        where, version, text, token = staged.handle
        before = self._stages(where, ApplyError).get(CURRENT)
        if before != version:
            raise ConflictError(f"{where.location}: another writer put a new version since it was read")
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

    def _move_current(self, where: _Where, to: str, away_from: str) -> None:
        with aws.errors(where.location, ApplyError, self._credentials):
            self._client(where).update_secret_version_stage(
                SecretId=where.secret_id, VersionStage=CURRENT, MoveToVersionId=to, RemoveFromVersionId=away_from
            )


def _fingerprint(where: _Where, version: str) -> str:
    return fingerprint.of_bytes(json.dumps([where.secret_id, version, where.json_format, where.key]).encode())
