"""Read-only looks at live state: why a drift has its class, what each environment holds. Nothing is written."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.classify.classifier import Step, explain
from reconciler.domain.drift import DriftItem
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, KeyPath, any_match, from_pointer, get_in
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.domain.values import strict_equal
from reconciler.engine.assess import Assessor
from reconciler.errors import ConfigurationError, ReconcilerError
from reconciler.ports import Adapter


@dataclass
class Explanation:
    target: Target
    pointer: str
    item: DriftItem | None
    steps: list[Step] = field(default_factory=list)
    note: str = ""  # when there is no drift at the path, why not


def explain_drift(
    state: DesiredState,
    adapters: Callable[[str], Adapter],
    target_name: str,
    pointer: str,
    *,
    hmac_key: bytes,
    secret_file_roots: Sequence[Path],
    now: datetime,
) -> Explanation:
    """Look at `target_name` live, find the drift at `pointer`, and say which rule or exception decides it."""
    if target_name not in state.targets:
        raise ConfigurationError(f"no target named {target_name} in {state.root}")
    try:
        path = from_pointer(pointer)
    except ValueError as exc:
        raise ConfigurationError(f"PATH: {exc}") from None
    target = state.targets[target_name]
    assessment = Assessor(hmac_key, secret_file_roots).assess(
        state, target, adapters(target.spec.source.adapter), Mode.DRY_RUN, now
    )
    for item in assessment.comparison.items:
        if item.path == path:
            return Explanation(target, pointer, item, explain(target, item, state, now))
    result = Explanation(target, pointer, None)
    inside = [i.pointer for i in assessment.comparison.items if i.path[: len(path)] == path]
    ignored = [str(g) for g in target.spec.ignore if any_match([g], path)]
    if ignored:
        result.note = f"{pointer} is ignored (ignore: {', '.join(ignored)})"
    elif inside:
        result.note = f"no drift at {pointer} itself; drift below it at: {', '.join(inside)}"
    elif (
        get_in(assessment.desired or target.spec.desired, path) is MISSING
        and get_in(assessment.observed.document, path) is MISSING
    ):
        result.note = f"{pointer} is neither in the desired state nor in live"
    else:
        result.note = f"no drift at {pointer}: live equals desired"
    return result


def live_documents(
    state: DesiredState, adapters: Callable[[str], Adapter], names: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The live document of each named target, and the error of each one that could not be read."""
    documents: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in names:
        target = state.targets[name]
        try:
            documents[name] = adapters(target.spec.source.adapter).discover(target).without_secrets()
        except ReconcilerError as exc:
            errors[name] = str(exc)
    return documents, errors


def adoptable(
    state: DesiredState,
    adapters: Callable[[str], Adapter],
    drift: dict[str, Any],
) -> tuple[Target, KeyPath, Any]:
    """A recorded drift's target, path and live value, if live still holds that value (MISSING: the key is
    no longer there, so it is no longer desired); nothing is written."""
    if drift["secret"]:
        raise ConfigurationError("secret values are not kept in history, so they cannot be adopted; edit the secret")
    if drift["target"] not in state.targets:
        raise ConfigurationError(f"target {drift['target']} is no longer in the desired state")
    target = state.targets[drift["target"]]
    path = from_pointer(drift["path"])
    live = adapters(target.spec.source.adapter).discover(target).document
    now = get_in(live, path, target.list_keys())
    recorded = drift["observed"]
    same = now is recorded if MISSING in (now, recorded) else strict_equal(now, recorded)
    if not same:
        raise ConfigurationError(
            f"live {target.name} {drift['path']} no longer holds what drift {drift['id']} recorded; plan again and "
            "adopt the new drift"
        )
    return target, path, recorded
