"""One daemon, 10,000 file targets of 100 keys each at a 60 s interval, 0.1% of them changing per minute:
its average CPU (share of one core) and peak RSS, measured over five minutes.

    .venv/bin/python -m bench.daemon_scale [--targets 10000] [--keys 100] [--minutes 5] [--settle 2]
                                           [--apps 500] [--folder DIR] [--no-edit]

The daemon is a real `reconciler run` subprocess in dry-run on SQLite, with the default workers; 5% of the
targets carry standing drift. After its first full cycle (every target read, parsed, compared, classified,
drift recorded) the bench changes 0.1% of the live files each minute and samples /proc/PID every second:
CPU time (utime + stime; its child processes' included, running or ended) and VmRSS. The first --settle minutes
of it are the first cycle's wake, reported apart (the targets whose first pass fell off their slot take one pass
more to reach it, runtime/scheduler.py); the steady state is the --minutes after them, with its passes per target
and interval (1.00 when each target is passed once an interval). The baseline, in the
same run, is the CPU of that first full cycle over the fleet, i.e. what every minute would cost without
skipping unchanged targets. Throughout, /readyz is asked
every second and /metrics every 15 s (their slowest answers are printed per phase); at the end 1% of the targets'
desired state is edited (one manifest file in a hundred) and the bench times until each edited target has had
its full pass. Before the edit, /api/v1/status is read whole twice: its time, size and the RSS it costs.
--folder builds the fleet there (or takes one built there before and never run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

TICKS = os.sysconf("SC_CLK_TCK")
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the fleet of 100,000 is written in minutes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_cpu_seconds(pid: int) -> float:
    """CPU of the daemon's child processes: those that have ended (the workers that parse a large load's YAML)
    and those still running (the worker that parses the live files of a first cycle's batches)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ended = (int(fields[13]) + int(fields[14])) / TICKS
    running = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        for child in children:
            try:
                running += cpu_seconds(int(child))
            except (OSError, IndexError, ValueError):
                continue  # it ended between the two reads: its CPU is counted as ended from now on
    return ended + running


def process_cpu_seconds(pid: int) -> float:
    """The daemon's CPU and its child processes'."""
    return cpu_seconds(pid) + children_cpu_seconds(pid)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric(port: int, name: str, exclude: str = "\0") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name) and exclude not in line
    )


def target_document(i: int, wanted: dict[str, Any], apps: int) -> dict[str, Any]:
    """The manifest of the fleet's target number `i`, whose live file is ../live/tNNNNN.yaml."""
    environment = ("dev", "staging", "prod", "prod-eu")[i % 4]
    return {
        "kind": "Target",
        "metadata": {"name": f"t{i:05}", "environment": environment, "app": f"app{(i // 4) % apps:03}"},
        "spec": {"source": {"adapter": "file", "path": f"../live/t{i:05}.yaml"}, "desired": wanted, "interval": "60s"},
    }


def fleet(targets: int, keys: int, apps: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each target's live document and manifest; 5% of them want a value live does not have."""
    rng = random.Random(3)
    for i in range(targets):
        doc = {f"key{k:03}": f"value-{i}-{k}" for k in range(keys)}
        wanted = dict(doc)
        if rng.random() < 0.05:
            wanted["key000"] = "drifted"
        yield doc, target_document(i, wanted, apps)


def write_manifests(desired: Path, documents: list[dict[str, Any]]) -> None:
    for chunk in range(0, len(documents), 100):
        (desired / f"targets-{chunk:05}.yaml").write_text(yaml.dump_all(documents[chunk : chunk + 100], Dumper=DUMPER))
    (desired / "policy.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")


def build(folder: Path, targets: int, keys: int, apps: int = 500) -> tuple[Path, Path]:
    live, desired = folder / "live", folder / "desired"
    live.mkdir()
    desired.mkdir()
    documents = []
    for i, (doc, manifest) in enumerate(fleet(targets, keys, apps)):
        (live / f"t{i:05}.yaml").write_text(yaml.dump(doc, Dumper=DUMPER))
        documents.append(manifest)
    write_manifests(desired, documents)
    return live, desired


def fleet_folder(folder: Path | None, targets: int, keys: int, apps: int = 500) -> Path:
    """The fleet built in `folder` (a new temporary folder if None), or the one built there before."""
    if folder is not None and (folder / "live").is_dir():  # a fleet built before and never run
        return folder
    folder = folder or Path(tempfile.mkdtemp(prefix="reconciler-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    build(folder, targets, keys, apps)
    return folder


def start(
    folder: Path, live: Path, desired: Path, extra: dict[str, str] | None = None, name: str = "daemon"
) -> tuple[Any, int]:
    """The daemon over the fleet in `folder`, migrated, as a subprocess (its log `name`.log), and its HTTP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "RECONCILER_DESIRED_DIR": str(desired),
        "RECONCILER_DATABASE_URL": f"sqlite:///{folder / 'history.db'}",
        "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
        "RECONCILER_HTTP__PORT": str(port),
        "RECONCILER_LOG__LEVEL": "warning",
        **(extra or {}),
    }
    subprocess.run([sys.executable, "-m", "reconciler", "db", "upgrade"], env=env, check=True, capture_output=True)
    log = (folder / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "reconciler", "run"], env=env, stdout=log, stderr=log), port


def first_cycle(
    daemon: Any, port: int, targets: int, on_loaded: Callable[[], object] | None = None
) -> tuple[float, float, tuple[float, float] | None]:
    """Wait until every target has had its first (full, recorded) pass: (its wall seconds, the CPU seconds, and
    the wall and CPU seconds at which /readyz first said the desired state was loaded, within a second).
    `on_loaded` is called then."""
    started = time.monotonic()
    loaded: tuple[float, float] | None = None
    last_count = 0.0
    while True:
        time.sleep(1)
        try:
            if loaded is None and desired_loaded(port):
                loaded = time.monotonic() - started, cpu_seconds(daemon.pid)
                if on_loaded is not None:
                    on_loaded()
            if time.monotonic() - last_count >= 5:
                last_count = time.monotonic()
                if metric(port, "reconciler_passes_total", exclude='result="unchanged"') >= targets:
                    break
        except OSError:
            pass
        if daemon.poll() is not None or time.monotonic() - started > 1800:
            raise SystemExit("the daemon did not finish its first cycle")
    return time.monotonic() - started, cpu_seconds(daemon.pid), loaded


def desired_loaded(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:  # 503 until ready: its body says why
        body = exc.read()
    return bool(json.loads(body).get("desired_loaded"))


def steady(
    daemon: Any, port: int, live: Path, targets: int, minutes: float, settle: float
) -> tuple[Window, Window, float, int]:
    """Change 0.1% of the live files a minute for `settle` minutes, then for `minutes` more: the two windows of
    `paced`, the peak RSS (MB) and the changes per minute."""
    rng = random.Random(5)
    per_minute = max(1, targets // 1000)
    peak = rss_mb(daemon.pid)

    def change() -> None:
        for i in rng.sample(range(targets), per_minute):
            path = live / f"t{i:05}.yaml"
            path.write_text(path.read_text().replace("value-", f"v{int(time.time())}-", 1))

    def sample() -> None:
        nonlocal peak
        peak = max(peak, rss_mb(daemon.pid))

    def mark() -> Mark:
        return Mark(
            time.monotonic(), {"daemon": process_cpu_seconds(daemon.pid)}, metric(port, "reconciler_passes_total")
        )

    wake, window = paced(minutes, settle, targets, change, sample, mark)
    return wake, window, peak, per_minute


def paced(
    minutes: float,
    settle: float,
    targets: int,
    change: Callable[[], None],
    sample: Callable[[], None],
    mark: Callable[[], Mark],
) -> tuple[Window, Window]:
    """`change()` once a minute and `sample()` once a second, for `settle` minutes and then `minutes` more: the
    first window is the first cycle's wake (a target whose first pass fell off its slot takes one pass more to
    reach it, runtime/scheduler.py, and the passes delayed in the first cycle come due in bunches), the second
    the steady state."""
    marks = [mark()]
    t0 = marks[0].at
    next_change, end = t0, t0 + (settle + minutes) * 60
    while time.monotonic() < end:
        if len(marks) == 1 and time.monotonic() >= t0 + settle * 60:
            marks.append(mark())
        if time.monotonic() >= next_change:
            change()
            next_change += 60
        sample()
        time.sleep(1)
    while len(marks) < 3:  # the wake's end, had the loop ended before it
        marks.append(mark())
    return Window(marks[0], marks[1], targets), Window(marks[1], marks[2], targets)


class Mark(NamedTuple):
    """When, the CPU of each process measured (its children's included), and the passes so far of them all."""

    at: float
    cpu: dict[str, float]
    passes: float


class Window:
    """Between two marks: wall seconds, each process's CPU seconds and share of a core, and the passes per
    target and interval."""

    def __init__(self, start: Mark, end: Mark, targets: int) -> None:
        self.wall = end.at - start.at
        self.cpu = {name: end.cpu[name] - start.cpu[name] for name in start.cpu}
        self.shares = {name: cpu / self.wall if self.wall > 0 else 0.0 for name, cpu in self.cpu.items()}
        intervals = self.wall / 60
        self.passes = (end.passes - start.passes) / targets / intervals if intervals > 0 else 0.0


class Prober:
    """Asks each path every so often (by default /readyz every second and /metrics every 15 s, as Prometheus
    would), each from its own thread so that a slow answer delays no other path's asks, in the background; keeps
    every answer's time and how many got none within 10 s or were refused, apart from those refused before the
    daemon listened at all (the interpreter starting: the daemon listens before it loads the desired state)."""

    EVERY = {"/readyz": 1.0, "/metrics": 15.0}

    def __init__(self, port: int, every: dict[str, float] | None = None) -> None:
        self.port = port
        self.every = dict(every or self.EVERY)
        self.answers: dict[str, list[float]] = {path: [] for path in self.every}
        self.unanswered = dict.fromkeys(self.every, 0)
        self.before_listening = dict.fromkeys(self.every, 0)
        self.listened = False
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(path,), daemon=True) for path in self.every]

    def __enter__(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    @property
    def slowest(self) -> dict[str, float]:
        return {path: max(answers, default=0.0) for path, answers in self.answers.items()}

    def reset(self) -> None:
        """Start counting afresh (after the first cycle, say)."""
        self.answers = {path: [] for path in self.every}
        self.unanswered = dict.fromkeys(self.every, 0)
        self.before_listening = dict.fromkeys(self.every, 0)

    def _ask(self, path: str) -> None:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                response.read()
        except urllib.error.HTTPError:  # /readyz says 503 while not ready: an answer all the same
            pass
        except OSError as exc:
            refused = isinstance(exc, ConnectionRefusedError) or isinstance(
                getattr(exc, "reason", None), ConnectionRefusedError
            )
            if refused and not self.listened:
                self.before_listening[path] += 1
            else:
                self.unanswered[path] += 1
            return
        self.listened = True
        self.answers[path].append(time.monotonic() - started)

    def _run(self, path: str) -> None:
        period = self.every[path]
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._ask(path)
            due = max(due + period, time.monotonic())  # a slow answer is not followed by a burst to catch up

    def summary(self) -> str:
        return ", ".join(
            f"{path} slowest {slowest * 1000:.0f} ms ({self.unanswered[path]} unanswered"
            + (f"; {n} refused before the daemon listened" if (n := self.before_listening[path]) else "")
            + ")"
            for path, slowest in self.slowest.items()
        )


def collector(port: int) -> tuple[float, float, float, float]:
    """The daemon's full collections so far: (how many, their seconds, the longest's seconds, the walks of
    everything after a thaw); zeros when its collector policy is off."""
    try:
        return (
            metric(port, "reconciler_gc_full_collections_total"),
            metric(port, "reconciler_gc_full_collection_seconds_total"),
            metric(port, "reconciler_gc_longest_full_collection_seconds"),
            metric(port, "reconciler_gc_thaws_total"),
        )
    except (OSError, ValueError):
        return 0.0, 0.0, 0.0, 0.0


def collected(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    count, seconds, thaws = after[0] - before[0], after[1] - before[1], after[3] - before[3]
    return (
        f"collector: {count:.0f} full collections ({thaws:.0f} after a thaw), {seconds:.1f} s in all, "
        f"longest so far {after[2] * 1000:.0f} ms"
    )


def full_passes(port: int) -> float:
    return metric(port, "reconciler_passes_total", exclude='result="unchanged"')


def edit_desired(daemon: Any, port: int, desired: Path, offset: int = 0) -> tuple[float, float, float, int, float]:
    """Edit 1% of the targets' desired state (a key's value in one manifest file of every hundred, from the
    `offset`th: each offset below 100 edits other files) and wait until each edited target has had its full pass:
    (wall seconds, CPU seconds, full passes taken, edited, peak RSS MB meanwhile)."""
    files = sorted(desired.glob("targets-*.yaml"))[offset::100]
    edited = 0
    before, cpu0, t0 = full_passes(port), process_cpu_seconds(daemon.pid), time.monotonic()
    for file in files:
        text = file.read_text()
        edited += text.count("key001: value-")
        file.write_text(text.replace("key001: value-", "key001: edited-"))
    peak = rss_mb(daemon.pid)
    while full_passes(port) - before < edited:
        if daemon.poll() is not None or time.monotonic() - t0 > 1800:
            raise SystemExit("the daemon did not pass the edited targets")
        time.sleep(1)
        peak = max(peak, rss_mb(daemon.pid))
    return time.monotonic() - t0, process_cpu_seconds(daemon.pid) - cpu0, full_passes(port) - before, edited, peak


def status_answer(daemon: Any, port: int) -> tuple[float, int, float, float, float]:
    """Ask /api/v1/status (every target's last pass) once and read the whole answer, sampling the daemon's RSS
    every 50 ms meanwhile: (its seconds, its bytes, RSS before, the highest RSS while it was answered, RSS 10 s
    after it)."""
    before, highest = rss_mb(daemon.pid), 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal highest
        while not done.wait(0.05):
            highest = max(highest, rss_mb(daemon.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status", timeout=300) as response:
        size = len(response.read())
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    time.sleep(10)
    return seconds, size, before, max(highest, rss_mb(daemon.pid)), rss_mb(daemon.pid)


def stop(daemon: Any) -> None:
    daemon.terminate()
    daemon.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=2.0, help="minutes from the first cycle to the steady state")
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--folder", type=Path, help="build the fleet here, or take the one built here before")
    parser.add_argument("--no-edit", dest="edit", action="store_false", help="skip the desired-state edit phase")
    args = parser.parse_args()
    if args.minutes <= 0 or args.settle < 0:
        parser.error("--minutes must be above 0 and --settle not below 0")
    folder = fleet_folder(args.folder, args.targets, args.keys, args.apps)
    live, desired = folder / "live", folder / "desired"
    daemon, port = start(folder, live, desired)
    try:
        with Prober(port) as prober:
            first_wall, first_cpu, loaded = first_cycle(daemon, port, args.targets)
            print(
                f"first full cycle: {args.targets:,} targets in {first_wall:.0f} s wall (within 5 s), "
                f"{first_cpu:.1f} s CPU (+ {children_cpu_seconds(daemon.pid):.1f} s in worker processes), "
                f"peak RSS so far {rss_mb(daemon.pid):.0f} MB"
            )
            if loaded is not None:
                print(
                    f"  of it, until the desired state was loaded: {loaded[0]:.0f} s wall, {loaded[1]:.1f} s CPU; "
                    f"after: {first_wall - loaded[0]:.0f} s wall, {first_cpu - loaded[1]:.1f} s CPU"
                )
            gc_first = collector(port)
            print(f"  during it: {prober.summary()}; {collected((0.0, 0.0, 0.0, 0.0), gc_first)}")
            prober.reset()
            wake, window, peak, per_minute = steady(daemon, port, live, args.targets, args.minutes, args.settle)
            gc_before = collector(port)
            print(f"  steady state: {prober.summary()}; {collected(gc_first, gc_before)}")
            for ask in (1, 2):
                prober.reset()
                seconds, size, before, highest, after = status_answer(daemon, port)
                gc_asked = collector(port)
                print(
                    f"/api/v1/status, asked {ask}: {size / 1e6:.1f} MB in {seconds:.2f} s; RSS {before:.0f} MB before, "
                    f"{highest:.0f} MB at most while answering, {after:.0f} MB 10 s after; {prober.summary()}; "
                    f"{collected(gc_before, gc_asked)}"
                )
                gc_before = gc_asked
            if args.edit:
                prober.reset()
                edit_wall, edit_cpu, full, edited, edit_peak = edit_desired(daemon, port, desired)
                print(
                    f"desired edit of {edited:,} targets: all passed in {edit_wall:.0f} s wall, {edit_cpu:.1f} s CPU, "
                    f"{full:,.0f} full passes; peak RSS meanwhile {edit_peak:.0f} MB; {prober.summary()}; "
                    f"{collected(gc_before, collector(port))}"
                )
    finally:
        stop(daemon)
    per_minute_cpu = window.cpu["daemon"] / (window.wall / 60)
    if args.settle:
        print(
            f"the first cycle's wake, {wake.wall / 60:.1f} min: {wake.shares['daemon'] * 100:.2f}% of one core, "
            f"{wake.passes:.2f} passes per target and interval"
        )
    print(
        f"steady state over {window.wall / 60:.1f} min after it ({per_minute} live changes per minute, "
        f"{window.passes:.2f} passes per target and interval):"
    )
    print(f"  average CPU  {window.shares['daemon'] * 100:6.2f}% of one core   (issue 17: <= 8% at 100,000 targets)")
    print(f"  peak RSS     {peak:6.0f} MB              (issue 17: <= 1,200 MB at 100,000 targets)")
    print(
        f"  CPU per minute {per_minute_cpu:.2f} s vs the first full cycle's {first_cpu:.1f} s: "
        f"{per_minute_cpu / first_cpu:.3f}x"
    )


if __name__ == "__main__":
    main()
