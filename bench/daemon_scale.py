"""One daemon, 10,000 file targets of 100 keys each at a 60 s interval, 0.1% of them changing per minute:
its average CPU (share of one core) and peak RSS, measured over five minutes; then an edit of the desired
state that touches 1% of the targets, and how long until those are reconciled.

    .venv/bin/python -m bench.daemon_scale [--targets 10000] [--keys 100] [--minutes 5]

The daemon is a real `reconciler run` subprocess in dry-run on SQLite, with the default workers; 5% of the
targets carry standing drift. After its first full cycle (every target read, parsed, compared, classified,
drift recorded) the bench changes 0.1% of the live files each minute and samples /proc/PID every second:
CPU time (utime + stime) and VmRSS. The baseline, in the same run, is the CPU of that first full cycle over
the fleet, i.e. what every minute would cost without skipping unchanged targets.

Throughout, a prober asks /readyz every second and /metrics every 15 s, and keeps their slowest answers. At the end,
1% of the targets get a new desired value (in their manifests, a key's value changes, so live drifts from
it): the bench waits until the daemon counts them all as drifting and reports the wall time, the daemon's
CPU and how many full (not unchanged) passes that took: one per edited target when the other 99% keep
their memo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

TICKS = os.sysconf("SC_CLK_TCK")
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: building 100,000 files takes minutes less


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric(port: int, name: str, exclude: str = "\0", include: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and exclude not in line and include in line
    )


class Prober(threading.Thread):
    """Asks /readyz every second and /metrics every 15 s, and keeps the slowest answer of each (and failures)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.slowest = {"readyz": 0.0, "metrics": 0.0}
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self.stop.wait(1.0):
            tick += 1
            # /readyz every second; /metrics every 15 s, as Prometheus scrapes (its render is daemon CPU too)
            for name in ("readyz", "metrics") if tick % 15 == 0 else ("readyz",):
                started = time.monotonic()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{name}", timeout=10) as response:
                        response.read()
                except urllib.error.HTTPError:
                    pass  # /readyz answers 503 until ready: an answer all the same
                except OSError:
                    self.failures += 1
                    continue
                self.slowest[name] = max(self.slowest[name], time.monotonic() - started)


def build(folder: Path, targets: int, keys: int) -> tuple[Path, Path, set[int]]:
    live, desired = folder / "live", folder / "desired"
    live.mkdir()
    desired.mkdir()
    rng = random.Random(3)
    documents = []
    drifting: set[int] = set()
    for i in range(targets):
        doc = {f"key{k:03}": f"value-{i}-{k}" for k in range(keys)}
        (live / f"t{i:05}.yaml").write_text(yaml.dump(doc, Dumper=DUMPER))
        wanted = dict(doc)
        if rng.random() < 0.05:
            wanted["key000"] = "drifted"
            drifting.add(i)
        documents.append(
            {
                "kind": "Target",
                "metadata": {
                    "name": f"t{i:05}",
                    "environment": ("dev", "staging", "prod", "prod-eu")[i % 4],
                    "app": f"app{(i // 4) % 500:03}",
                },
                "spec": {
                    "source": {"adapter": "file", "path": f"../live/t{i:05}.yaml"},
                    "desired": wanted,
                    "interval": "60s",
                },
            }
        )
    for chunk in range(0, targets, 100):
        (desired / f"targets-{chunk:05}.yaml").write_text(yaml.dump_all(documents[chunk : chunk + 100], Dumper=DUMPER))
    (desired / "policy.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    return live, desired, drifting


def edit_desired(desired: Path, targets: int, share: float) -> int:
    """Give `share` of the targets (whole manifest files of 100, a few spread over the folder) a new desired value
    for one key, so that their live state drifts from it; how many targets changed."""
    files = sorted(desired.glob("targets-*.yaml"))
    step = max(1, round(1 / share))
    edited = 0
    for path in files[::step]:
        documents = list(yaml.safe_load_all(path.read_text()))
        for doc in documents:
            doc["spec"]["desired"]["key001"] = "edited"
        path.write_text(yaml.safe_dump_all(documents))
        edited += len(documents)
    return edited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="reconciler-scale-"))
    live, desired, _ = build(folder, args.targets, args.keys)
    port = 19000 + os.getpid() % 1000
    env = {
        **os.environ,
        "RECONCILER_DESIRED_DIR": str(desired),
        "RECONCILER_DATABASE_URL": f"sqlite:///{folder / 'history.db'}",
        "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
        "RECONCILER_HTTP__PORT": str(port),
        "RECONCILER_LOG__LEVEL": "warning",
    }
    subprocess.run([sys.executable, "-m", "reconciler", "db", "upgrade"], env=env, check=True, capture_output=True)
    log = (folder / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler", "run"], env=env, stdout=log, stderr=log)
    prober = Prober(port)
    prober.start()
    try:
        started = time.monotonic()
        while True:  # the first full cycle: every target has had its first (full, recorded) pass
            time.sleep(5)
            try:
                if metric(port, "reconciler_passes_total", exclude='result="unchanged"') >= args.targets:
                    break
            except OSError:
                pass
            if daemon.poll() is not None or time.monotonic() - started > 1800:
                raise SystemExit("the daemon did not finish its first cycle")
        first_cpu = cpu_seconds(daemon.pid)
        first_wall = time.monotonic() - started
        print(
            f"first full cycle: {args.targets:,} targets in {first_wall:.0f} s wall (within 5 s), {first_cpu:.1f} s CPU"
        )

        rng = random.Random(5)
        per_minute = max(1, args.targets // 1000)
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        peak = rss_mb(daemon.pid)
        next_change = t0
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            if time.monotonic() >= next_change:
                for i in rng.sample(range(args.targets), per_minute):
                    path = live / f"t{i:05}.yaml"
                    path.write_text(path.read_text().replace("value-", f"v{int(time.time())}-", 1))
                next_change += 60
            peak = max(peak, rss_mb(daemon.pid))
            time.sleep(1)
        cpu = cpu_seconds(daemon.pid) - cpu0
        wall = time.monotonic() - t0
        passes = metric(port, "reconciler_passes_total")
        share = cpu / wall
        per_minute_cpu = cpu / (wall / 60)
        print(f"steady state over {wall / 60:.1f} min ({per_minute} live changes per minute, {passes:,.0f} passes):")
        print(f"  average CPU  {share * 100:6.2f}% of one core   (target <= 8% at 100,000 targets)")
        print(f"  peak RSS     {peak:6.0f} MB              (target <= 1,200 MB at 100,000 targets)")
        print(
            f"  CPU per minute {per_minute_cpu:.2f} s vs the first full cycle's {first_cpu:.1f} s: "
            f"{per_minute_cpu / first_cpu:.3f}x",
            flush=True,
        )
        edit = edit_change(port, daemon.pid, desired, args.targets)
        print(
            f"desired edit of {edit['edited']:,} targets (1%): all reconciled in {edit['wall']:.0f} s wall, "
            f"{edit['cpu']:.1f} s CPU, {edit['full']:,.0f} full passes (target: within one interval, 60 s); "
            f"peak RSS {max(peak, rss_mb(daemon.pid)):.0f} MB"
        )
    finally:
        prober.stop.set()
        daemon.terminate()
        try:
            daemon.wait(120)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        print(
            f"slowest answers throughout: /readyz {prober.slowest['readyz'] * 1000:.0f} ms, "
            f"/metrics {prober.slowest['metrics'] * 1000:.0f} ms, {prober.failures} failed or over 10 s "
            "(target <= 200 ms)"
        )


def edit_change(port: int, pid: int, desired: Path, targets: int) -> dict[str, float]:
    """Edit 1% of the targets' desired state; wait until each of them has its new drift item (one reversible
    item more per edited target: live changes have stopped, so nothing else moves that sum)."""
    reversible = 'class="reversible"'
    before = metric(port, "reconciler_drift_items", include=reversible)
    full_before = metric(port, "reconciler_passes_total", exclude='result="unchanged"')
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    edited = edit_desired(desired, targets, 0.01)
    while True:
        try:
            if metric(port, "reconciler_drift_items", include=reversible) >= before + edited:
                break
        except OSError:
            pass  # no answer within 10 s (the prober counts those)
        if time.monotonic() - t0 > 1800:
            raise SystemExit("the edited targets were not reconciled within 30 minutes")
        time.sleep(0.5)
    full = metric(port, "reconciler_passes_total", exclude='result="unchanged"') - full_before
    return {"edited": edited, "wall": time.monotonic() - t0, "cpu": cpu_seconds(pid) - cpu0, "full": full}


if __name__ == "__main__":
    main()
