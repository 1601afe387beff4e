"""Targets for adapter tests, written as real manifests and loaded, so errors carry file and field."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from reconciler.desired.loader import load
from reconciler.domain.manifest import Target

_counter = itertools.count()


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
