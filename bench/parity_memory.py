"""What the daemon's environment parity keeps per target, in process: bench.daemon_scale's fleet documents (100
keys, apps of four environments that differ at every key) read once by a ParityWatch, and the memory that stays
allocated afterwards (tracemalloc), over the number of targets. Then, without tracemalloc, the CPU of parity
upkeep for a changed document and for an unchanged pass, and of a full /api/v1/parity snapshot.

    .venv/bin/python -m bench.parity_memory [--targets 2000]

The first documents are parsed while tracemalloc traces, as the daemon's passes parse them: what of them stays
allocated once the pass is done is what parity keeps.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import structlog
import yaml

from bench import daemon_scale
from reconciler.desired.source import DesiredSource
from reconciler.domain.clock import SystemClock
from reconciler.domain.observed import Observed
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.engine.gate import ModeDecision
from reconciler.engine.outcome import PassOutcome
from reconciler.engine.parity_watch import ParityWatch
from reconciler.observe.parity import ParityStates

DECISION = ModeDecision(Mode.DRY_RUN)


def feed(watch: ParityWatch, state: DesiredState, documents: dict[str, dict[str, Any]], fingerprint: str) -> float:
    """Each document read and its pass done, as the daemon's adapters and effects do: CPU seconds."""
    started = time.process_time()
    for name, document in documents.items():
        target = state.targets[name]
        watch.read(target, Observed(fingerprint, name, document=document))
        watch.pass_done(PassOutcome(target, DECISION), None, state)  # type: ignore[arg-type]  # parity reads no run
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=2_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))  # one line per app
    live, desired = daemon_scale.build(
        Path(tempfile.mkdtemp(prefix="parity-memory-")), args.targets, 100, args.targets // 4
    )
    state = DesiredSource(desired).current()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    texts = {path.stem: path.read_text() for path in sorted(live.iterdir())}
    changed = {name: yaml.load(text.replace("value-", "v2-", 1), Loader=loader) for name, text in texts.items()}
    watch = ParityWatch(ParityStates(), lambda event: None, SystemClock())
    watch.load(state)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for name, text in texts.items():
        feed(watch, state, {name: yaml.load(text, Loader=loader)}, "1")
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"kept after every target's first read: {kept / 1e6:.1f} MB, {kept / args.targets / 1024:.1f} KiB per target")

    some = dict(list(changed.items())[::20])  # 5%, baselines among them as often as any other environment
    cpu = feed(watch, state, some, "2")
    print(f"a changed document: {cpu * 1000 / len(some):.2f} ms CPU (its pairs compared again)")
    outcomes = [PassOutcome(state.targets[name], DECISION, unchanged=True) for name in texts]
    started = time.process_time()
    for outcome in outcomes:
        watch.pass_done(outcome, None, state)  # type: ignore[arg-type]
    cpu = time.process_time() - started
    print(f"an unchanged pass: {cpu * 1e6 / len(outcomes):.1f} us CPU")
    started = time.process_time()
    pairs = len(watch.snapshot().results)
    print(f"a snapshot of every app (/api/v1/parity): {time.process_time() - started:.2f} s CPU for {pairs:,} pairs")


if __name__ == "__main__":
    main()
