"""SIGKILL at random points of an apply to Parameter Store, Secrets Manager and Kubernetes Secrets (moto and
the Kubernetes emulator standing in): on the next apply nothing is left in flight, every drifted key is
written and verified exactly once per round, and live ends equal to desired. The secret values make recovery
compare live with journaled keyed hashes, never with values."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
from tests.e2e.test_crash import apply_cmd, killed_apply, settled_round

pytestmark = pytest.mark.e2e

TARGETS = 6
KEYS = ("a", "b", "c")
KILLS = max(1, int(os.environ.get("RECONCILER_TEST_KILLS", "50")) // 10)  # a tenth of the file test's: 5
REGION = "eu-west-1"


@dataclass
class Fleet:
    """TARGETS live objects of one source: their spec.source, a way to drift them all, and to read them."""

    source: Callable[[int], dict[str, Any]]
    set_all: Callable[[str], None]  # "bad" or "good": every key of every target to f"{word}-{i}-{key}"
    read: Callable[[int], dict[str, str]]
    env: dict[str, str]


def ssm_fleet(moto_url: str) -> Fleet:
    client = boto3.client("ssm", endpoint_url=moto_url, region_name=REGION, **BOTO_KEYS)
    root = f"/crash-{uuid.uuid4().hex[:8]}"

    def set_all(word: str) -> None:
        for i in range(TARGETS):
            for key in KEYS:
                kind = "SecureString" if key == "c" else "String"
                client.put_parameter(Name=f"{root}/t{i}/{key}", Value=f"{word}-{i}-{key}", Type=kind, Overwrite=True)

    def read(i: int) -> dict[str, str]:
        pages = client.get_paginator("get_parameters_by_path").paginate(Path=f"{root}/t{i}", WithDecryption=True)
        return {p["Name"].rsplit("/", 1)[1]: p["Value"] for page in pages for p in page["Parameters"]}

    env = {"RECONCILER_AWS__ENDPOINT_URL": moto_url, "RECONCILER_AWS__REGION": REGION}
    return Fleet(lambda i: {"adapter": "ssm", "path": f"{root}/t{i}/"}, set_all, read, env)


def aws_secrets_fleet(moto_url: str) -> Fleet:
    client = boto3.client("secretsmanager", endpoint_url=moto_url, region_name=REGION, **BOTO_KEYS)
    root = f"crash-{uuid.uuid4().hex[:8]}"
    for i in range(TARGETS):
        client.create_secret(Name=f"{root}/t{i}", SecretString="{}")

    def set_all(word: str) -> None:
        for i in range(TARGETS):
            value = json.dumps({key: f"{word}-{i}-{key}" for key in KEYS})
            client.put_secret_value(SecretId=f"{root}/t{i}", SecretString=value)

    def read(i: int) -> dict[str, str]:
        answer = client.get_secret_value(SecretId=f"{root}/t{i}", VersionStage="AWSCURRENT")
        return dict(json.loads(answer["SecretString"]))

    env = {"RECONCILER_AWS__ENDPOINT_URL": moto_url, "RECONCILER_AWS__REGION": REGION}
    return Fleet(lambda i: {"adapter": "aws-secrets", "secret_id": f"{root}/t{i}"}, set_all, read, env)


def kubernetes_fleet(kubeconfig: Path) -> Fleet:
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
    namespace = f"crash-{uuid.uuid4().hex[:8]}"
    for i in range(TARGETS):
        core.create_namespaced_secret(namespace, {"metadata": {"name": f"t{i}", "namespace": namespace}, "data": {}})

    def set_all(word: str) -> None:
        for i in range(TARGETS):
            live = core.read_namespaced_secret(f"t{i}", namespace)
            live.data = {k: base64.b64encode(f"{word}-{i}-{k}".encode()).decode() for k in KEYS}
            core.replace_namespaced_secret(f"t{i}", namespace, live)

    def read(i: int) -> dict[str, str]:
        data = core.read_namespaced_secret(f"t{i}", namespace).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    source = {"adapter": "kubernetes", "kind": "Secret", "namespace": namespace}
    return Fleet(
        lambda i: {**source, "name": f"t{i}"}, set_all, read, {"RECONCILER_KUBERNETES__KUBECONFIG": str(kubeconfig)}
    )


@pytest.fixture(params=["ssm", "aws-secrets", "kubernetes"])
def fleet(request: pytest.FixtureRequest) -> Fleet:
    return stand_in(request, {"ssm": ssm_fleet, "aws-secrets": aws_secrets_fleet, "kubernetes": kubernetes_fleet})


def test_sigkill_at_random_points_of_an_apply_to_secret_sources(fleet: Fleet, tmp_path: Path) -> None:
    """Applies killed at random moments, each followed by a normal apply: zero actions left pending, exactly
    one verified write per drifted key per round, and live equal to desired after every round; some kill
    met writes in flight."""
    (tmp_path / "desired").mkdir()
    docs = [
        {
            "kind": "Target",
            "metadata": {"name": f"t{i}", "environment": "dev"},
            "spec": {"source": fleet.source(i), "desired": {k: f"good-{i}-{k}" for k in KEYS}},
        }
        for i in range(TARGETS)
    ]
    (tmp_path / "desired" / "fleet.yaml").write_text(yaml.safe_dump_all(docs))
    (tmp_path / "desired" / "p.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "AWS_"))}
    env.update(AWS_ENV)
    env.update(fleet.env)
    database = f"sqlite:///{tmp_path / 'history.db'}"
    env.update(
        RECONCILER_DESIRED_DIR=str(tmp_path / "desired"),
        RECONCILER_DATABASE_URL=database,
        RECONCILER_SECRETS__HMAC_KEY="crash-test",
        RECONCILER_SAFETY__FLAP_THRESHOLD="100000",
    )
    assert subprocess.run([*apply_cmd()[:3], "db", "upgrade"], env=env, check=False).returncode == 0
    engine = sa.create_engine(database)
    fleet.set_all("bad")
    first = subprocess.run(apply_cmd(), env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    with engine.connect() as conn:
        started, finished = conn.execute(sa.text("SELECT started_at, finished_at FROM runs")).one()
        seen_runs = {r[0] for r in conn.execute(sa.text("SELECT id FROM runs"))}
    phase_s = (datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))).total_seconds()
    rng = random.Random(20261201)
    outcomes: Counter[str] = Counter()
    rounds = 0
    # At least KILLS rounds, and more (up to three times as many) until a kill has met writes in flight: where
    # nothing was in flight, a round tests nothing, and under load more kills land between targets.
    while rounds < KILLS or (not outcomes and rounds < 3 * KILLS):
        rounds += 1
        fleet.set_all("bad")
        killed_apply(env, engine, seen_runs, rng.uniform(0.0, phase_s))
        assert all(fleet.read(i) == {k: f"good-{i}-{k}" for k in KEYS} for i in range(TARGETS))
        outcomes.update(settled_round(engine, seen_runs, TARGETS * len(KEYS)))
    engine.dispose()
    print(f"\n{rounds} kills; recovered actions by outcome: {dict(outcomes)}")
    # 10 kills per source recovered 16-27 actions (both outcomes) in a trial run; 15 without one would be a
    # change of timing to look at.
    assert sum(outcomes.values()) >= 1, outcomes
