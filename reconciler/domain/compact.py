"""What a fleet's every manifest model holds in common, held once.

A replica loads every target of the desired state, and a target's four models (Target, Metadata, TargetSpec,
SourceSpec) each held two things of their own that thousands of other models hold alike. The models are
frozen, so nothing changes either in place (model_copy copies both before changing them), and both can be
shared. Both are bounded: documents that name fields of their own (a source's adapter options) can make many
distinct sets of names, and past the bound each model keeps its own.

- The set of the fields its document gave (216 bytes): one set object serves every model given the same fields.
- Its fields: a dict with a hash table of its names (464 bytes for a TargetSpec's 14 fields). The same names
  in the same order can share one table, and each dict then holds only its values (CPython's key-sharing
  dicts, PEP 412: an instance's dict is one when its class's attributes are set on it). The dict is rebuilt
  that way, with the same items in the same order, after its cached properties are computed, so that their
  names share the table too. A key added later is added as to any dict; where the interpreter cannot share,
  the dict is an ordinary one, and nothing else changes.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, TypeVar

from pydantic import BaseModel

MAX_FIELDS_SETS = 4096
MAX_LAYOUTS = 4096
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_LAYOUTS: dict[tuple[str, ...], type] = {}  # names in order: a class whose instances share their table of them
M = TypeVar("M", bound=BaseModel)


def compact(model: M) -> M:
    """`model`, it and its nested models each with the one `__pydantic_fields_set__` object of its set, and with
    its fields (cached properties included) and its extra fields each in a dict that shares its names."""
    names = model.__pydantic_fields_set__
    shared = _FIELDS_SETS.get(frozenset(names))
    if shared is None and len(_FIELDS_SETS) < MAX_FIELDS_SETS:
        shared = _FIELDS_SETS.setdefault(frozenset(names), names)
    if shared is not None and shared is not names:
        object.__setattr__(model, "__pydantic_fields_set__", shared)
    for value in list(model.__dict__.values()):
        for nested in value if isinstance(value, list) else (value,):
            if isinstance(nested, BaseModel):
                compact(nested)
    for attribute, value in vars(type(model)).items():
        if isinstance(value, cached_property):
            getattr(model, attribute)
    object.__setattr__(model, "__dict__", shared_names(model.__dict__))
    extra = model.__pydantic_extra__
    if extra:
        object.__setattr__(model, "__pydantic_extra__", shared_names(extra))
    return model


def shared_names(items: dict[str, Any]) -> dict[str, Any]:
    """`items` (the same items in the same order) in a dict that shares its table of names with every other one
    of those names; `items` itself past the bound, or when a name is not a plain attribute's (a string that
    does not start with two underscores)."""
    names = tuple(items)
    layout = _LAYOUTS.get(names)
    if layout is None:
        if len(_LAYOUTS) >= MAX_LAYOUTS or not all(type(n) is str and not n.startswith("__") for n in names):
            return items
        layout = _LAYOUTS.setdefault(names, type("Fields", (), {}))
    holder: Any = object.__new__(layout)
    for name, value in items.items():
        setattr(holder, name, value)
    shared: dict[str, Any] = holder.__dict__
    return shared
