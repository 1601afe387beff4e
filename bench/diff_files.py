"""`reconciler diff` of two JSON files end to end, against parsing both files with the standard library alone,
measured in the same run.

    .venv/bin/python -m bench.diff_files [--leaves 1000000] [--repeat 5] [--changed 0.01]

Both files hold about `--leaves` scalar leaves (bench.compare's documents: nested maps of mixed types), with
`--changed` of the leaves different. The baseline reads and `json.load`s both files. The diff is the
`reconciler diff A B` command itself, run in this process (its arguments parsed, both files read, parsed and
checked, compared, the report rendered to /dev/null); the subprocess figure adds the interpreter's start and
reconciler's imports, once. Baseline and diff run alternately; each figure is the median of its runs, and
the fastest run of each is shown too (on a busy machine the fastest runs are the steadier ratio).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.compare import changed_copy, make_document
from reconciler.cli import app
from reconciler.diff import compare as comparing


def parse_both(a: Path, b: Path) -> None:
    for path in (a, b):
        with path.open("rb") as f:
            json.load(f)


def diff_in_process(a: Path, b: Path, fmt: str) -> int:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        try:
            app(["diff", str(a), str(b), "--format", fmt], standalone_mode=False)
        except SystemExit as exc:  # typer.Exit inside standalone_mode=False returns; SystemExit is a guard
            return int(exc.code or 0)
    return 0


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        a, b = Path(folder, "a.json"), Path(folder, "b.json")
        doc = make_document(args.leaves)
        other, changed = changed_copy(doc, args.changed)
        a.write_text(json.dumps(doc, indent=1))
        b.write_text(json.dumps(other, indent=1))
        del doc, other
        size_mib = (a.stat().st_size + b.stat().st_size) / 2**20
        print(
            f"{args.leaves:,} leaves per file, {changed:,} changed, {size_mib:.1f} MiB in all; "
            f"walk: {comparing.IMPLEMENTATION}"
        )
        rows = []
        for fmt in ("table", "json"):
            base, diff = [], []
            for _ in range(args.repeat):
                base.append(timed(parse_both, a, b))
                diff.append(timed(diff_in_process, a, b, fmt))
            rows.append((fmt, statistics.median(base), statistics.median(diff), min(base), min(diff)))
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "diff", str(a), str(b)], capture_output=True, check=False
        )
        spawned = time.perf_counter() - start
        assert done.returncode == 2, done.stderr.decode()
    print("| output | json.load both s | reconciler diff s | ratio of medians | fastest runs s | ratio of fastest |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt, base_s, diff_s, base_min, diff_min in rows:
        print(
            f"| {fmt} | {base_s:.3f} | {diff_s:.3f} | **{diff_s / base_s:.2f}** | {base_min:.3f} / {diff_min:.3f} "
            f"| {diff_min / base_min:.2f} |"
        )
    print(f"subprocess `reconciler diff A B` (table), once: {spawned:.3f} s, {spawned / rows[0][1]:.2f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
