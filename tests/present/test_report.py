from __future__ import annotations

from pathlib import Path

from reconciler.desired.loader import load
from reconciler.domain.drift import Classified, DriftItem
from reconciler.domain.manifest import DriftClass, DriftOp
from reconciler.domain.paths import MISSING
from reconciler.domain.run import Mode, RunStatus
from reconciler.engine.gate import ModeDecision
from reconciler.engine.outcome import PassOutcome
from reconciler.present.report import target_dict
from reconciler.remediate.planner import TargetPlan


def _report(tmp_path: Path, keys: int) -> PassOutcome:
    (tmp_path / "t.yaml").write_text(
        "kind: Target\nmetadata: {name: t}\nspec:\n  source: {adapter: file, path: c.yaml}\n  desired: {}\n"
    )
    target = load(tmp_path).targets["t"]
    classes = (DriftClass.REVERSIBLE, DriftClass.ESCALATE, DriftClass.ACCEPTABLE)
    classified = [
        Classified(DriftItem(("svc", f"k{i}"), DriftOp.ADD, MISSING, i), classes[i % 3], "r", "default")
        for i in range(keys)
    ]
    plan = TargetPlan(
        "t",
        unpruned=[c for c in classified if c.class_ is DriftClass.REVERSIBLE],
        escalations=[c for c in classified if c.class_ is DriftClass.ESCALATE],
        accepted=[c for c in classified if c.class_ is DriftClass.ACCEPTABLE],
    )
    return PassOutcome(target, ModeDecision(Mode.DRY_RUN), RunStatus.DRIFT, classified=tuple(classified), plan=plan)


def test_what_a_plan_leaves_alone_is_said_per_drift(tmp_path: Path) -> None:
    """Each drift the plan leaves alone says why: reported (prune: false), escalated or accepted."""
    drift = target_dict(_report(tmp_path, 3), b"k")["drift"]
    assert [d["action"] for d in drift] == ["reported (prune: false)", "escalated", "accepted"]


def test_a_report_of_many_live_only_keys_takes_linear_time(tmp_path: Path) -> None:
    """30,000 live-only keys are reported, each with why it is left alone (a search per key made 20,000 take
    over a minute; bench/hostile_scale.py measures it)."""
    drift = target_dict(_report(tmp_path, 30_000), b"k")["drift"]
    assert len(drift) == 30_000
    assert [d["action"] for d in drift[-3:]] == ["reported (prune: false)", "escalated", "accepted"]
