"""The README's metrics table against what /metrics serves at start-up: names, label names, the label values
it lists, and a series for each from the first scrape (so alerts see them)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from reconciler.desired.loader import load
from reconciler.observe.metrics import Metrics
from tests.conftest import REPO

ROW = re.compile(r"^\| (`reconciler_[^|]*) \| ([^|]*) \|$", re.M)


def documented() -> dict[str, tuple[list[str], dict[str, set[str]]]]:
    """Each documented metric: its label names, and the values listed for a label (`result (clean, …)`)."""
    table = README.split("Metrics, every series created at start-up", 1)[1].split("\n\n", 2)[1]
    found: dict[str, tuple[list[str], dict[str, set[str]]]] = {}
    for names_cell, labels_cell in ROW.findall(table):
        names = [n for n in re.findall(r"`(reconciler_[a-z_*]+)`", names_cell) if "*" not in n]
        labels = [c.strip() for c in re.split(r",\s*(?![^(]*\))", labels_cell)]
        for name in names:
            label_names: list[str] = []
            values: dict[str, set[str]] = {}
            for cell in labels:
                if cell in ("—", ""):
                    continue
                label, _, listed = cell.partition(" (")
                label_names.append(label)
                if listed:
                    values[label] = {v.strip() for v in listed.rstrip(")").split(",")}
            found[name] = (label_names, values)
    return found


README = (REPO / "README.md").read_text()


def served() -> dict[str, list[dict[str, str]]]:
    """Families and their series' labels as a daemon's /metrics serves them once the desired state is loaded
    (what runtime/daemon.py does then)."""
    metrics = Metrics()
    state = load(REPO / "examples" / "desired")
    metrics.init_targets(
        ((t.name, t.environment, t.metadata.app or "") for t in state.targets.values()),
        {(t.spec.source.adapter, t.environment) for t in state.targets.values()},
    )
    metrics.set_desired_version(state.version.digest, state.version.git_commit)
    text = metrics.render()[0].decode()
    families: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        families[name] = [s.labels for s in family.samples if not s.name.endswith(("_created", "_bucket"))]
    return families


def test_the_readme_metrics_are_served_with_their_labels() -> None:
    """Every metric the README lists is served, with exactly the labels it names and the label values it lists,
    and has a series from the first scrape."""
    docs, live = documented(), served()
    assert len(docs) > 20
    problems = []
    for name, (labels, values) in docs.items():
        if name not in live:
            problems.append(f"{name}: not served")
            continue
        series = live[name]
        if not series:
            problems.append(f"{name}: no series at start-up")
            continue
        have = sorted({k for s in series for k in s if k not in ("le", "quantile")})
        if have != sorted(labels):
            problems.append(f"{name}: labels {have}, documented {sorted(labels)}")
        for label, listed in values.items():
            seen = {s[label] for s in series if label in s}
            if seen != listed:
                problems.append(f"{name}: {label} values {sorted(seen)}, documented {sorted(listed)}")
    assert not problems, "\n".join(problems)
