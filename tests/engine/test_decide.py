"""Deciding before planning: a fight with another writer stops itself, secrets keep their inner paths, and
new escalations and an opened breaker are announced."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.file import FileAdapter
from reconciler.domain.breaker import ErrorBudget
from reconciler.domain.clock import SystemClock
from reconciler.domain.manifest import DriftClass
from reconciler.domain.run import RunStatus
from reconciler.observe.notify import Event, EventKind
from reconciler.remediate.safety import Limits
from reconciler.settings import Settings
from reconciler.store import tables as t
from reconciler.store.approvals import SqlApprovalStore
from reconciler.store.breakers import SqlBreakerStore
from reconciler.store.history import SqlHistoryStore
from tests.engine.helpers import make


class Contested(FileAdapter):
    """Another writer puts the old content back right after every commit, before verification sees it."""

    def commit(self, staged: Any) -> None:
        original = staged.handle.original
        super().commit(staged)
        staged.handle.path.write_bytes(original)


def test_a_fight_that_ends_in_rollbacks_still_escalates(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """Writes the other writer reverts before verification end rolled back, not verified; they count towards
    flapping all the same, and the path is escalated with the times of the fight."""
    contested = Contested(settings.file)
    engine, metrics = make(
        settings, store, adapters=lambda name: contested, clock=SystemClock(), limits=Limits(flap_threshold=2)
    )
    for _ in range(2):
        fought = engine.reconcile(["checkout-staging"]).targets[0]
        assert fought.execution is not None and fought.execution.actions[0].state.value == "rolled_back"
    third = engine.reconcile(["checkout-staging"]).targets[0]
    (flag,) = [c for c in third.classified if c.item.pointer == "/FEATURE_FAST_PAY"]
    assert flag.class_ is DriftClass.ESCALATE and flag.decided_by == "flapping"
    assert flag.reason.startswith("flapping: written 2 times in the last 3600s")
    assert third.plan is not None and not third.plan.actions and third.flapped == ("/FEATURE_FAST_PAY",)
    assert 'reconciler_flapping_total{environment="staging"} 1.0' in metrics.render()[0].decode()


SECRET_TARGET = """
kind: Target
metadata: {name: creds-prod, environment: prod}
spec:
  source: {adapter: file, path: ../live/creds.yaml}
  secrets: ["/creds/**"]
  desired:
    creds: {token: t0ken-desired, user: app}
---
kind: Policy
metadata: {name: creds}
spec:
  default: reversible
  rules:
    - match: {paths: ["/creds/token"]}
      class: escalate
      reason: tokens need a human
"""


def test_rules_and_prune_see_the_paths_inside_a_secret_mapping(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """A rule that escalates /creds/token applies under a secret glob; a live-only /creds/extra is left
    alone without prune; nothing is written for either, and no secret reaches the outcome."""
    for manifest in (example / "desired").glob("*.yaml"):
        manifest.unlink()
    (example / "desired" / "creds.yaml").write_text(SECRET_TARGET)
    live = example / "live" / "creds.yaml"
    live.write_text("creds: {token: t0ken-live, user: root, extra: keep-me}\n")
    engine, _ = make(settings, store)
    outcome = engine.reconcile().targets[0]
    classes = {c.item.pointer: (c.class_.value, c.item.secret) for c in outcome.classified}
    assert classes == {
        "/creds/token": ("escalate", True),
        "/creds/user": ("reversible", True),
        "/creds/extra": ("reversible", True),
    }
    assert outcome.plan is not None and [a.pointer for a in outcome.plan.actions] == ["/creds/user"]
    assert [c.item.pointer for c in outcome.plan.unpruned] == ["/creds/extra"]
    assert outcome.status is RunStatus.DRIFT
    text = live.read_text()
    assert "token: t0ken-live" in text and "extra: keep-me" in text and "user: app" in text
    assert "t0ken" not in repr(outcome.classified) and "keep-me" not in repr(outcome.classified)


def test_new_escalations_are_announced_once(settings: Settings, store: SqlHistoryStore) -> None:
    """An escalation is notified when it is first raised, with its path and reason and no value; the same
    drift on the next pass is not announced again."""
    events: list[Event] = []
    engine, _ = make(settings, store, notify=events.append, approvals=SqlApprovalStore(store.engine))
    engine.reconcile(["payments-api-prod"])
    engine.reconcile(["payments-api-prod"])
    escalations = [e for e in events if e.kind is EventKind.ESCALATION]
    assert [e.details["path"] for e in escalations] == ["/database/pool_size"]
    assert escalations[0].details["reason"] == "production database settings need a human [rule default/0]"
    payload = json.dumps(escalations[0].payload())
    assert '"10"' not in payload and ": 10" not in payload and ": 20" not in payload


def test_the_breaker_opened_by_the_error_budget_is_announced(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """When failed writes open the breaker, the webhooks hear it, with the reason and until when."""
    events: list[Event] = []
    contested = Contested(settings.file)
    engine, _ = make(
        settings,
        store,
        adapters=lambda name: contested,
        clock=SystemClock(),
        notify=events.append,
        breaker=SqlBreakerStore(store.engine),
        error_budget=ErrorBudget(window_s=600, failure_ratio=0.5, min_writes=1, cooldown_s=60),
    )
    engine.reconcile(["checkout-staging"])
    (opened,) = [e for e in events if e.kind is EventKind.BREAKER]
    assert opened.summary.startswith("remediation paused until") and opened.details["opened_by"] == "error budget"
    assert SqlBreakerStore(store.engine).get().is_open(datetime.now(UTC))


def test_pending_escalations_fall_back_to_zero_once_an_approved_fix_is_written(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """The pending-approvals gauge follows every full pass, down to zero when the last approval was used."""
    approvals = SqlApprovalStore(store.engine)
    engine, metrics = make(settings, store, clock=SystemClock(), approvals=approvals)
    metrics.init_targets((t.name, t.environment, t.metadata.app or "") for t in engine.desired().targets.values())
    gauge = 'reconciler_escalations_pending{app="payments-api",environment="prod"}'
    first = engine.reconcile(["payments-api-prod"]).targets[0]
    assert f"{gauge} 1.0" in metrics.render()[0].decode()
    approval = first.approvals["/database/pool_size"]
    now = datetime.now(UTC)
    approvals.decide(approval.id, approve=True, actor="alice", comment="ok", now=now, ttl=timedelta(hours=1))
    second = engine.reconcile(["payments-api-prod"]).targets[0]
    assert (
        second.execution is not None and "pool_size: 20" in (example / "live/payments-api/prod/config.yaml").read_text()
    )
    assert f"{gauge} 0.0" in metrics.render()[0].decode()


def test_a_repeated_full_pass_that_finds_the_same_is_not_recorded_again(
    settings: Settings, store: SqlHistoryStore, example: Path
) -> None:
    """In apply mode a target with an escalation is looked at in full every pass (an approval may arrive); one
    that finds exactly what the last recorded pass found adds no pass and no drift rows. A change is recorded."""
    approvals = SqlApprovalStore(store.engine)
    engine, _ = make(settings, store, clock=SystemClock(), approvals=approvals)

    def recorded() -> int:
        with store.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(t.passes.c.target == "payments-api-prod")
            return int(conn.execute(query).scalar_one())

    first = engine.reconcile(["payments-api-prod"]).targets[0]  # fixes the reversible drift, escalates the rest
    assert first.execution is not None and first.execution.actions
    engine.reconcile(["payments-api-prod"])  # only the escalation left: recorded once more (it differs)
    after = recorded()
    for _ in range(3):
        again = engine.reconcile(["payments-api-prod"]).targets[0]
        assert not again.unchanged and again.status is RunStatus.DRIFT  # looked at in full, in case of approvals
    assert recorded() == after
    live = example / "live/payments-api/prod/config.yaml"
    live.write_text(live.read_text().replace("log_level: INFO", "log_level: WARN"))
    engine.reconcile(["payments-api-prod"])
    assert recorded() == after + 1
