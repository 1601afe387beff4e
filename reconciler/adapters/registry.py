"""Adapters are found by entry point (group `reconciler.adapters`), so other packages can add some."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from reconciler.errors import ConfigurationError

GROUP = "reconciler.adapters"  # pyproject.toml registers this tree's; each class declares its options and capabilities


def available() -> dict[str, Any]:
    """Adapter name → adapter class, from every installed distribution's entry points."""
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def adapter_class(name: str) -> Any:
    """The class registered under `name`; a ConfigurationError naming the known ones if there is none."""
    found = available()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigurationError(f"unknown adapter {name!r}; installed adapters: {known}")
    return found[name].load()
