"""One empty list and one empty dict that every manifest model without items of a field shares.

A target's models default seven fields to an empty list or dict (unset, ignore, secrets, normalize,
environment_specific, list_keys, labels): 520 bytes a target with each its own, a sixth of what a loaded target
takes, and a replica loads every target of the desired state. The models are frozen, and nothing changes a
model's containers in place; these two refuse it, so that a change by mistake fails where it is made instead
of reaching every target that shares them.
"""

from __future__ import annotations

from typing import Any, NoReturn


def _refuse(self: object, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"a model's empty {type(self).__mro__[1].__name__} is shared and cannot change")


class _NoItems(list[Any]):
    __slots__ = ()
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __copy__(self) -> list[Any]:  # a copy is the caller's own, to change: an ordinary list
        return []

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return []


class _NoEntries(dict[Any, Any]):
    __slots__ = ()
    update = pop = popitem = clear = setdefault = _refuse
    __setitem__ = __delitem__ = __ior__ = _refuse

    def __copy__(self) -> dict[Any, Any]:
        return {}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return {}


NO_ITEMS: list[Any] = _NoItems()
NO_ENTRIES: dict[Any, Any] = _NoEntries()


def no_items() -> list[Any]:
    """A field's default: the shared empty list (pydantic copies a default value, never a factory's)."""
    return NO_ITEMS


def no_entries() -> dict[Any, Any]:
    """A field's default: the shared empty dict."""
    return NO_ENTRIES
