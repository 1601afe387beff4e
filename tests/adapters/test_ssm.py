"""The ssm adapter with the real boto3 client, against moto's server mode standing in for Parameter Store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from reconciler.adapters.ssm import SsmAdapter
from reconciler.domain.paths import MISSING, PathGlob
from reconciler.errors import AccessDenied, ApplyError, ConfigurationError, ConflictError, DiscoveryError
from reconciler.ports import Change, ChangeResult
from reconciler.settings import AwsSettings, Settings
from tests.adapters.helpers import REGION, aws_settings, target
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]


@pytest.fixture
def ssm(moto_url: str) -> Any:
    return boto3.client("ssm", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def path() -> str:
    return f"/test-{uuid.uuid4().hex[:8]}/payments/"


@pytest.fixture
def adapter(moto_url: str) -> SsmAdapter:
    return SsmAdapter(aws_settings(moto_url))


def put(ssm: Any, name: str, value: str, kind: str = "String") -> None:
    ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)


def test_reads_a_path_as_a_nested_document_with_types_kept(
    adapter: SsmAdapter, ssm: Any, path: str, tmp_path: Path
) -> None:
    """String is a string, StringList a list, SecureString a string declared secret; `/` nests."""
    put(ssm, path + "db/pool", "20")
    put(ssm, path + "hosts", "a.internal,b.internal", "StringList")
    put(ssm, path + "db/password", "hunter2-secret", "SecureString")
    put(ssm, path.rstrip("/") + "-other/x", "not mine")
    observed = adapter.discover(target(tmp_path, {"adapter": "ssm", "path": path}))
    assert observed.document == {
        "db": {"pool": "20", "password": "hunter2-secret"},
        "hosts": ["a.internal", "b.internal"],
    }
    assert observed.secrets == (PathGlob.parse("/db/password"),)
    assert observed.without_secrets() == {"db": {"pool": "20"}, "hosts": ["a.internal", "b.internal"]}
    assert observed.location == f"ssm:{path}"


def test_the_fingerprint_moves_with_any_write_and_bulk_read_gives_the_same(
    adapter: SsmAdapter, ssm: Any, tmp_path: Path
) -> None:
    """Every target's fingerprint from one bulk read equals its own read's, and a write changes it."""
    base = f"/fleet-{uuid.uuid4().hex[:8]}/"
    targets = {}
    for app in ("a", "b", "c"):
        put(ssm, f"{base}{app}/level", "INFO")
        put(ssm, f"{base}{app}/token", "s3cr3t", "SecureString")
        t = target(tmp_path, {"adapter": "ssm", "path": f"{base}{app}/"})
        targets[t.name] = t
    alone = {name: adapter.discover(t).fingerprint for name, t in targets.items()}
    assert adapter.fingerprints(targets) == alone
    first = next(iter(targets.values()))
    put(ssm, f"{base}a/token", "rotated", "SecureString")
    assert adapter.discover(first).fingerprint != alone[first.name]
    assert adapter.fingerprints(targets)[first.name] == adapter.discover(first).fingerprint


def test_normalize_renders_scalars_and_lists_as_strings(adapter: SsmAdapter, path: str, tmp_path: Path) -> None:
    """Desired numbers and booleans become their strings, lists StringLists; null and commas are refused."""
    t = target(tmp_path, {"adapter": "ssm", "path": path})
    assert adapter.normalize(t, {"a": 1, "b": {"c": True}, "d": ["x", 2]}) == {
        "a": "1",
        "b": {"c": "true"},
        "d": ["x", "2"],
    }
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.a: a parameter holds a string"):
        adapter.normalize(t, {"a": None})
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.d: a StringList holds"):
        adapter.normalize(t, {"d": ["x,y"]})


def test_writes_are_version_guarded_and_keep_types(adapter: SsmAdapter, ssm: Any, path: str, tmp_path: Path) -> None:
    """A change, a new list, a new secret path (SecureString) and a removal; each put moves the version by one."""
    put(ssm, path + "level", "DEBUG")
    put(ssm, path + "old", "gone soon")
    put(ssm, path + "db/password", "old-pass", "SecureString")
    t = target(tmp_path, {"adapter": "ssm", "path": path}, secrets=["/api/**"])
    changes = [
        Change(("level",), "DEBUG", "INFO"),
        Change(("hosts",), MISSING, ["a", "b"]),
        Change(("api", "key"), MISSING, "new-key"),
        Change(("old",), "gone soon", MISSING),
        Change(("db", "password"), "old-pass", "new-pass"),
    ]
    staged = adapter.stage(t, changes, dry_run=False)
    assert staged.results == [ChangeResult.WRITE] * 5
    adapter.commit(staged)
    got = {p["Name"][len(path) :]: p for p in ssm.get_parameters_by_path(Path=path, Recursive=True)["Parameters"]}
    assert {k: (p["Type"], p["Version"]) for k, p in got.items()} == {
        "level": ("String", 2),
        "hosts": ("StringList", 1),
        "api/key": ("SecureString", 1),
        "db/password": ("SecureString", 2),
    }
    assert adapter.discover(t).document == {
        "level": "INFO",
        "hosts": ["a", "b"],
        "api": {"key": "new-key"},
        "db": {"password": "new-pass"},
    }


def test_dry_run_and_noop_write_nothing(adapter: SsmAdapter, ssm: Any, path: str, tmp_path: Path) -> None:
    """A dry run stages and writes nothing; a change live already holds is a noop."""
    put(ssm, path + "level", "DEBUG")
    t = target(tmp_path, {"adapter": "ssm", "path": path})
    staged = adapter.stage(t, [Change(("level",), "DEBUG", "INFO")], dry_run=True)
    adapter.commit(staged)
    assert ssm.get_parameter(Name=path + "level")["Parameter"]["Version"] == 1
    noop = adapter.stage(t, [Change(("level",), "INFO", "DEBUG")], dry_run=False)
    assert noop.results == [ChangeResult.NOOP] and noop.handle is None


def test_a_second_writer_between_stage_and_commit_is_a_conflict_and_earlier_puts_are_put_back(
    adapter: SsmAdapter, ssm: Any, path: str, tmp_path: Path
) -> None:
    """The version read at stage no longer holds at commit: conflict, and a parameter this commit had
    already written goes back to what it was."""
    put(ssm, path + "a", "1")
    put(ssm, path + "b", "1")
    t = target(tmp_path, {"adapter": "ssm", "path": path})
    staged = adapter.stage(t, [Change(("a",), "1", "2"), Change(("b",), "1", "2")], dry_run=False)
    put(ssm, path + "b", "someone else")
    with pytest.raises(ConflictError, match=r"b: another writer changed it since it was read.*put back"):
        adapter.commit(staged)
    assert ssm.get_parameter(Name=path + "a")["Parameter"]["Value"] == "1"
    assert ssm.get_parameter(Name=path + "b")["Parameter"]["Value"] == "someone else"


def test_stage_refuses_what_live_no_longer_holds(adapter: SsmAdapter, ssm: Any, path: str, tmp_path: Path) -> None:
    """Compare-and-swap at stage: live holding neither before nor after is a conflict result, nothing staged."""
    put(ssm, path + "level", "WARN")
    t = target(tmp_path, {"adapter": "ssm", "path": path})
    staged = adapter.stage(t, [Change(("level",), "DEBUG", "INFO")], dry_run=False)
    assert staged.results == [ChangeResult.CONFLICT] and staged.handle is None


def test_values_a_parameter_cannot_hold_are_refused_before_anything_is_written(
    adapter: SsmAdapter, ssm: Any, path: str, tmp_path: Path
) -> None:
    """An empty string and a list into a SecureString fail at stage, naming the parameter."""
    put(ssm, path + "pw", "x", "SecureString")
    t = target(tmp_path, {"adapter": "ssm", "path": path})
    with pytest.raises(ApplyError, match=r"empty: a parameter cannot hold an empty value"):
        adapter.stage(t, [Change(("empty",), MISSING, "")], dry_run=False)
    with pytest.raises(ApplyError, match=r"pw is a SecureString and cannot hold a list"):
        adapter.stage(t, [Change(("pw",), "x", ["a"])], dry_run=False)


def test_named_credentials_and_bad_options(moto_url: str, ssm: Any, path: str, tmp_path: Path) -> None:
    """access_key_id + a named secret_access_key replace the standard chain; options errors name the field."""
    put(ssm, path + "level", "INFO")
    adapter = SsmAdapter(aws_settings(moto_url, **{"aws-prod": "named-secret-key"}))
    named = {"adapter": "ssm", "path": path, "access_key_id": "AKIANAMED", "secret_access_key": "aws-prod"}
    assert adapter.discover(target(tmp_path, named)).document == {"level": "INFO"}
    bad = [
        ({"path": "no-slash"}, r"spec\.source\.path: must start with /"),
        ({"path": path, "access_key_id": "AKIA"}, r"spec\.source\.access_key_id: give both"),
        ({"path": path, "access_key_id": "A", "secret_access_key": "nope"}, r"no credential named 'nope'"),
        ({"path": path, "endpoint_url": "ftp://x"}, r"spec\.source\.endpoint_url: must be an http"),
        ({"path": path, "bucket": "x"}, r"spec\.source\.bucket: unknown option of the ssm adapter"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigurationError, match=message):
            adapter.check(target(tmp_path, {"adapter": "ssm", **options}))


def test_no_region_is_a_configuration_error(moto_url: str, path: str, tmp_path: Path) -> None:
    """Without a region anywhere, the error names the option and the settings that give one."""
    adapter = SsmAdapter(Settings(aws=AwsSettings(endpoint_url=moto_url)))
    with pytest.raises(ConfigurationError, match=r"spec\.source\.region: no AWS region"):
        adapter.discover(target(tmp_path, {"adapter": "ssm", "path": path}))


def test_unreachable_endpoint_and_missing_credentials(
    moto_url: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed port is a retryable read error; no credentials anywhere is AccessDenied, never retried."""
    adapter = SsmAdapter(aws_settings(moto_url))
    closed = {"adapter": "ssm", "path": path, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(DiscoveryError, match=r"cannot reach AWS"):
        adapter.discover(target(tmp_path, closed))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AccessDenied, match=r"no AWS credentials"):
        SsmAdapter(aws_settings(moto_url)).discover(target(tmp_path, {"adapter": "ssm", "path": path}))
