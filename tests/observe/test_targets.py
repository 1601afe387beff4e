"""/metrics writes the targets' last passes, summed by environment and app, directly as text: the same text the
general path (gauge families through render_families) gives, for every group and label value."""

from __future__ import annotations

import random

from reconciler.observe.metrics import Metrics
from reconciler.observe.targets import NO_DRIFT, TargetStates, _current, render_families


def _kept(states: TargetStates) -> set[tuple[str, str]]:
    """The groups whose lines a scrape would not write again."""
    return {key for key, group in states._groups.items() if _current(group)}


def test_the_direct_text_is_what_the_families_give() -> None:
    """Groups, sums, minimums and escaped labels come out as the gauge families would write them."""
    metrics = Metrics()
    metrics.init_targets([("a", "prod", "pay"), ("b", "prod", "pay"), ("c", "dev", 'we"ird\\app'), ("d", "dev", "")])
    states = metrics.target_states
    states.update("a", drift={"acceptable": 1, "reversible": 2, "escalate": 0}, open_since=50.0, last_success=9.0)
    states.update("b", drift={"acceptable": 0, "reversible": 1, "escalate": 1}, open_since=40.0, pending=2)
    states.update("c", last_success=7.0)
    text = states.render()
    assert text == render_families(states.collect())
    assert b'reconciler_drift_items{app="pay",class="reversible",environment="prod"} 3.0' in text
    assert b'reconciler_oldest_open_drift_timestamp_seconds{app="pay",environment="prod"} 40.0' in text
    assert b'reconciler_oldest_successful_pass_timestamp_seconds{app="pay",environment="prod"} 0.0' in text
    assert b'app="we\\"ird\\\\app"' in text


def test_a_group_s_lines_are_kept_between_scrapes_until_its_members_change() -> None:
    """Between two scrapes a group's sums are written again only if a member's drift, escalations or open drift
    changed; the last success (every pass sets it) is taken from the members each time. Every text is what
    the families give at that moment."""
    metrics = Metrics()
    metrics.init_targets([("a", "prod", "pay"), ("b", "prod", "pay"), ("c", "dev", "pay")])
    states = metrics.target_states
    states.update("a", drift={"acceptable": 0, "reversible": 2, "escalate": 0}, open_since=50.0)
    assert states.render() == render_families(states.collect())
    assert _kept(states) == {("prod", "pay"), ("dev", "pay")}
    states.update_each(["a", "b", "c"], last_success=70.0)
    states.update("c", drift=NO_DRIFT, pending=0, open_since=0.0)  # a full pass that found what the last one did
    assert _kept(states) == {("prod", "pay"), ("dev", "pay")}  # nothing but the last success changed
    text = states.render()
    assert text == render_families(states.collect())
    assert b'reconciler_oldest_successful_pass_timestamp_seconds{app="pay",environment="prod"} 70.0' in text
    states.update("b", drift={"acceptable": 0, "reversible": 0, "escalate": 1}, open_since=30.0, last_success=80.0)
    states.update_each(["c"], pending=4)
    assert _kept(states) == set()
    text = states.render()
    assert text == render_families(states.collect())
    assert b'reconciler_drift_items{app="pay",class="escalate",environment="prod"} 1.0' in text
    assert b'reconciler_oldest_open_drift_timestamp_seconds{app="pay",environment="prod"} 30.0' in text
    assert b'reconciler_escalations_pending{app="pay",environment="dev"} 4.0' in text
    metrics.init_targets([("a", "prod", "pay"), ("c", "dev", "pay")])  # b left the desired state
    assert states.render() == render_families(states.collect())
    assert b'reconciler_drift_items{app="pay",class="escalate",environment="prod"} 0.0' in states.render()


def test_a_new_desired_version_keeps_the_lines_of_the_groups_whose_members_it_kept() -> None:
    """A desired-state edit that moves no target leaves every group's lines as they were; one that moves a
    target, adds or removes one drops the lines of the groups it touched, and the text is still what the
    families give."""
    metrics = Metrics()
    targets = [("a", "prod", "pay"), ("b", "prod", "pay"), ("c", "dev", "pay"), ("d", "dev", "shop")]
    metrics.init_targets(targets)
    states = metrics.target_states
    states.update("a", drift={"acceptable": 0, "reversible": 2, "escalate": 0}, open_since=50.0)
    assert states.render() == render_families(states.collect())
    assert _kept(states) == {("prod", "pay"), ("dev", "pay"), ("dev", "shop")}
    kept = dict(states._groups)
    metrics.init_targets(targets)  # an edit of values only
    assert states._groups == kept and _kept(states) == set(kept)
    metrics.init_targets([("a", "prod", "pay"), ("b", "dev", "shop"), ("c", "dev", "pay"), ("e", "dev", "pay")])
    assert _kept(states) == set()  # b moved from prod/pay to dev/shop; e joined dev/pay
    assert states.render() == render_families(states.collect())
    assert b'reconciler_drift_items{app="pay",class="reversible",environment="prod"} 2.0' in states.render()
    metrics.init_targets([("a", "prod", "pay"), ("b", "dev", "shop"), ("c", "dev", "pay")])  # e left
    assert _kept(states) == {("prod", "pay"), ("dev", "shop")}
    assert states.render() == render_families(states.collect())


def test_per_target_series_follow_the_groups_when_asked() -> None:
    """With per-target series on, the text holds both, as the families do."""
    metrics = Metrics(per_target=True)
    metrics.init_targets([("a", "prod", "pay")])
    states = metrics.target_states
    assert states.render() == render_families(states.collect())
    assert b'reconciler_target_drift_items{class="escalate",environment="prod",target="a"} 0.0' in states.render()


def test_a_replica_exports_the_targets_it_holds_whenever_it_learns_them() -> None:
    """hold() before or after the desired state's targets arrive: only the held ones are exported, and a new
    desired version keeps to them."""
    name = b"reconciler_oldest_successful_pass_timestamp_seconds{"
    for hold_first in (True, False):
        states = Metrics().target_states
        if hold_first:
            states.hold({"a"})
        states.sync([("a", "prod", "pay"), ("b", "dev", "pay"), ("c", "dev", "shop")])
        if not hold_first:
            states.hold({"a"})
        groups = [line for line in states.render().splitlines() if line.startswith(name)]
        assert groups == [name + b'app="pay",environment="prod"} 0.0']
        states.hold({"b", "c"})
        assert sum(line.startswith(name) for line in states.render().splitlines()) == 2
        states.sync([("c", "dev", "shop"), ("d", "dev", "shop")])  # b left the desired state
        assert [line for line in states.render().splitlines() if line.startswith(name)] == [
            name + b'app="shop",environment="dev"} 0.0'
        ]


def test_a_replica_keeps_one_pair_for_the_targets_of_an_environment_and_app() -> None:
    """A replica keeps every desired target's (environment, app) to export the ones it will hold; the targets of
    one pair share one object of it (a pair each was 56 bytes a target), and the export is unchanged."""
    states = Metrics().target_states
    states.hold({"a", "c"})
    states.sync([(name, "prod", "pay") for name in ("a", "b", "c")] + [("d", "dev", "pay")])
    pairs = states._wanted  # what is kept per target is what this test is about
    assert pairs == {"a": ("prod", "pay"), "b": ("prod", "pay"), "c": ("prod", "pay"), "d": ("dev", "pay")}
    assert pairs["a"] is pairs["b"] is pairs["c"] and pairs["d"] is not pairs["a"]
    states.hold({"b", "d"})
    name = b"reconciler_oldest_successful_pass_timestamp_seconds{"
    assert [line for line in states.render().splitlines() if line.startswith(name)] == [
        name + b'app="pay",environment="dev"} 0.0',
        name + b'app="pay",environment="prod"} 0.0',
    ]


def test_the_sums_kept_as_passes_land_are_what_the_members_give() -> None:
    """Drift found and fixed, escalations raised and approved, open drift opened and closed (the oldest one
    too), in any order, with scrapes between: every scrape's text is what the families give from the members
    at that moment, including after a desired-state edit that moves targets between groups."""
    rng = random.Random(11)
    metrics = Metrics()
    names = [f"t{i}" for i in range(40)]
    metrics.init_targets([(name, ("dev", "prod")[i % 2], f"app{i % 3}") for i, name in enumerate(names)])
    states = metrics.target_states
    for step in range(3000):
        name = rng.choice(names)
        if rng.random() < 0.5:
            counts = {"acceptable": rng.randint(0, 2), "reversible": rng.randint(0, 1), "escalate": rng.randint(0, 1)}
            drifting = counts["reversible"] or counts["escalate"]
            states.update(
                name,
                drift=counts if any(counts.values()) else NO_DRIFT,
                open_since=states.open_since(name) or float(step + 1) if drifting else 0.0,
            )
        elif rng.random() < 0.5:
            states.update_each(rng.sample(names, 5), pending=rng.randint(0, 2))
        elif rng.random() < 0.5:
            states.update_each(rng.sample(names, 5), last_success=float(step))
        else:  # a success that went back (the clock was set back), with drift found
            states.update(name, last_success=float(rng.randint(0, step)), pending=rng.randint(0, 1))
        if step % 7 == 0:
            assert states.render() == render_families(states.collect()), step
        if step == 1500:  # t0..t9 move to a group of their own
            metrics.init_targets([(n, "dev", "moved" if i < 10 else f"app{i % 3}") for i, n in enumerate(names)])
    assert states.render() == render_families(states.collect())
    assert b"reconciler_targets_drifting" in states.render()
