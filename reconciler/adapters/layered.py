"""Layered sources: one target's configuration set in several places, with precedence.

    source:
      adapter: layered
      authoritative: configmap           # the layer fixes are written to
      layers:                            # lowest precedence first: a later layer's value wins
        - {name: file, adapter: file, path: ../live/payments.env}
        - {name: configmap, adapter: kubernetes, kind: ConfigMap, namespace: payments, name: payments}
        - {name: env, adapter: env, command: "gunicorn payments"}

The live document is the effective configuration: the layers deep-merged in order. For every key it also
records which layer gave the winning value and what every other layer holds, so a report says "env wins
with 10; configmap and file say 20" instead of leaving that to a debugging session.

Fixes are written to the authoritative layer only. A key whose winning value comes from a layer above the
authoritative one cannot be fixed there (the higher layer would still win), so its drift is escalated with
that reason. A write checks the effective value against the change's `before` (compare-and-swap on what the
service really sees), then stages the change in the authoritative layer against that layer's own value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler import ports
from reconciler.adapters.common import Options, apply_changes
from reconciler.domain.manifest import SourceSpec, Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING, KeyPath, from_pointer, get_in, to_pointer
from reconciler.errors import ApplyError, ConfigurationError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged, StagedSweeper
from reconciler.settings import Settings

Lookup = Callable[[str], Any]


@dataclass(frozen=True)
class _Layer:
    name: str
    target: Target  # the target as that layer's adapter sees it: the layer's options as its source
    adapter: Any


class LayeredAdapter:
    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True)
    known_options = ("layers", "authoritative")

    def __init__(self) -> None:
        self._lookup: Lookup | None = None
        # The adapters its layers read through (a few: one per kind of layer), for forget().
        self._used: dict[int, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> LayeredAdapter:
        return cls()

    def bind(self, lookup: Lookup) -> None:
        """Give the adapter the way to reach the layers' adapters (called by whoever builds adapters)."""
        self._lookup = lookup

    def _layers(self, target: Target) -> tuple[list[_Layer], int]:
        if self._lookup is None:
            raise ConfigurationError("the layered adapter was built without access to the other adapters")
        options = Options.of(target, "layered", self.known_options)
        raw = options.values.get("layers")
        if not isinstance(raw, list) or len(raw) < 2:
            raise options.problem("layers", "give at least two layers, lowest precedence first")
        layers: list[_Layer] = []
        for i, entry in enumerate(raw):
            field = f"layers.{i}"
            if not isinstance(entry, dict):
                raise options.problem(field, "must be a map with name, adapter and the adapter's options")
            name, adapter = entry.get("name"), entry.get("adapter")
            if not isinstance(name, str) or not name:
                raise options.problem(f"{field}.name", "each layer needs a name")
            if name in {layer.name for layer in layers}:
                raise options.problem(f"{field}.name", f"two layers are named {name!r}")
            if adapter == "layered" or not isinstance(adapter, str):
                raise options.problem(f"{field}.adapter", "must name another adapter")
            source = SourceSpec(**{k: v for k, v in entry.items() if k != "name"})
            sub = target.with_spec(target.spec.model_copy(update={"source": source}))
            try:
                layers.append(_Layer(name, sub, self._lookup(adapter)))
            except ConfigurationError as exc:
                raise options.problem(f"{field}.adapter", str(exc)) from None
            self._used.setdefault(id(layers[-1].adapter), layers[-1].adapter)
        authoritative = options.text("authoritative")
        names = [layer.name for layer in layers]
        if authoritative not in names:
            raise options.problem("authoritative", f"{authoritative!r} is not a layer; layers: {', '.join(names)}")
        return layers, names.index(authoritative)

    def forget(self, names: Collection[str]) -> None:
        """Drop what the layers' adapters keep of targets this process no longer passes (a layer's target has
        its layered target's name)."""
        for adapter in list(self._used.values()):
            if isinstance(adapter, ports.TargetCache):
                adapter.forget(names)

    def check(self, target: Target) -> None:
        """The target's options and each layer's, checked as a read checks them; nothing is contacted."""
        layers, _ = self._layers(target)
        for i, layer in enumerate(layers):
            if isinstance(layer.adapter, ports.SourceChecker):
                with _located(i):
                    layer.adapter.check(layer.target)

    def _discover(self, target: Target) -> tuple[list[_Layer], int, list[Observed]]:
        layers, authoritative = self._layers(target)
        seen = []
        for i, layer in enumerate(layers):
            with _located(i):
                seen.append(layer.adapter.discover(layer.target))
        return layers, authoritative, seen

    # -- ports ------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        layers, authoritative, seen = self._discover(target)
        digest = hashlib.sha256()
        for layer, observed in zip(layers, seen, strict=True):
            digest.update(f"{layer.name}\0{observed.fingerprint}\0".encode())

        location = " < ".join(f"{layer.name}: {o.location}" for layer, o in zip(layers, seen, strict=True))
        effective, provenance = _effective([(layer.name, o.document) for layer, o in zip(layers, seen, strict=True)])
        observed = Observed(digest.hexdigest(), location, document=effective)
        observed.layers = provenance
        unwritable: dict[str, str] = {}
        auth_name = layers[authoritative].name
        if not layers[authoritative].adapter.capabilities.write:
            unwritable[""] = f"the authoritative layer {auth_name} is read-only"
        for pointer, holders in provenance.items():
            winner = holders[-1][0]
            if [layer.name for layer in layers].index(winner) > authoritative:
                unwritable[pointer] = f"layer {winner} sets it and wins over the authoritative layer {auth_name}"
        for pointer, why in seen[authoritative].unwritable.items():
            unwritable.setdefault(pointer, why)
        observed.unwritable = unwritable
        return observed

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        layers, authoritative = self._layers(target)
        layer = layers[authoritative]
        with _located(authoritative):
            return dict(layer.adapter.normalize(layer.target, desired))

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        layers, authoritative, seen = self._discover(target)
        effective, _ = _effective([(layer.name, o.document) for layer, o in zip(layers, seen, strict=True)])
        own = seen[authoritative].document
        list_keys = target.list_keys()
        # Compare-and-swap on the effective value; each write then goes to the authoritative layer against
        # that layer's own value.
        _, results, messages = apply_changes(effective, changes, list_keys, dry_run=dry_run, where=target.name)
        inner = [
            Change(c.path, get_in(own, c.path, list_keys), c.after)
            for c, r in zip(changes, results, strict=True)
            if r is ChangeResult.WRITE
        ]
        if not inner:
            return Staged(target.name, results, messages, dry_run, None)
        layer = layers[authoritative]
        with _located(authoritative):
            staged = layer.adapter.stage(layer.target, inner, dry_run=dry_run)
        if ChangeResult.CONFLICT in staged.results:
            layer.adapter.discard(staged)
            raise ApplyError(f"layer {layer.name} changed while the change was staged")
        return Staged(target.name, results, messages, dry_run, (layer.adapter, staged))

    def commit(self, staged: Staged) -> None:
        if staged.handle is not None:
            adapter, inner = staged.handle
            adapter.commit(inner)

    def discard(self, staged: Staged) -> None:
        if staged.handle is not None:
            adapter, inner = staged.handle
            adapter.discard(inner)

    def sweep_staged(self, target: Target) -> list[str]:
        """What interrupted commits left for any of the target's layers (writes go to one, but which one
        is authoritative may have changed since)."""
        layers, _ = self._layers(target)
        return [
            removed
            for layer in layers
            if isinstance(layer.adapter, StagedSweeper)
            for removed in layer.adapter.sweep_staged(layer.target)
        ]


class _located:
    """Errors of a layer's own adapter name the layer: spec.source.path becomes spec.source.layers.N.path."""

    def __init__(self, index: int) -> None:
        self._index = index

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, ConfigurationError) and exc.problems:
            old, new = "spec.source.", f"spec.source.layers.{self._index}."
            problems = [replace(p, field=p.field.replace(old, new, 1)) if p.field else p for p in exc.problems]
            message = str(exc).splitlines()[0].replace(old, new, 1)
            raise ConfigurationError(message, problems) from None


def _effective(
    documents: Sequence[tuple[str, dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, list[tuple[str, Any]]]]:
    """The layers deep-merged, lowest first, and for every leaf the layers that set it, winner last."""
    merged: dict[str, Any] = {}
    provenance: dict[str, list[tuple[str, Any]]] = {}
    for name, document in documents:
        _merge_into(merged, document)
        for path, value in _leaves(document, ()):
            provenance.setdefault(to_pointer(path), []).append((name, value))
    # A leaf that a later layer replaced with a map (or the other way round) is not a leaf any more.
    kept = {}
    for pointer, holders in provenance.items():
        value = get_in(merged, from_pointer(pointer))
        if value is not MISSING and not (isinstance(value, dict) and value):
            kept[pointer] = holders
    return merged, kept


def _merge_into(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _leaves(node: Any, path: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, node
