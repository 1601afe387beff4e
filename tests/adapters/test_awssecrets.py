"""The aws-secrets adapter with the real boto3 client, against moto's server mode standing in for Secrets
Manager."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from reconciler.adapters.awssecrets import AwsSecretsAdapter
from reconciler.domain.paths import MISSING, PathGlob
from reconciler.errors import ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from tests.adapters.helpers import REGION, aws_settings, target

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]


@pytest.fixture
def sm(moto_url: str) -> Any:
    return boto3.client("secretsmanager", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def adapter(moto_url: str) -> AwsSecretsAdapter:
    return AwsSecretsAdapter(aws_settings(moto_url))


@pytest.fixture
def name(sm: Any) -> str:
    name = f"prod/payments-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=name, SecretString=json.dumps({"user": "app", "password": "old-pass", "port": 5432}))
    return name


def current(sm: Any, name: str) -> Any:
    return json.loads(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"])


def test_a_json_secret_is_a_document_of_secrets(adapter: AwsSecretsAdapter, name: str, tmp_path: Path) -> None:
    """The JSON object's keys are the document, JSON types kept, and every path is declared secret."""
    observed = adapter.discover(target(tmp_path, {"adapter": "aws-secrets", "secret_id": name}))
    assert observed.document == {"user": "app", "password": "old-pass", "port": 5432}
    assert observed.secrets == (PathGlob.parse("/**"),)
    assert observed.without_secrets() == {}


def test_a_string_secret_under_its_key(adapter: AwsSecretsAdapter, sm: Any, tmp_path: Path) -> None:
    """format: string puts the text under `key`; desired values are rendered to strings, other keys refused."""
    name = f"token-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=name, SecretString="tok-123")
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name, "format": "string", "key": "token"})
    assert adapter.discover(t).document == {"token": "tok-123"}
    assert adapter.normalize(t, {"token": 42}) == {"token": "42"}
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.other: a string secret's document has one key"):
        adapter.normalize(t, {"other": "x"})
    adapter.commit(adapter.stage(t, [Change(("token",), "tok-123", "tok-456")], dry_run=False))
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "tok-456"


def test_a_write_is_a_new_version_with_an_idempotency_token(
    adapter: AwsSecretsAdapter, sm: Any, name: str, tmp_path: Path
) -> None:
    """The fix becomes AWSCURRENT, the version it replaced AWSPREVIOUS; the same staged write sent again is
    the same version, not another."""
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    before = adapter.discover(t).fingerprint
    changes = [Change(("password",), "old-pass", "new-pass"), Change(("port",), 5432, MISSING)]
    staged = adapter.stage(t, changes, dry_run=False)
    assert staged.results == [ChangeResult.WRITE, ChangeResult.WRITE]
    adapter.commit(staged)
    assert current(sm, name) == {"user": "app", "password": "new-pass"}
    versions = sm.list_secret_version_ids(SecretId=name)["Versions"]
    assert sorted(s for v in versions for s in v["VersionStages"]) == ["AWSCURRENT", "AWSPREVIOUS"]
    token = staged.handle.token
    again = sm.put_secret_value(SecretId=name, SecretString=staged.handle.text, ClientRequestToken=token)
    assert again["VersionId"] == token and len(sm.list_secret_version_ids(SecretId=name)["Versions"]) == 2
    assert adapter.discover(t).fingerprint != before


def test_dry_run_noop_and_stale_before(adapter: AwsSecretsAdapter, sm: Any, name: str, tmp_path: Path) -> None:
    """A dry run writes no version; live already holding after is a noop; holding neither a conflict."""
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    adapter.commit(adapter.stage(t, [Change(("password",), "old-pass", "x")], dry_run=True))
    assert len(sm.list_secret_version_ids(SecretId=name)["Versions"]) == 1
    assert adapter.stage(t, [Change(("user",), "x", "app")], dry_run=False).results == [ChangeResult.NOOP]
    assert adapter.stage(t, [Change(("user",), "x", "y")], dry_run=False).results == [ChangeResult.CONFLICT]


def test_another_version_after_stage_is_a_conflict(
    adapter: AwsSecretsAdapter, sm: Any, name: str, tmp_path: Path
) -> None:
    """A version put by someone else between stage and commit: nothing is written, theirs stays current."""
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    staged = adapter.stage(t, [Change(("password",), "old-pass", "mine")], dry_run=False)
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({"password": "theirs"}))
    with pytest.raises(ConflictError, match=r"another writer put a new version since it was read"):
        adapter.commit(staged)
    assert current(sm, name) == {"password": "theirs"}


def test_bulk_fingerprints_equal_each_read_without_reading_values(
    adapter: AwsSecretsAdapter, sm: Any, name: str, tmp_path: Path
) -> None:
    """One listing gives every target's fingerprint, by name or ARN, equal to its own read's."""
    arn = sm.describe_secret(SecretId=name)["ARN"]
    by_name = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    by_arn = target(tmp_path, {"adapter": "aws-secrets", "secret_id": arn})
    missing = target(tmp_path, {"adapter": "aws-secrets", "secret_id": "no-such-secret"})
    targets = {t.name: t for t in (by_name, by_arn, missing)}
    assert adapter.fingerprints(targets) == {t.name: adapter.discover(t).fingerprint for t in (by_name, by_arn)}
    with pytest.raises(DiscoveryError, match=r"aws-secrets:no-such-secret: not found"):
        adapter.discover(missing)


def test_what_is_not_compared_is_refused_without_quoting_it(
    adapter: AwsSecretsAdapter, sm: Any, tmp_path: Path
) -> None:
    """A secret that is not a JSON object, or binary, fails its read; the error never holds the value."""
    text = f"not-json-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=text, SecretString="plain secret text")
    with pytest.raises(DiscoveryError, match=r"not a JSON object \(for a plain string, set format: string\)") as exc:
        adapter.discover(target(tmp_path, {"adapter": "aws-secrets", "secret_id": text}))
    assert "plain secret text" not in str(exc.value)
    binary = f"bin-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=binary, SecretBinary=b"\x00\x01")
    with pytest.raises(DiscoveryError, match=r"a binary secret"):
        adapter.discover(target(tmp_path, {"adapter": "aws-secrets", "secret_id": binary}))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.key: names the document's key"):
        adapter.check(target(tmp_path, {"adapter": "aws-secrets", "secret_id": "x", "key": "k"}))


def test_a_version_that_slips_in_between_check_and_put_is_made_current_again(
    moto_url: str, sm: Any, name: str, tmp_path: Path
) -> None:
    """Another writer's put lands after the commit's check and before its own: the commit sees that the
    version it displaced is not the one it read, moves AWSCURRENT back to the other writer's version (by
    version stage) and reports a conflict."""

    class Racing(AwsSecretsAdapter):
        def _stages(self, where: Any, error: Any) -> dict[str, str]:
            stages = super()._stages(where, error)
            if not raced:
                raced.append(sm.put_secret_value(SecretId=name, SecretString=json.dumps({"password": "theirs"})))
            return stages

    raced: list[Any] = []
    adapter = Racing(aws_settings(moto_url))
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    staged = adapter.stage(t, [Change(("password",), "old-pass", "mine")], dry_run=False)
    with pytest.raises(ConflictError, match=r"its version was made current again"):
        adapter.commit(staged)
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages[raced[0]["VersionId"]] == ["AWSCURRENT"]
    assert current(sm, name) == {"password": "theirs"}
