"""Adapters are found by entry point (group `reconciler.adapters`), so other packages can add some."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from reconciler.errors import ConfigurationError

GROUP = "reconciler.adapters"


# Adapters of this tree that are found even where the installed package's entry points predate them (an
# editable install made before they were added); pyproject.toml registers them as entry points too. Each
# class declares its option schema (`known_options`) and what it can do (`capabilities`).
BUILTIN = {
    "ssm": "reconciler.adapters.ssm:SsmAdapter",
    "aws-secrets": "reconciler.adapters.awssecrets:AwsSecretsAdapter",
}


def available() -> dict[str, Any]:
    """Adapter name → adapter class, from every installed distribution's entry points."""
    found: dict[str, Any] = {name: metadata.EntryPoint(name, value, GROUP) for name, value in BUILTIN.items()}
    found.update({ep.name: ep for ep in metadata.entry_points(group=GROUP)})
    return found


def adapter_class(name: str) -> Any:
    """The class registered under `name`; a ConfigurationError naming the known ones if there is none."""
    found = available()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigurationError(f"unknown adapter {name!r}; installed adapters: {known}")
    return found[name].load()
