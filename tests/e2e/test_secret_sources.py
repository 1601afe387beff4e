"""Sources whose values are secret by their nature (a SecureString parameter, a Secrets Manager secret, a
Kubernetes Secret), driven through the real CLI as processes: the manifests declare no `secrets`, yet no
value reaches output, logs, history or the parity report, and the fix is written; ssm and aws-secrets roll it
back from their own history, a Kubernetes Secret (which keeps none) refuses."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import kubernetes.client
import kubernetes.config
import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import AWS_ENV
from tests.e2e.conftest import BOTO_KEYS, stand_in

pytestmark = pytest.mark.e2e

REGION = "eu-west-1"
OLD, NEW, PROD = "old-pass-123", "new-pass-456", "prod-pass-789"


@dataclass
class Source:
    """One kind of secret source: how to make a live object holding a password, and how to read it back."""

    name: str
    options: Callable[[str], dict[str, Any]]  # environment -> spec.source
    read: Callable[[str], str]  # environment -> the password live holds
    write: Callable[[str, str], None]  # environment, password: another writer's change
    env: dict[str, str]


def ssm_source(moto_url: str) -> Source:
    client = boto3.client("ssm", endpoint_url=moto_url, region_name=REGION, **BOTO_KEYS)
    root = f"/leak-{uuid.uuid4().hex[:8]}"
    for environment, password in (("dev", OLD), ("prod", PROD)):
        client.put_parameter(Name=f"{root}/{environment}/db/user", Value="app", Type="String")
        client.put_parameter(Name=f"{root}/{environment}/db/password", Value=password, Type="SecureString")
    return Source(
        "ssm",
        lambda e: {"adapter": "ssm", "path": f"{root}/{e}/"},
        lambda e: client.get_parameter(Name=f"{root}/{e}/db/password", WithDecryption=True)["Parameter"]["Value"],
        lambda e, p: client.put_parameter(Name=f"{root}/{e}/db/password", Value=p, Type="SecureString", Overwrite=True),
        {"RECONCILER_AWS__ENDPOINT_URL": moto_url, "RECONCILER_AWS__REGION": REGION},
    )


def aws_secrets_source(moto_url: str) -> Source:
    client = boto3.client("secretsmanager", endpoint_url=moto_url, region_name=REGION, **BOTO_KEYS)
    root = f"leak-{uuid.uuid4().hex[:8]}"
    for environment, password in (("dev", OLD), ("prod", PROD)):
        client.create_secret(Name=f"{root}/{environment}", SecretString=json.dumps({"db": {"password": password}}))

    def read(environment: str) -> str:
        answer = client.get_secret_value(SecretId=f"{root}/{environment}", VersionStage="AWSCURRENT")
        return str(json.loads(answer["SecretString"])["db"]["password"])

    return Source(
        "aws-secrets",
        lambda e: {"adapter": "aws-secrets", "secret_id": f"{root}/{e}"},
        read,
        lambda e, p: client.put_secret_value(SecretId=f"{root}/{e}", SecretString=json.dumps({"db": {"password": p}})),
        {"RECONCILER_AWS__ENDPOINT_URL": moto_url, "RECONCILER_AWS__REGION": REGION},
    )


def kubernetes_source(kubeconfig: Path) -> Source:
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
    namespace = f"leak-{uuid.uuid4().hex[:8]}"
    for environment, password in (("dev", OLD), ("prod", PROD)):
        data = {"password": base64.b64encode(password.encode()).decode()}
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": environment, "namespace": namespace}, "data": data}
        )

    def write(environment: str, password: str) -> None:
        data = {"password": base64.b64encode(password.encode()).decode()}
        core.patch_namespaced_secret(environment, namespace, {"data": data})

    return Source(
        "kubernetes",
        lambda e: {"adapter": "kubernetes", "kind": "Secret", "namespace": namespace, "name": e},
        lambda e: base64.b64decode(core.read_namespaced_secret(e, namespace).data["password"]).decode(),
        write,
        {"RECONCILER_KUBERNETES__KUBECONFIG": str(kubeconfig)},
    )


@pytest.fixture(params=["ssm", "aws-secrets", "kubernetes"])
def source(request: pytest.FixtureRequest) -> Source:
    return stand_in(request, {"ssm": ssm_source, "aws-secrets": aws_secrets_source, "kubernetes": kubernetes_source})


def desired(source: Source, environment: str, password: str) -> dict[str, Any]:
    if source.name == "kubernetes":
        return {"password": password}
    document: dict[str, Any] = {"db": {"password": password}}
    if source.name == "ssm":
        document["db"]["user"] = "app"
    return document


def cli(
    folder: Path, targets: list[dict[str, Any]], extra: dict[str, str]
) -> tuple[Callable[..., subprocess.CompletedProcess[str]], str]:
    """`targets` as the desired state in `folder` (every drift reversible), and a function that runs the CLI
    on it as a process, with debug logs; and the URL of its SQLite history."""
    (folder / "desired").mkdir()
    (folder / "desired" / "t.yaml").write_text(yaml.safe_dump_all(targets))
    (folder / "desired" / "p.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "AWS_"))}
    database = f"sqlite:///{folder / 'history.db'}"
    env.update(AWS_ENV)
    env.update(extra)
    env.update(
        RECONCILER_DESIRED_DIR=str(folder / "desired"),
        RECONCILER_DATABASE_URL=database,
        RECONCILER_SECRETS__HMAC_KEY="leak-test",
        RECONCILER_LOG__LEVEL="debug",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", *args], env=env, capture_output=True, text=True, check=False
        )

    assert run("db", "upgrade").returncode == 0
    return run, database


def targets(source: Source) -> list[dict[str, Any]]:
    """db-dev (to be fixed from OLD to NEW) and db-prod (already right), one app."""
    return [
        {
            "kind": "Target",
            "metadata": {"name": f"db-{e}", "environment": e, "app": "leaky"},
            "spec": {"source": source.options(e), "desired": desired(source, e, NEW if e == "dev" else PROD)},
        }
        for e in ("dev", "prod")
    ]


def test_secret_sources_never_leak_through_the_cli(source: Source, tmp_path: Path) -> None:
    """plan, apply, history, rollback (twice) and compare in every format, with debug logs, and every table of
    the history: neither the old nor the new nor the other environment's password appears anywhere; the fix
    is written, and rolled back from the store's own history where it keeps one (the second rollback says it
    was done already), refused where it keeps none (Kubernetes) rather than guess a secret never kept."""
    run, database = cli(tmp_path, targets(source), source.env)
    outputs = [run("plan", "--format", f) for f in ("table", "json", "markdown")]
    assert outputs[0].returncode == 2, outputs[0].stdout + outputs[0].stderr
    drift = json.loads(outputs[1].stdout)["targets"]
    assert [(d["path"], d["secret"]) for t in drift if t["target"] == "db-dev" for d in t["drift"]] == [
        ("/db/password" if source.name != "kubernetes" else "/password", True)
    ]
    applied = run("apply", "--target", "db-dev", "--format", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert source.read("dev") == NEW
    run_id = json.loads(applied.stdout)["run_id"]
    undone, again = run("rollback", run_id, "--format", "json"), run("rollback", run_id)
    if source.name == "kubernetes":
        assert (
            undone.returncode == 1 and "the kubernetes adapter's live system keeps no earlier values" in undone.stdout
        )
        assert source.read("dev") == NEW
    else:
        assert undone.returncode == 0, undone.stdout + undone.stderr
        assert source.read("dev") == OLD
        assert [a["state"] for t in json.loads(undone.stdout)["targets"] for a in t["actions"]] == ["verified"]
        # A second rollback is refused, naming the run that undid it, and records nothing.
        assert again.returncode == 1 and f"run {run_id} was already rolled back by run" in again.stderr, again.stderr
    undo_id = json.loads(undone.stdout)["run_id"]
    compared = [run("compare", "--format", f) for f in ("table", "json", "markdown")]
    assert compared[1].returncode in (0, 2), compared[1].stdout + compared[1].stderr
    outputs += [applied, undone, again, *compared, run("history", run_id), run("history", run_id, "--format", "json")]
    outputs += [run("history", undo_id), run("history", undo_id, "--format", "json")]
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            text += "\n".join(str(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
    engine.dispose()
    for value in (OLD, NEW, PROD):
        assert value not in text, f"{value} leaked"
    assert "<redacted hmac-sha256:" in text


@pytest.mark.parametrize("source", ["ssm", "aws-secrets"], indirect=True)
def test_a_secret_changed_since_the_fix_is_not_rolled_back(source: Source, tmp_path: Path) -> None:
    """Someone set the password again after reconciler's fix: the rollback is refused as a conflict (live no
    longer holds what the run wrote, by keyed hash), their value stays, and no value reaches the output."""
    run, _ = cli(tmp_path, targets(source), source.env)
    applied = run("apply", "--target", "db-dev", "--format", "json")
    assert applied.returncode == 0 and source.read("dev") == NEW, applied.stdout + applied.stderr
    source.write("dev", PROD)
    refused = run("rollback", json.loads(applied.stdout)["run_id"], "--format", "json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    report = json.loads(refused.stdout)["targets"][0]
    assert [a["state"] for a in report["actions"]] == ["conflict"]
    assert "live no longer holds what the run wrote" in report["error"]
    assert source.read("dev") == PROD
    assert not any(v in refused.stdout + refused.stderr for v in (OLD, NEW, PROD))


def test_ssm_plain_parameters_are_fixed_and_rolled_back(moto_url: str, tmp_path: Path) -> None:
    """A String and a StringList fixed by apply go back by `rollback`: each reverse write is version-guarded
    like the fix (the version moves by one per write), and the parameters keep their types."""
    client = boto3.client("ssm", endpoint_url=moto_url, region_name=REGION, **BOTO_KEYS)
    root = f"/rollback-{uuid.uuid4().hex[:8]}/"
    client.put_parameter(Name=root + "level", Value="DEBUG", Type="String")
    client.put_parameter(Name=root + "hosts", Value="a,b", Type="StringList")
    target = {
        "kind": "Target",
        "metadata": {"name": "params", "environment": "dev"},
        "spec": {"source": {"adapter": "ssm", "path": root}, "desired": {"level": "INFO", "hosts": ["a", "c"]}},
    }
    run, _ = cli(tmp_path, [target], {"RECONCILER_AWS__ENDPOINT_URL": moto_url, "RECONCILER_AWS__REGION": REGION})

    def live() -> dict[str, tuple[str, str, int]]:
        found = client.get_parameters_by_path(Path=root)["Parameters"]
        return {p["Name"][len(root) :]: (p["Value"], p["Type"], p["Version"]) for p in found}

    applied = run("apply", "--format", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert live() == {"level": ("INFO", "String", 2), "hosts": ("a,c", "StringList", 2)}
    undone = run("rollback", json.loads(applied.stdout)["run_id"])
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert live() == {"level": ("DEBUG", "String", 3), "hosts": ("a,b", "StringList", 3)}
