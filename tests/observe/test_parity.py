"""The parity series are written once per change: a scrape between changes gets the text written before, which
is the text the families give."""

from __future__ import annotations

import random

from reconciler.observe.parity import ENTRY_STATES, EnvironmentParity, ParityStates
from reconciler.observe.targets import render_families


def test_the_kept_text_is_the_families_until_a_series_changes() -> None:
    states = ParityStates()
    states.sync({"pay": ["prod", "staging"], "web": ["prod"]})
    first = states.render()
    assert first == render_families(states.collect())
    assert b'reconciler_parity_unexpected_differences{app="pay",environment="prod"} 0.0' in first
    assert states.render() is first  # nothing changed: the same text, not written again

    states.set("pay", "prod", EnvironmentParity())  # the value it had: still nothing changed
    assert states.render() is first
    states.set("pay", "prod", EnvironmentParity(3, 7.5, {"active": 1, "expiring": 0, "expired": 2}))
    changed = states.render()
    assert changed == render_families(states.collect()) and changed != first
    assert b'reconciler_parity_drift_percent{app="pay",environment="prod"} 7.5' in changed
    assert b'reconciler_parity_expected_differences{app="pay",environment="prod",state="expired"} 2.0' in changed

    states.set("gone", "prod", EnvironmentParity(1))  # no such app: nothing to change
    assert states.render() is changed
    states.sync({"pay": ["prod"]})  # web and pay's staging go
    synced = states.render()
    assert synced == render_families(states.collect()) and b'app="web"' not in synced
    assert b'reconciler_parity_drift_percent{app="pay",environment="prod"} 7.5' in synced


def test_the_text_written_from_kept_heads_is_the_families_through_random_changes() -> None:
    """render() writes each line from a head made when the apps were synced; through syncs that add and drop apps
    and environments (names with quotes, backslashes and newlines) and changed values, it is what the families
    give, byte for byte."""
    rng = random.Random(11)
    names = ["pay", "web", 'we"ird', "back\\slash", "new\nline", "z"]
    environments = ["dev", "prod", "prod-eu", "staging", 'q"a']
    states = ParityStates()
    for _ in range(60):
        if rng.random() < 0.2:
            states.sync({app: rng.sample(environments, rng.randint(1, 4)) for app in rng.sample(names, 4)})
        for _ in range(rng.randint(0, 6)):
            expected = {state: rng.randint(0, 3) for state in ENTRY_STATES}
            value = EnvironmentParity(rng.randint(0, 9), rng.choice([0.0, 12.5, 100.0, 1 / 3]), expected)
            states.set(rng.choice(names), rng.choice(environments), value)
        assert states.render() == render_families(states.collect())
