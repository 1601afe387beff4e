"""Rollback of secrets through the stores' own history, with the real boto3 client against moto's server: the
ssm adapter finds a value in a parameter's history, aws-secrets in the secret's versions; both by the keyed
hash that is all reconciler's journal keeps, and with the guards of a forward write."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from reconciler.adapters.awssecrets import AwsSecretsAdapter
from reconciler.adapters.kubernetes import KubernetesAdapter
from reconciler.adapters.ssm import SsmAdapter
from reconciler.domain.paths import MISSING
from reconciler.domain.values import Redacted
from reconciler.errors import ConflictError, RollbackError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import SecretSettings, Settings
from tests.adapters.helpers import REGION, aws_settings, target

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]

KEY = b"history-test-key"


def settings(moto_url: str) -> Settings:
    return aws_settings(moto_url).model_copy(update={"secrets": SecretSettings(hmac_key=SecretStr(KEY.decode()))})


def hashed(value: Any) -> Redacted:
    """A value as the journal keeps it."""
    return Redacted.of(value, KEY)


def undo(path: tuple[str, ...], wrote: Any, replaced: Any) -> Change:
    """The reverse of a journaled secret change: from what the run wrote back to what it replaced."""
    return Change(path, hashed(wrote), MISSING if replaced is MISSING else hashed(replaced))


@pytest.fixture
def ssm(moto_url: str) -> Any:
    return boto3.client("ssm", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def sm(moto_url: str) -> Any:
    return boto3.client("secretsmanager", endpoint_url=moto_url, region_name=REGION)


def parameter(ssm: Any, name: str) -> tuple[str, str, int]:
    p = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    return p["Value"], p["Type"], p["Version"]


def test_ssm_puts_a_secure_string_back_from_its_history(moto_url: str, ssm: Any, tmp_path: Path) -> None:
    """The newest version whose keyed hash matches is put back as a new version (moved by one), type kept;
    a dry run finds it and writes nothing; nothing in the staged messages holds a value."""
    path = f"/hist-{uuid.uuid4().hex[:8]}/"
    for value in ("first-pass", "old-pass", "new-pass"):
        ssm.put_parameter(Name=path + "db/password", Value=value, Type="SecureString", Overwrite=True)
    adapter, t = SsmAdapter(settings(moto_url)), target(tmp_path, {"adapter": "ssm", "path": path})
    preview = adapter.stage(t, [undo(("db", "password"), "new-pass", "old-pass")], dry_run=True)
    adapter.commit(preview)
    assert preview.results == [ChangeResult.WRITE] and parameter(ssm, path + "db/password")[2] == 3
    staged = adapter.stage(t, [undo(("db", "password"), "new-pass", "old-pass")], dry_run=False)
    assert staged.results == [ChangeResult.WRITE]
    assert not any("pass" in m for m in staged.messages) and "old-pass" not in repr(staged)
    adapter.commit(staged)
    assert parameter(ssm, path + "db/password") == ("old-pass", "SecureString", 4)
    again = adapter.stage(t, [undo(("db", "password"), "new-pass", "old-pass")], dry_run=False)
    assert again.results == [ChangeResult.NOOP]


def test_ssm_refuses_what_it_cannot_find_or_no_longer_guards(moto_url: str, ssm: Any, tmp_path: Path) -> None:
    """Live changed by someone else is a conflict (nothing read from history, nothing written); a value no
    version holds, or a parameter that is gone, is a RollbackError that names no value."""
    path = f"/hist-{uuid.uuid4().hex[:8]}/"
    ssm.put_parameter(Name=path + "token", Value="old-tok", Type="SecureString")
    ssm.put_parameter(Name=path + "token", Value="theirs-tok", Type="SecureString", Overwrite=True)
    adapter, t = SsmAdapter(settings(moto_url)), target(tmp_path, {"adapter": "ssm", "path": path})
    assert adapter.stage(t, [undo(("token",), "new-tok", "old-tok")], dry_run=False).results == [ChangeResult.CONFLICT]
    with pytest.raises(RollbackError, match=r"/token: no version in its history holds the value") as exc:
        adapter.stage(t, [undo(("token",), "theirs-tok", "never-there")], dry_run=False)
    assert "tok" not in str(exc.value).replace("/token", "")
    with pytest.raises(RollbackError, match=r"/gone: there is no such parameter now"):
        adapter.stage(t, [Change(("gone",), MISSING, hashed("was-here"))], dry_run=False)
    assert parameter(ssm, path + "token") == ("theirs-tok", "SecureString", 2)


def test_ssm_a_second_writer_after_stage_still_conflicts(moto_url: str, ssm: Any, tmp_path: Path) -> None:
    """The version read at stage guards the put of a restored value as it guards a fix."""
    path = f"/hist-{uuid.uuid4().hex[:8]}/"
    for value in ("old-pass", "new-pass"):
        ssm.put_parameter(Name=path + "pw", Value=value, Type="SecureString", Overwrite=True)
    adapter, t = SsmAdapter(settings(moto_url)), target(tmp_path, {"adapter": "ssm", "path": path})
    staged = adapter.stage(t, [undo(("pw",), "new-pass", "old-pass")], dry_run=False)
    ssm.put_parameter(Name=path + "pw", Value="new-pass", Type="SecureString", Overwrite=True)
    with pytest.raises(ConflictError, match=r"another writer changed it since it was read"):
        adapter.commit(staged)
    assert parameter(ssm, path + "pw") == ("new-pass", "SecureString", 3)


def secret(sm: Any, *documents: dict[str, Any]) -> tuple[str, list[str]]:
    """A secret with one version per document, the last current; its name and version ids."""
    name = f"hist-{uuid.uuid4().hex[:8]}"
    versions = [sm.create_secret(Name=name, SecretString=json.dumps(documents[0]))["VersionId"]]
    versions += [sm.put_secret_value(SecretId=name, SecretString=json.dumps(d))["VersionId"] for d in documents[1:]]
    return name, versions


def stages(sm: Any, name: str) -> dict[str, list[str]]:
    return {v: s for v, s in sm.describe_secret(SecretId=name)["VersionIdsToStages"].items() if s}


def test_aws_secrets_moves_the_current_stage_back_to_the_version_restored(
    moto_url: str, sm: Any, tmp_path: Path
) -> None:
    """Undoing a whole fix restores exactly the version before it: AWSCURRENT moves back, no new version."""
    name, (old, new) = secret(sm, {"user": "app", "password": "old-pass"}, {"user": "app", "password": "new-pass"})
    adapter = AwsSecretsAdapter(settings(moto_url))
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    staged = adapter.stage(t, [undo(("password",), "new-pass", "old-pass")], dry_run=False)
    assert staged.results == [ChangeResult.WRITE] and "old-pass" not in repr(staged)
    adapter.commit(staged)
    assert stages(sm, name) == {old: ["AWSCURRENT"], new: ["AWSPREVIOUS"]}
    assert adapter.discover(t).document == {"user": "app", "password": "old-pass"}


def test_aws_secrets_puts_a_new_version_when_no_version_is_the_whole_result(
    moto_url: str, sm: Any, tmp_path: Path
) -> None:
    """Undoing one key while another changed since: the value comes from an older version, the rest stays,
    and the result is a new version; a key the fix added is deleted without any history."""
    name, versions = secret(
        sm, {"password": "first"}, {"password": "old-pass"}, {"password": "new-pass", "port": 1}, {}
    )
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({"password": "new-pass", "port": 2, "added": "x"}))
    adapter = AwsSecretsAdapter(settings(moto_url))
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    reverse = [undo(("password",), "new-pass", "old-pass"), undo(("added",), "x", MISSING)]
    adapter.commit(adapter.stage(t, reverse, dry_run=False))
    assert adapter.discover(t).document == {"password": "old-pass", "port": 2}
    assert len(sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]) == len(versions) + 2


def test_aws_secrets_stage_move_is_guarded_and_unknown_values_refused(moto_url: str, sm: Any, tmp_path: Path) -> None:
    """A version put after stage makes the move back a conflict, theirs stays current; a hash no version
    holds is a RollbackError."""
    name, _ = secret(sm, {"password": "old-pass"}, {"password": "new-pass"})
    adapter = AwsSecretsAdapter(settings(moto_url))
    t = target(tmp_path, {"adapter": "aws-secrets", "secret_id": name})
    staged = adapter.stage(t, [undo(("password",), "new-pass", "old-pass")], dry_run=False)
    theirs = sm.put_secret_value(SecretId=name, SecretString=json.dumps({"password": "theirs"}))["VersionId"]
    with pytest.raises(ConflictError, match=r"another writer put a new version since it was read"):
        adapter.commit(staged)
    assert stages(sm, name)[theirs] == ["AWSCURRENT"]
    with pytest.raises(RollbackError, match=r"/password: no version in its history holds the value") as exc:
        adapter.stage(t, [undo(("password",), "theirs", "never-there")], dry_run=False)
    assert "theirs" not in str(exc.value) and "pass" not in str(exc.value).replace("/password", "")


def test_only_the_stores_with_history_declare_it(moto_url: str) -> None:
    """ssm and aws-secrets keep earlier values; a Kubernetes Secret keeps none, so its rollback is refused."""
    assert SsmAdapter.capabilities.secret_history and AwsSecretsAdapter.capabilities.secret_history
    assert not KubernetesAdapter.capabilities.secret_history
