"""What `validate` checks beyond the manifests: that each target's adapter is installed and that its source
options are ones the adapter knows, of the right types, naming credentials that are configured. These are the
checks a pass makes before it reads; here they run without connecting to, or reading, any live system."""

from __future__ import annotations

from typing import Any

from reconciler.adapters import registry
from reconciler.domain.manifest import Target
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError, Problem
from reconciler.ports import SourceChecker
from reconciler.settings import Settings

# Adapters without check() (their modules are being reshaped), with a method that looks only at the options and
# at local path names, never at live state: the file adapter's locate() parses path and format, resolves the
# path and checks it against the roots. Move each to check() when its module gets one.
_LOCAL_CHECKS = {"file": "locate"}


class _Fallback:
    """check() for an adapter that has none: its local check if listed above, else its known_options."""

    def __init__(self, name: str, adapter: Any) -> None:
        self._name = name
        self._adapter = adapter

    def check(self, target: Target) -> None:
        method = _LOCAL_CHECKS.get(self._name)
        if method is not None and hasattr(self._adapter, method):
            getattr(self._adapter, method)(target)
            return
        known = getattr(self._adapter, "known_options", None)
        if known is None:
            return  # the adapter declares no schema: there is nothing to check without reading
        unknown = sorted(set(target.spec.source.options()) - set(known))
        if unknown:
            listed = ", ".join(sorted(known)) or "none"
            raise target.problem(
                f"spec.source.{unknown[0]}", f"unknown option of the {self._name} adapter; known: {listed}"
            )


class Checkers:
    """A SourceChecker per adapter name, each adapter built once as the daemon builds it (a composite such as
    `layered` is given this object as its lookup, so its layers are checked the same way)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._built: dict[str, SourceChecker] = {}

    def __call__(self, name: str) -> SourceChecker:
        if name not in self._built:
            adapter = registry.adapter_class(name).from_settings(self._settings)
            if hasattr(adapter, "bind"):
                adapter.bind(self)
            self._built[name] = adapter if isinstance(adapter, SourceChecker) else _Fallback(name, adapter)
        return self._built[name]


def problems(state: DesiredState, settings: Settings) -> list[Problem]:
    """Every target's source problems, each naming file, document and field; empty when all are fine."""
    checkers = Checkers(settings)
    found: list[Problem] = []
    for target in state.targets.values():
        try:
            checker = checkers(target.spec.source.adapter)
        except ConfigurationError as exc:
            found.extend(target.problem("spec.source.adapter", str(exc)).problems)
            continue
        try:
            checker.check(target)
        except ConfigurationError as exc:
            found.extend(exc.problems or target.problem("spec.source", str(exc)).problems)
    return found


def check(state: DesiredState, settings: Settings) -> None:
    """Raise a ConfigurationError listing every target's source problems, if there are any."""
    found = problems(state, settings)
    if found:
        raise ConfigurationError(f"desired state in {state.root} is invalid ({len(found)} problems)", found)
