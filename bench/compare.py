"""Compare speed and memory against the walk-once lower bound (and DeepDiff), measured in the same run.

    .venv/bin/python -m bench.compare [--sizes 1000,10000,100000,1000000] [--deepdiff-max 100000]

The lower bound visits every leaf of both documents once and does nothing else; any comparison has to do
at least that. Documents are nested maps (sections of sub-sections of scalar leaves of mixed types) with
1% of the leaves changed. Baseline and compare run alternately and each figure is the median of its runs.
compare() uses the compiled walk when `make install` built it; the plain-Python walk is timed beside it.
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from reconciler.diff import compare as comparing
from reconciler.diff import walk
from reconciler.diff.compare import compare

try:  # the comparison baseline the issue names; installed with the project's dev extra
    from deepdiff import DeepDiff
except ImportError:  # pragma: no cover
    DeepDiff = None


def make_document(leaves: int, seed: int = 1) -> dict[str, Any]:
    """About `leaves` scalar leaves, 10 per innermost map, three levels deep."""
    rng = random.Random(seed)
    doc: dict[str, Any] = {}
    made = 0
    section = 0
    while made < leaves:
        inner: dict[str, Any] = {}
        for sub in range(10):
            leaf: dict[str, Any] = {}
            for k in range(10):
                kind = (made + k) % 4
                leaf[f"key_{k}"] = (
                    rng.randint(0, 10**6)
                    if kind == 0
                    else f"value-{rng.randint(0, 10**6)}"
                    if kind == 1
                    else rng.random()
                    if kind == 2
                    else bool(k % 2)
                )
            inner[f"sub_{sub}"] = leaf
            made += 10
            if made >= leaves:
                break
        doc[f"section_{section}"] = inner
        section += 1
    return doc


def changed_copy(doc: dict[str, Any], fraction: float, seed: int = 2) -> tuple[dict[str, Any], int]:
    rng = random.Random(seed)
    other = copy.deepcopy(doc)
    paths = [(s, u, k) for s, sub in other.items() for u, leaf in sub.items() for k in leaf]
    picked = rng.sample(paths, max(1, int(len(paths) * fraction)))
    for s, u, k in picked:
        value = other[s][u][k]
        other[s][u][k] = "changed" if not isinstance(value, str) else value + "!"
    return other, len(picked)


def walk_once(a: Any, b: Any) -> int:
    """The lower bound: touch every leaf of both documents once."""

    def walk(node: Any) -> int:
        count = 0
        for value in node.values():
            if type(value) is dict:
                count += walk(value)
            else:
                count += 1
        return count

    return walk(a) + walk(b)


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_s(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeat))


def interleaved(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Median times of each, run in turn so that all see the same machine (caches, other load)."""
    rounds = [[timed(fn) for fn in fns] for _ in range(repeat)]
    return [statistics.median(r[i] for r in rounds) for i in range(len(fns))]


def pure_python(desired: Any, observed: Any) -> Any:
    """compare() on the plain-Python walk, whichever walk compare() itself uses."""
    chosen = comparing.Walker
    comparing.Walker = walk.Walker
    try:
        return compare(desired, observed)
    finally:
        comparing.Walker = chosen


def deep_size(doc: Any) -> int:
    """Bytes the document's objects take (containers, keys and leaves), shared objects counted once."""
    seen: set[int] = set()
    total = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        total += sys.getsizeof(node)
        if type(node) is dict:
            stack.extend(node.keys())
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--deepdiff-max", type=int, default=100_000, help="largest size DeepDiff is run at")
    args = parser.parse_args()
    print(f"compare() runs the {comparing.IMPLEMENTATION} walk; `python` is the plain-Python walk, for reference")
    heads = ("leaves", "walk-once s", "compare s", "ratio", "python s", "ratio", "drift", "deepdiff s", "speed-up")
    widths = (9, 12, 10, 6, 9, 6, 6, 11, 9)
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for size in (int(s) for s in args.sizes.split(",")):
        desired = make_document(size)
        observed, changed = changed_copy(desired, 0.01)
        repeat = 201 if size <= 10_000 else 31 if size <= 100_000 else 9
        base, ours, python = interleaved(
            [
                lambda d=desired, o=observed: walk_once(d, o),
                lambda d=desired, o=observed: compare(d, o),
                lambda d=desired, o=observed: pure_python(d, o),
            ],
            repeat,
        )
        found = len(compare(desired, observed).items)
        assert found == changed == len(pure_python(desired, observed).items), (found, changed)
        dd = ""
        speedup = ""
        if size <= args.deepdiff_max:
            if DeepDiff is None:
                dd = "n/a"
            else:
                took = median_s(lambda d=desired, o=observed: DeepDiff(d, o), 1 if size >= 100_000 else 3)
                dd, speedup = f"{took:.3f}", f"{took / ours:.0f}x"
        print(
            f"{size:>9} {base:>12.4f} {ours:>10.4f} {ours / base:>6.2f} {python:>9.4f} {python / base:>6.2f} "
            f"{found:>6} {dd:>11} {speedup:>9}"
        )
    size = max(int(s) for s in args.sizes.split(","))
    desired = make_document(size)
    observed, _ = changed_copy(desired, 0.01)
    documents = deep_size(desired) + deep_size(observed)
    tracemalloc.start()
    compare(desired, observed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"memory at {size} leaves: documents {documents / 2**20:.1f} MiB, compare's peak allocations "
        f"{peak / 2**20:.2f} MiB = {peak / documents:.3f}x the documents (so {1 + peak / documents:.2f}x in all)"
    )


if __name__ == "__main__":
    main()
