"""The Unleash adapter's document: one flag's state in one environment, normalised the same way whether it comes
from the admin API or from a manifest, so that only what changes behaviour is compared.

    {"new-checkout": {
        "enabled": true,
        "strategies": [{"name": "flexibleRollout",
                        "parameters": {"rollout": "50", "stickiness": "default", "groupId": "new-checkout"},
                        "constraints": [],
                        "variants": [{"name": "blue", "weightType": "variable", "stickiness": "default"}]}]}}

Left out: strategy ids and sort order (the list is in the server's order), metrics, timestamps, who changed
what; `strategies` when there are none; `segments`, `disabled` and `title` when unset; a variant's weight when
the server computes it (`weightType: variable`). Parameter values are strings, as Unleash keeps them (a
manifest's `rollout: 50` is compared as "50"), and a gradual rollout's `groupId` and `stickiness` default to
the flag's name and "default", as the server fills them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.adapters.common import scalar_string

FLAG_KEYS = ("enabled", "strategies")
STRATEGY_KEYS = ("name", "parameters", "constraints", "variants", "segments", "disabled", "title")
CONSTRAINT_KEYS = ("contextName", "operator", "values", "value", "caseInsensitive", "inverted")
VARIANT_KEYS = ("name", "weight", "weightType", "stickiness", "payload")


class ShapeError(ValueError):
    """A strategy, constraint or variant that is not shaped as Unleash takes it; `field` locates it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def flag_state(enabled: bool, strategies: list[dict[str, Any]]) -> dict[str, Any]:
    """One flag in one environment: its enabled state and, when it has any, its strategies."""
    state: dict[str, Any] = {"enabled": enabled}
    if strategies:
        state["strategies"] = strategies
    return state


def desired_flag(raw: Any, flag: str, field: str) -> dict[str, Any]:
    """A manifest's state of one flag in compared form. Either key may be left out: what is not named is not
    managed (and shows as a live-only key, removed only with `prune`)."""
    item = _mapping(raw, field, FLAG_KEYS)
    out: dict[str, Any] = {}
    if "enabled" in item:
        if not isinstance(item["enabled"], bool):
            raise ShapeError(f"{field}.enabled", "must be true or false")
        out["enabled"] = item["enabled"]
    if "strategies" in item:
        listed = _list(item, "strategies", field)
        strategies = [strategy(s, flag, f"{field}.strategies[{i}]") for i, s in enumerate(listed)]
        if not strategies and item.get("enabled") is True:
            raise ShapeError(
                f"{field}.strategies",
                "an enabled flag needs a strategy (Unleash adds a 100% gradual rollout to one that has none)",
            )
        if strategies:
            out["strategies"] = strategies
    return out


def strategy(raw: Any, flag: str, field: str, *, strict: bool = True) -> dict[str, Any]:
    """A strategy in compared form (see the module docstring); ShapeError when it is not one. `strict` (for
    manifests) also refuses fields Unleash does not take; the server's answers may grow new ones."""
    item = _mapping(raw, field, STRATEGY_KEYS if strict else None)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ShapeError(f"{field}.name", "a strategy needs a name (default, flexibleRollout, userWithId, ...)")
    params = _mapping(item.get("parameters") or {}, f"{field}.parameters", None)
    parameters: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, (dict, list)) or value is None:
            raise ShapeError(f"{field}.parameters.{key}", "a strategy parameter is a single value")
        parameters[str(key)] = str(scalar_string(value))
    if name == "flexibleRollout":
        parameters.setdefault("groupId", flag)
        parameters.setdefault("stickiness", "default")
    out: dict[str, Any] = {
        "name": name,
        "parameters": parameters,
        "constraints": [
            constraint(c, f"{field}.constraints[{i}]", strict=strict)
            for i, c in enumerate(_list(item, "constraints", field))
        ],
        "variants": [
            variant(v, f"{field}.variants[{i}]", strict=strict) for i, v in enumerate(_list(item, "variants", field))
        ],
    }
    segments = _list(item, "segments", field)
    if segments:
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in segments):
            raise ShapeError(f"{field}.segments", "segments are given by their numeric ids")
        out["segments"] = sorted(segments)
    if item.get("disabled") is True:
        out["disabled"] = True
    if isinstance(item.get("title"), str) and item["title"]:
        out["title"] = item["title"]
    return out


def constraint(raw: Any, field: str, *, strict: bool = True) -> dict[str, Any]:
    item = _mapping(raw, field, CONSTRAINT_KEYS if strict else None)
    for key in ("contextName", "operator"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ShapeError(f"{field}.{key}", f"a constraint needs {key}")
    out: dict[str, Any] = {"contextName": item["contextName"], "operator": item["operator"]}
    values = item.get("values") or []
    if not isinstance(values, list) or any(isinstance(v, (dict, list)) or v is None for v in values):
        raise ShapeError(f"{field}.values", "must be a list of single values")
    if values:
        out["values"] = sorted(str(scalar_string(v)) for v in values)  # a set to Unleash: order means nothing
    if item.get("value") not in (None, ""):
        out["value"] = str(scalar_string(item["value"]))
    for flag in ("caseInsensitive", "inverted"):
        if item.get(flag) is True:
            out[flag] = True
    return out


def variant(raw: Any, field: str, *, strict: bool = True) -> dict[str, Any]:
    item = _mapping(raw, field, VARIANT_KEYS if strict else None)
    if not isinstance(item.get("name"), str) or not item["name"]:
        raise ShapeError(f"{field}.name", "a variant needs a name")
    weight_type = item.get("weightType") or "variable"
    if weight_type not in ("variable", "fix"):
        raise ShapeError(f"{field}.weightType", "must be variable or fix")
    out: dict[str, Any] = {
        "name": item["name"],
        "weightType": weight_type,
        "stickiness": item.get("stickiness") or "default",
    }
    if weight_type == "fix":
        weight = item.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1000:
            raise ShapeError(f"{field}.weight", "a fixed weight is a whole number from 0 to 1000")
        out["weight"] = weight
    payload = item.get("payload")
    if payload is not None:
        body = _mapping(payload, f"{field}.payload", ("type", "value") if strict else None)
        if not isinstance(body.get("type"), str) or not isinstance(body.get("value"), str):
            raise ShapeError(f"{field}.payload", "a payload is {type: string|json|csv|number, value: <text>}")
        out["payload"] = {"type": body["type"], "value": body["value"]}
    return out


def body(state: Mapping[str, Any]) -> dict[str, Any]:
    """What the admin API takes to create or update a strategy in the compared form `state`."""
    return {
        "name": state["name"],
        "parameters": state["parameters"],
        "constraints": state["constraints"],
        "variants": [{"weight": 0, **v} for v in state["variants"]],
        "segments": state.get("segments", []),
        "disabled": state.get("disabled", False),
        "title": state.get("title"),
    }


def _mapping(raw: Any, field: str, known: tuple[str, ...] | None) -> dict[str, Any]:
    """`raw` as a dict; with `known`, a field outside it is refused."""
    if not isinstance(raw, Mapping):
        raise ShapeError(field, "must be a mapping")
    if known is not None:
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ShapeError(f"{field}.{unknown[0]}", f"unknown field; known: {', '.join(known)}")
    return dict(raw)


def _list(item: Mapping[str, Any], key: str, field: str) -> list[Any]:
    value = item.get(key) or []
    if not isinstance(value, list):
        raise ShapeError(f"{field}.{key}", "must be a list")
    return value
