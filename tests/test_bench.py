"""The benchmarks stay in step with the code they measure: each one imports (their runs are not tests)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_imports(name: str) -> None:
    """A benchmark that no longer imports (a module it uses moved) fails here, not on the day it is needed."""
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None)), f"bench.{name} has no main()"
