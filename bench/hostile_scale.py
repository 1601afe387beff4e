"""One target with 100,000 drifted keys: planned, recorded and reported, the way `reconciler plan` does it.

    .venv/bin/python -m bench.hostile_scale [--keys 100000] [--small 10000] [--repeat 3] [--no-gc-policy]

Each kind of drift gets its own fresh SQLite history (migrated, WAL) and one target whose live JSON file differs
from desired in every key: values changed (reversible: an action planned per key), keys only live (`prune: false`:
each reported, left alone) and keys only live under an escalating policy (a pending approval per key). A pass is
Reconciler.reconcile in dry-run (read, parse, compare, classify, plan, record the pass, its drift rows, actions and
approvals) followed by rendering the report as the CLI's table; best of `--repeat`. Python's garbage collector runs
under the policy every `reconciler` command installs (runtime/heap.py; `--no-gc-policy` leaves it as Python has it).
The baseline, measured in the same run, is the same pass over `--small` keys: the ratio of the time per key at
`--keys` to the time per key at `--small` is 1.0 when the work is linear (these were quadratic: 20,000 live-only
keys took 78 s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from reconciler.domain.run import Mode
from reconciler.observe import logging as logs
from reconciler.present import report
from reconciler.runtime import compose, heap
from reconciler.settings import load_settings
from reconciler.store import engine as engines
from reconciler.store import migrate

KINDS = {
    "changed": ("reversible", "{k}: {v}"),
    "live only (prune: false)": ("reversible", None),
    "live only, escalated": ("escalate", None),
}


def setup(folder: Path, keys: int, kind: str) -> None:
    default, _ = KINDS[kind]
    (folder / "live").mkdir()
    (folder / "desired").mkdir()
    live = {f"k{i}": i for i in range(keys)}
    desired = {f"k{i}": i + 1 for i in range(keys)} if kind == "changed" else {}
    (folder / "live" / "app.json").write_text(json.dumps({"svc": live}))
    (folder / "desired" / "target.yaml").write_text(
        "kind: Target\nmetadata: {name: app, environment: dev}\n"
        "spec:\n  source: {adapter: file, path: ../live/app.json}\n  prune: false\n"
        f"  desired: {json.dumps({'svc': desired})}\n---\n"
        f"kind: Policy\nmetadata: {{name: default}}\nspec: {{default: {default}}}\n"
    )


def one_pass(keys: int, kind: str) -> tuple[float, float, float]:
    """Seconds to plan and record, and to render the report, of one pass over `keys` drifted keys; and the CPU
    seconds of planning and recording (steadier than wall time on a busy machine)."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        setup(folder, keys, kind)
        url = f"sqlite:///{folder / 'history.db'}"
        migrate.upgrade(engines.create_engine(url))
        settings = load_settings(desired_dir=folder / "desired", database_url=url, file={"roots": [folder / "live"]})
        components = compose.build(settings)
        started, cpu = time.perf_counter(), time.process_time()
        result = components.reconciler.reconcile(None, mode=Mode.DRY_RUN, trigger="bench")
        recorded, cpu = time.perf_counter(), time.process_time() - cpu
        text = report.render_run(result, "table", settings.hmac_key())
        rendered = time.perf_counter()
        components.notifier.stop()
        drift = len(result.targets[0].classified)
        if drift != keys or len(text) < keys:
            raise SystemExit(f"{kind}: expected {keys} drift items, got {drift}: {result.targets[0].error}")
        return recorded - started, rendered - recorded, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-gc-policy",
        dest="gc_policy",
        action="store_false",
        help="leave Python's collector as it is (every `reconciler` command installs runtime/heap.py's policy)",
    )
    args = parser.parse_args()
    logs.configure("error", "json")
    if args.gc_policy:  # as `reconciler plan` does it (cli.main)
        gc_settings = load_settings().gc
        heap.install(gc_settings.freeze_after_s, gc_settings.thaw_growth)
    print(
        f"| drift | {args.small:,} keys: plan + record s | {args.keys:,} keys: plan + record s | "
        f"ratio per key | report s | ratio per key | {args.keys:,} keys: plan + record CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        small = [min(times) for times in zip(*(one_pass(args.small, kind) for _ in range(args.repeat)), strict=True)]
        big = [min(times) for times in zip(*(one_pass(args.keys, kind) for _ in range(args.repeat)), strict=True)]
        per_key = [(b / args.keys) / (s / args.small) for b, s in zip(big, small, strict=True)]
        cells = f"{small[0]:.2f} | **{big[0]:.2f}** | {per_key[0]:.2f} | {big[1]:.2f} | {per_key[1]:.2f} | {big[2]:.2f}"
        print(f"| {kind} | {cells} |")


if __name__ == "__main__":
    main()
