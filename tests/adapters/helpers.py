"""Targets for adapter tests, written as real manifests and loaded, so errors carry file and field."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from reconciler.desired.loader import load
from reconciler.domain.manifest import Target
from reconciler.settings import AdapterSettings, AwsSettings, Settings

_counter = itertools.count()
REGION = "eu-west-1"  # of the AWS adapters' tests


def target(folder: Path, source: dict[str, Any], desired: dict[str, Any] | None = None, **spec: Any) -> Target:
    """A target named t<N> with `source` and `desired`, loaded from a manifest in a fresh folder under `folder`."""
    n = next(_counter)
    where = folder / f"desired-{n}"
    where.mkdir(parents=True)
    name = f"t{n}"
    document = {
        "kind": "Target",
        "metadata": {"name": name},
        "spec": {"source": source, "desired": desired or {}, **spec},
    }
    (where / "t.yaml").write_text(yaml.safe_dump(document))
    return load(where).targets[name]


def aws_settings(endpoint_url: str, **credentials: str) -> Settings:
    """Settings for the AWS adapters against moto at `endpoint_url`, with these named credentials."""
    return Settings(
        adapters=AdapterSettings(timeout_s=2, credentials={k: SecretStr(v) for k, v in credentials.items()}),
        aws=AwsSettings(region=REGION, endpoint_url=endpoint_url),
    )
