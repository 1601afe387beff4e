"""A desired-state edit at scale, in-process: the fleet of bench.daemon_scale (100,000 targets of 100 keys in
1,000 manifest files), loaded as the daemon's DesiredSource loads it; then 1% of the targets edited (a key's
value in 10 of the files) and reloaded.

    .venv/bin/python -m bench.desired_reload [--targets 100000] [--keys 100] [--tree PATH ...]

Each tree (a checkout of reconciler; default: this one) is measured in a subprocess of its own, one after the
other over the same folder: the CPU seconds (time.process_time) of the first load, of the reload after the
edit and of a look that finds nothing changed; and the peak RSS of the process during the first load and during
the reload alone (VmHWM, reset through /proc/self/clear_refs before the reload), the state before the edit
held meanwhile, as the daemon holds it; and the RSS the loaded state keeps (VmRSS once the load's garbage is
collected). Give main's checkout and this one as two --tree to compare them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench import daemon_scale

EDITED_FILES = 10

# Run in the subprocess, with the tree to measure first on sys.path.
CHILD = textwrap.dedent(
    """
    import gc, json, sys, time
    from pathlib import Path
    import reconciler
    from reconciler.desired.source import DesiredSource

    def status(field="VmHWM:"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return 0.0

    hwm = status

    desired, edited = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    source = DesiredSource(desired)
    cpu = time.process_time()
    first = source.current()
    load_cpu, load_peak = time.process_time() - cpu, hwm()
    gc.collect()
    kept = status("VmRSS:")  # what the loaded state holds, once the load's garbage is gone
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
    texts = [p.read_text() for p in edited]
    try:
        for path, text in zip(edited, texts):
            path.write_text(text.replace("key001: value-", "key001: edited-"))
        cpu = time.process_time()
        second = source.current()
        reload_cpu, reload_peak = time.process_time() - cpu, hwm()
        changed = sum(1 for name, target in second.targets.items() if first.targets.get(name) is not target)
        assert second.version != first.version
        cpu = time.process_time()
        source.current()
        source.current()
        idle_cpu = (time.process_time() - cpu) / 2
    finally:
        for path, text in zip(edited, texts):
            path.write_text(text)
    print(json.dumps({
        "targets": len(first.targets), "load_cpu": load_cpu, "load_peak_mb": load_peak, "kept_mb": kept,
        "reload_cpu": reload_cpu, "reload_peak_mb": reload_peak, "changed": changed, "idle_cpu": idle_cpu,
        "code": reconciler.__file__,
    }))
    """
)


def build(folder: Path, targets: int, keys: int, apps: int = 500) -> Path:
    """bench.daemon_scale's desired state (the live files left out: a load never reads them)."""
    desired = folder / "desired"
    desired.mkdir()
    daemon_scale.write_manifests(desired, [manifest for _, manifest in daemon_scale.fleet(targets, keys, apps)])
    return desired


def measure(tree: Path, desired: Path) -> dict[str, Any]:
    files = sorted(desired.glob("targets-*.yaml"))
    edited = [str(files[i * len(files) // EDITED_FILES]) for i in range(EDITED_FILES)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(  # in the tree: `-c` puts the working folder first on the path
        [sys.executable, "-c", CHILD, str(desired), *edited],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return child_result(tree, done)


def child_result(tree: Path, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON a bench's child printed last, once it is sure the child ran and measured `tree`'s code."""
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["code"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: the code measured was {result['code']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to measure (repeatable)")
    parser.add_argument("--folder", type=Path, help="a folder built by an earlier run (its desired/ is reused)")
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    if args.folder is not None and (args.folder / "desired").is_dir():
        desired = args.folder / "desired"
    else:
        folder = args.folder or Path(tempfile.mkdtemp(prefix="reconciler-reload-"))
        folder.mkdir(parents=True, exist_ok=True)
        desired = build(folder, args.targets, args.keys)
    print(f"desired state: {desired} ({args.targets:,} targets x {args.keys} keys); {EDITED_FILES} files edited")
    for tree in trees:
        r = measure(tree, desired)
        print(
            f"{tree}: first load {r['load_cpu']:.1f} s CPU, peak RSS {r['load_peak_mb']:.0f} MB, "
            f"RSS after it {r['kept_mb']:.0f} MB; "
            f"reload after the edit {r['reload_cpu']:.2f} s CPU, peak RSS {r['reload_peak_mb']:.0f} MB, "
            f"{r['changed']:,} targets new objects; a look with nothing changed {r['idle_cpu'] * 1000:.0f} ms CPU"
        )


if __name__ == "__main__":
    main()
