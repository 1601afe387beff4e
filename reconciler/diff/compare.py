"""Compare a desired document with an observed one, with the semantics DESIGN.md fixes (see
reconciler.diff.walk for how).

The walk runs compiled by mypyc when `make install` could build it (a C compiler is all it needs) and that
build was made from the walk.py in place; otherwise it runs as plain Python. Both give the same results
(the tests run both); the compiled walk is about twice as fast, and faster than merely visiting every leaf
in Python (bench/compare.py).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

from reconciler.diff import walk
from reconciler.diff.options import CompareOptions
from reconciler.domain.drift import Comparison

NATIVE_MODULE = "reconciler.diff._walk_native"


def _native_walker() -> Any:
    """The compiled Walker, if one was built from this very walk.py; None otherwise."""
    try:
        native = importlib.import_module(NATIVE_MODULE)
    except ImportError:
        return None
    digest = hashlib.sha256(Path(walk.__file__).read_bytes()).hexdigest()
    if getattr(native, "SOURCE_DIGEST", None) != digest:
        return None  # built from another version of walk.py: `make install` builds it again
    return native.Walker


_NATIVE = _native_walker()
Walker: Any = _NATIVE if _NATIVE is not None else walk.Walker
IMPLEMENTATION = "compiled" if _NATIVE is not None else "python"
_DEFAULT = CompareOptions()


def compare(desired: Any, observed: Any, options: CompareOptions | None = None, *, items: bool = True) -> Comparison:
    """Every difference between `desired` and `observed`, in desired's key order, then live-only keys; with
    `items` False, the leaf counts alone (no item is built: what a figure needs costs a third as much)."""
    walker = Walker(options or _DEFAULT, items)
    if type(desired) is dict and type(observed) is dict:
        ignore, secret = walker.start()
        if ignore or secret:
            walker.globbed((), desired, observed, ignore, secret)
        else:
            walker.plain((), desired, observed)
    else:
        walker.leaf((), desired, observed, secret=False)
    return Comparison(tuple(walker.items), walker.leaves, walker.differing)


__all__ = ["IMPLEMENTATION", "CompareOptions", "compare"]
